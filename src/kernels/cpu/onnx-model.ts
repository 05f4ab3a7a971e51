/**
 * A tiny ONNX ModelProto writer: just enough protobuf (varints, length-delimited fields, packed
 * int64s, fixed32 floats) to serialize the two fused graphs the cpu kernel runs. Building the
 * graphs in code keeps them next to the TypeScript that feeds them, with no model files to ship
 * and no protobuf dependency. Field numbers follow onnx/onnx.proto3.
 */

/** ONNX TensorProto.DataType values used here. */
export const OnnxType = { FLOAT: 1, INT32: 6, INT64: 7, BOOL: 9 } as const;
export type OnnxElemType = (typeof OnnxType)[keyof typeof OnnxType];

const WIRE_VARINT = 0;
const WIRE_LEN = 2;
const WIRE_FIXED32 = 5;

/** Append-only protobuf encoder; nested messages are encoded separately and embedded as bytes. */
class ProtoWriter {
  #chunks: number[] = [];

  #varint(value: bigint | number): void {
    // Negative int64 values are encoded as their 64-bit two's complement (10 bytes).
    let v = BigInt.asUintN(64, BigInt(value));
    while (v >= 0x80n) {
      this.#chunks.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    this.#chunks.push(Number(v));
  }

  #tag(field: number, wire: number): void {
    this.#varint((field << 3) | wire);
  }

  int(field: number, value: number | bigint): this {
    this.#tag(field, WIRE_VARINT);
    this.#varint(value);
    return this;
  }

  float(field: number, value: number): this {
    this.#tag(field, WIRE_FIXED32);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    this.#chunks.push(...b);
    return this;
  }

  bytes(field: number, value: Uint8Array): this {
    this.#tag(field, WIRE_LEN);
    this.#varint(value.length);
    for (const byte of value) this.#chunks.push(byte);
    return this;
  }

  string(field: number, value: string): this {
    return this.bytes(field, new TextEncoder().encode(value));
  }

  packedInts(field: number, values: readonly (number | bigint)[]): this {
    const inner = new ProtoWriter();
    for (const v of values) inner.#varint(v);
    return this.bytes(field, inner.finish());
  }

  finish(): Uint8Array {
    return Uint8Array.from(this.#chunks);
  }
}

export type AttributeValue =
  | { readonly kind: 'int'; readonly value: number }
  | { readonly kind: 'float'; readonly value: number }
  | { readonly kind: 'ints'; readonly value: readonly number[] }
  | { readonly kind: 'string'; readonly value: string };

export interface OnnxNode {
  readonly op: string;
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  readonly attributes?: Readonly<Record<string, AttributeValue>>;
}

/** A dimension is a fixed size or a symbolic name (dynamic). */
export type OnnxDim = number | string;

export interface OnnxValueInfo {
  readonly name: string;
  readonly elemType: OnnxElemType;
  readonly dims: readonly OnnxDim[];
}

export interface OnnxInitializer {
  readonly name: string;
  readonly elemType: typeof OnnxType.FLOAT | typeof OnnxType.INT64;
  readonly dims: readonly number[];
  readonly values: readonly number[];
}

export interface OnnxGraph {
  readonly name: string;
  readonly nodes: readonly OnnxNode[];
  readonly inputs: readonly OnnxValueInfo[];
  readonly outputs: readonly OnnxValueInfo[];
  readonly initializers?: readonly OnnxInitializer[];
}

// AttributeProto.AttributeType
const ATTR_FLOAT = 1;
const ATTR_INT = 2;
const ATTR_STRING = 3;
const ATTR_INTS = 7;

function encodeAttribute(name: string, attr: AttributeValue): Uint8Array {
  const w = new ProtoWriter().string(1, name);
  switch (attr.kind) {
    case 'float':
      w.float(2, attr.value).int(20, ATTR_FLOAT);
      break;
    case 'int':
      w.int(3, attr.value).int(20, ATTR_INT);
      break;
    case 'ints':
      w.packedInts(8, attr.value).int(20, ATTR_INTS);
      break;
    case 'string':
      w.string(4, attr.value).int(20, ATTR_STRING);
      break;
  }
  return w.finish();
}

function encodeNode(node: OnnxNode, index: number): Uint8Array {
  const w = new ProtoWriter();
  for (const input of node.inputs) w.string(1, input);
  for (const output of node.outputs) w.string(2, output);
  w.string(3, `${node.op}_${index}`).string(4, node.op);
  for (const [name, attr] of Object.entries(node.attributes ?? {})) w.bytes(5, encodeAttribute(name, attr));
  return w.finish();
}

function encodeValueInfo(info: OnnxValueInfo): Uint8Array {
  const shape = new ProtoWriter();
  for (const dim of info.dims) {
    const d = typeof dim === 'number' ? new ProtoWriter().int(1, dim) : new ProtoWriter().string(2, dim);
    shape.bytes(1, d.finish());
  }
  const tensorType = new ProtoWriter().int(1, info.elemType).bytes(2, shape.finish());
  const type = new ProtoWriter().bytes(1, tensorType.finish());
  return new ProtoWriter().string(1, info.name).bytes(2, type.finish()).finish();
}

function encodeInitializer(init: OnnxInitializer): Uint8Array {
  const w = new ProtoWriter().packedInts(1, init.dims).int(2, init.elemType).string(8, init.name);
  // raw_data is little-endian, which is what every supported host already is.
  const raw =
    init.elemType === OnnxType.FLOAT
      ? new Uint8Array(Float32Array.from(init.values).buffer)
      : new Uint8Array(BigInt64Array.from(init.values.map((v) => BigInt(v))).buffer);
  return w.bytes(9, raw).finish();
}

function encodeGraph(graph: OnnxGraph): Uint8Array {
  const w = new ProtoWriter();
  graph.nodes.forEach((node, i) => w.bytes(1, encodeNode(node, i)));
  w.string(2, graph.name);
  for (const init of graph.initializers ?? []) w.bytes(5, encodeInitializer(init));
  for (const input of graph.inputs) w.bytes(11, encodeValueInfo(input));
  for (const output of graph.outputs) w.bytes(12, encodeValueInfo(output));
  return w.finish();
}

/** IR version 8 pairs with opset 17 (the last opset where ReduceMax/Min take `axes` as attribute). */
export const ONNX_IR_VERSION = 8;
export const ONNX_OPSET = 17;

/** Serialize a ModelProto for the default ONNX domain. */
export function encodeModel(graph: OnnxGraph, opset = ONNX_OPSET): Uint8Array {
  const opsetId = new ProtoWriter().string(1, '').int(2, opset).finish();
  return new ProtoWriter()
    .int(1, ONNX_IR_VERSION)
    .string(2, 'semdedup')
    .string(3, '1')
    .bytes(7, encodeGraph(graph))
    .bytes(8, opsetId)
    .finish();
}

export const attr = {
  int: (value: number): AttributeValue => ({ kind: 'int', value }),
  float: (value: number): AttributeValue => ({ kind: 'float', value }),
  ints: (value: readonly number[]): AttributeValue => ({ kind: 'ints', value }),
  string: (value: string): AttributeValue => ({ kind: 'string', value }),
};
