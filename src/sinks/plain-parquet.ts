/**
 * A small Parquet writer for the files a batch run writes many of (kmeans_results, pairwise_results,
 * the scratch parts DuckDB joins): uncompressed PLAIN pages written straight from the columns'
 * typed arrays, with the same schema and `ARROW:schema` footer entry as `writeParquetFile`
 * (parquet-wasm), so every reader sees the same columns, types and values.
 *
 * Why: an embedding column is 768 floats a row, and both parquet-wasm and DuckDB's COPY spend
 * ~25–30 ms encoding 1000 × 768 floats into a list column (measured; bench/io.ts), about as
 * much as the pairwise kernel spends on the cluster. PLAIN float pages are the floats' bytes, and
 * the list's repetition/definition levels are a few RLE runs a row, so writing costs about a
 * copy. Float data barely compresses (snappy saved < 0.2 % on kmeans_results), so pages stay
 * uncompressed.
 *
 * Columns whose Arrow type this writer does not cover (timestamps, dates, dictionaries, variable
 * lists, …) make `writeParquetFast` fall back to `writeParquetFile`.
 */
import { open, rename, unlink, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { DataType, Field, Schema, Table, tableToIPC, type Data } from 'apache-arrow';
import { InvariantError } from '../shared/errors.js';
import { columnVector, syncDir, writeParquetFile, type ColumnSpec, type ParquetWriteResult } from './parquet/index.js';

export interface PlainParquetWriteOptions {
  /** Rows per row group (default 16384, as `writeParquetFile`). */
  readonly rowGroupRows?: number;
  /** Target bytes of values per data page (default 1 MiB); pages start at row boundaries. */
  readonly pageBytes?: number;
  /**
   * fsync the file and its folder before returning (default true). Scratch files that live only
   * for the run (and are removed after a crash anyway) pass false: on a busy disk each fsync can
   * cost tens of milliseconds.
   */
  readonly durable?: boolean;
}

const DEFAULT_ROW_GROUP_ROWS = 16384;
const DEFAULT_PAGE_BYTES = 1 << 20;

// Parquet enums (parquet.thrift).
const PhysicalType = { BOOLEAN: 0, INT32: 1, INT64: 2, FLOAT: 4, DOUBLE: 5, BYTE_ARRAY: 6 } as const;
const Repetition = { REQUIRED: 0, OPTIONAL: 1, REPEATED: 2 } as const;
const ConvertedType = { UTF8: 0, LIST: 3 } as const;
const Encoding = { PLAIN: 0, RLE: 3 } as const;
const CODEC_UNCOMPRESSED = 0;
const PAGE_DATA = 0;

/** How one column maps to Parquet: its leaf's physical type and whether it is a list of floats. */
interface LeafPlan {
  readonly column: ColumnSpec;
  readonly arrowType: DataType;
  readonly physical: number;
  /** fixed-size list of non-null float32: optional group → repeated `list` → required `item`. */
  readonly listSize: number;
  readonly elementName: string;
  readonly bytesPerRow: number;
}

/** What a column's Parquet layout depends on (its name, declared type and list size). */
function layoutKey(c: ColumnSpec): string {
  const t = typeof c.type === 'object' ? `arrow:${String(c.type.arrow)}` : c.type;
  return `${c.name}\u0000${t}\u0000${c.listSize ?? ''}\u0000${c.type === 'fixed-list-float32' && c.values instanceof Float32Array}`;
}

/** Column layouts seen before (a run writes the same few layouts once per cluster). */
const layoutCache = new Map<string, { types: (DataType | null)[]; arrowSchema: string | null }>();
const LAYOUT_CACHE_MAX = 64;

interface FilePlan {
  readonly leaves: readonly LeafPlan[];
  /** The `ARROW:schema` footer value. */
  readonly arrowSchema: string;
}

/** The plan for every column, or null when some column's type is not covered here. */
function planColumns(columns: readonly ColumnSpec[]): FilePlan | null {
  const key = columns.map(layoutKey).join('\u0001');
  let cached = layoutCache.get(key);
  if (!cached) {
    cached = { types: columns.map((c) => columnVector(c, 0, 0).type as DataType), arrowSchema: null };
    if (layoutCache.size >= LAYOUT_CACHE_MAX) layoutCache.clear();
    layoutCache.set(key, cached);
  }
  const leaves = planFromTypes(columns, cached.types);
  if (!leaves) return null;
  cached.arrowSchema ??= arrowSchemaBase64(leaves);
  return { leaves, arrowSchema: cached.arrowSchema };
}

function planFromTypes(columns: readonly ColumnSpec[], types: readonly (DataType | null)[]): LeafPlan[] | null {
  const plans: LeafPlan[] = [];
  for (let i = 0; i < columns.length; i++) {
    const c = columns[i]!;
    const t = types[i]!;
    let physical: number;
    let listSize = 0;
    let elementName = '';
    let bytesPerRow: number;
    if (DataType.isUtf8(t)) [physical, bytesPerRow] = [PhysicalType.BYTE_ARRAY, 16];
    else if (DataType.isBool(t)) [physical, bytesPerRow] = [PhysicalType.BOOLEAN, 1];
    else if (DataType.isInt(t) && t.isSigned && t.bitWidth === 32) [physical, bytesPerRow] = [PhysicalType.INT32, 4];
    else if (DataType.isInt(t) && t.isSigned && t.bitWidth === 64) [physical, bytesPerRow] = [PhysicalType.INT64, 8];
    else if (DataType.isFloat(t) && t.precision === 1) [physical, bytesPerRow] = [PhysicalType.FLOAT, 4];
    else if (DataType.isFloat(t) && t.precision === 2) [physical, bytesPerRow] = [PhysicalType.DOUBLE, 8];
    else if (c.type === 'fixed-list-float32' && c.values instanceof Float32Array && DataType.isFixedSizeList(t) && !t.children[0]!.nullable) {
      physical = PhysicalType.FLOAT;
      listSize = t.listSize;
      elementName = t.children[0]!.name;
      bytesPerRow = 4 * listSize + 2;
    } else return null;
    plans.push({ column: c, arrowType: t, physical, listSize, elementName, bytesPerRow });
  }
  return plans;
}

/** True when `writePlainParquetFile` can write these columns. */
export function plainParquetSupports(columns: readonly ColumnSpec[]): boolean {
  return planColumns(columns) !== null;
}

/**
 * `writePlainParquetFile` when it covers every column, else `writeParquetFile`: the same
 * content either way.
 */
export async function writeParquetFast(filePath: string, columns: readonly ColumnSpec[], options: PlainParquetWriteOptions = {}): Promise<ParquetWriteResult> {
  const plan = planColumns(columns);
  if (!plan) return writeParquetFile(filePath, columns, { rowGroupRows: options.rowGroupRows }); // always durable
  return writePlanned(filePath, plan, options);
}

/** Write `columns` (all the same length) to `filePath` atomically (temporary name, fsync, rename). */
export async function writePlainParquetFile(filePath: string, columns: readonly ColumnSpec[], options: PlainParquetWriteOptions = {}): Promise<ParquetWriteResult> {
  const plan = planColumns(columns);
  if (!plan) throw new InvariantError(`plain Parquet writer: unsupported column type in ${columns.map((c) => c.name).join(', ')} (${filePath})`);
  return writePlanned(filePath, plan, options);
}

async function writePlanned(filePath: string, plan: FilePlan, options: PlainParquetWriteOptions): Promise<ParquetWriteResult> {
  const plans = plan.leaves;
  if (plans.length === 0) throw new InvariantError(`no columns to write to ${filePath}`);
  const rowGroupRows = Math.floor(options.rowGroupRows ?? DEFAULT_ROW_GROUP_ROWS);
  if (!(rowGroupRows > 0)) throw new InvariantError(`rowGroupRows must be positive, got ${rowGroupRows}`);
  const pageBytes = options.pageBytes ?? DEFAULT_PAGE_BYTES;
  const durable = options.durable ?? true;
  const n = columnLength(plans[0]!.column);
  for (const p of plans) {
    if (columnLength(p.column) !== n) {
      throw new InvariantError(`column ${p.column.name} has ${columnLength(p.column)} rows, ${plans[0]!.column.name} has ${n} (${filePath})`);
    }
  }

  const chunks: Uint8Array[] = [new TextEncoder().encode('PAR1')];
  let offset = 4;
  const rowGroups: RowGroupMeta[] = [];
  // No rows: no row groups, only the schema (as Arrow writers do).
  for (let g0 = 0; g0 < n; g0 += rowGroupRows) {
    const g1 = Math.min(n, g0 + rowGroupRows);
    const columnsMeta: ColumnChunkMeta[] = [];
    let groupBytes = 0;
    for (const plan of plans) {
      const pageRows = Math.max(1, Math.floor(pageBytes / plan.bytesPerRow));
      const start = offset;
      let values = 0;
      for (let p0 = g0; p0 < g1; p0 += pageRows) {
        const page = encodePage(plan, p0, Math.min(g1, p0 + pageRows));
        chunks.push(page.header, ...page.body);
        offset += page.header.length + page.bodyBytes;
        values += page.values;
      }
      const size = offset - start;
      groupBytes += size;
      columnsMeta.push({ plan, dataPageOffset: start, size, values });
    }
    rowGroups.push({ columns: columnsMeta, rows: g1 - g0, bytes: groupBytes });
  }
  const footer = encodeFileMetaData(plans, rowGroups, n, plan.arrowSchema);
  const tail = new Uint8Array(8);
  new DataView(tail.buffer).setUint32(0, footer.length, true);
  tail.set(new TextEncoder().encode('PAR1'), 4);
  chunks.push(footer, tail);
  const bytes = offset + footer.length + 8;

  await mkdir(path.dirname(filePath), { recursive: true });
  const tmp = `${filePath}.tmp-${process.pid}`;
  const fh = await open(tmp, 'w');
  try {
    await fh.writev(chunks);
    if (durable) await fh.sync();
    await fh.close();
    await rename(tmp, filePath);
  } catch (err) {
    await fh.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  if (durable) await syncDir(path.dirname(filePath));
  return { path: filePath, rows: n, bytes };
}

function columnLength(c: ColumnSpec): number {
  if (c.type === 'fixed-list-float32') return c.values.length / (c.listSize ?? Number.NaN);
  if (c.type === 'list-float32' && c.offsets) return c.offsets.length - 1;
  return c.values.length;
}

// ---------------------------------------------------------------------------------------------
// Pages

interface EncodedPage {
  readonly header: Uint8Array;
  readonly body: Uint8Array[];
  readonly bodyBytes: number;
  /** Level entries in the page (rows, or list elements plus null rows). */
  readonly values: number;
}

/** One DATA_PAGE (v1) of rows [start, end): levels as RLE runs, then the PLAIN non-null values. */
function encodePage(plan: LeafPlan, start: number, end: number): EncodedPage {
  const body: Uint8Array[] = [];
  let values: number;
  if (plan.listSize > 0) {
    const c = plan.column;
    const size = plan.listSize;
    const floats = c.values as Float32Array;
    const present: number[] = [];
    for (let r = start; r < end; r++) if (c.nulls?.[r] !== 1) present.push(r);
    if (present.length === end - start) body.push(...listLevelsWithoutNulls(end - start, size));
    else {
      // Levels: a present row is `size` entries (rep 0 then 1s; def 2), a null row one (rep 0, def 0).
      const rep = new RleRuns(1);
      const def = new RleRuns(2);
      for (let r = start; r < end; r++) {
        if (c.nulls?.[r] === 1) {
          rep.add(0, 1);
          def.add(0, 1);
        } else {
          rep.add(0, 1);
          if (size > 1) rep.add(1, size - 1);
          def.add(2, size);
        }
      }
      body.push(rep.finishWithLength(), def.finishWithLength());
    }
    if (present.length === end - start) {
      body.push(bytesOf(floats.subarray(start * size, end * size)));
    } else {
      const out = new Float32Array(present.length * size);
      present.forEach((r, i) => out.set(floats.subarray(r * size, (r + 1) * size), i * size));
      body.push(bytesOf(out));
    }
    values = (end - start - present.length) + present.length * size;
  } else if (plan.physical === PhysicalType.BYTE_ARRAY && Array.isArray(plan.column.values)) {
    // Strings straight from the JS array (no Arrow vector): the ids of every output file.
    const strings = plan.column.values as readonly (string | null | undefined)[];
    const def = new RleRuns(1);
    for (let r = start; r < end; r++) def.add(strings[r] === null || strings[r] === undefined ? 0 : 1, 1);
    body.push(def.finishWithLength(), plainStrings(strings, start, end));
    values = end - start;
  } else {
    const vector = columnVector(plan.column, start, end);
    const data = vector.data[0] as Data;
    const n = end - start;
    const hasNulls = data.nullCount > 0; // a getter that may count the bitmap: read it once
    const isNull = (i: number): boolean => hasNulls && !data.getValid(i);
    const def = new RleRuns(1);
    for (let i = 0; i < n; i++) def.add(isNull(i) ? 0 : 1, 1);
    body.push(def.finishWithLength(), plainValues(plan.physical, data, n, isNull, (i) => Boolean(vector.get(i))));
    values = n;
  }
  const bodyBytes = body.reduce((s, b) => s + b.length, 0);
  const header = new ThriftWriter();
  header.struct(() => {
    header.i32Field(1, PAGE_DATA);
    header.i32Field(2, bodyBytes);
    header.i32Field(3, bodyBytes);
    header.structField(5, () => {
      header.i32Field(1, values);
      header.i32Field(2, Encoding.PLAIN);
      header.i32Field(3, Encoding.RLE);
      header.i32Field(4, Encoding.RLE);
    });
  });
  return { header: header.finish(), body, bodyBytes, values };
}

/** PLAIN BYTE_ARRAY of the non-null strings of rows [start, end): 4-byte length, UTF-8 bytes. */
function plainStrings(strings: readonly (string | null | undefined)[], start: number, end: number): Uint8Array {
  let bound = 0;
  for (let r = start; r < end; r++) {
    const v = strings[r];
    if (v !== null && v !== undefined) bound += 4 + 3 * v.length;
  }
  const out = Buffer.allocUnsafe(bound);
  let at = 0;
  for (let r = start; r < end; r++) {
    const v = strings[r];
    if (v === null || v === undefined) continue;
    const len = out.write(String(v), at + 4, 'utf8');
    out.writeInt32LE(len, at);
    at += 4 + len;
  }
  return out.subarray(0, at);
}

/** PLAIN encoding of the non-null values of a flat column. */
function plainValues(physical: number, data: Data, n: number, isNull: (i: number) => boolean, boolAt: (i: number) => boolean): Uint8Array {
  const hasNulls = data.nullCount > 0;
  switch (physical) {
    case PhysicalType.BYTE_ARRAY: {
      const offsets = data.valueOffsets as Int32Array;
      const bytes = data.values as Uint8Array;
      let total = 0;
      for (let i = 0; i < n; i++) if (!isNull(i)) total += 4 + offsets[i + 1]! - offsets[i]!;
      const out = new Uint8Array(total);
      const view = new DataView(out.buffer);
      let at = 0;
      for (let i = 0; i < n; i++) {
        if (isNull(i)) continue;
        const a = offsets[i]!;
        const b = offsets[i + 1]!;
        view.setInt32(at, b - a, true);
        out.set(bytes.subarray(a, b), at + 4);
        at += 4 + b - a;
      }
      return out;
    }
    case PhysicalType.BOOLEAN: {
      const out = new Uint8Array((n + 7) >> 3);
      let k = 0;
      for (let i = 0; i < n; i++) {
        if (isNull(i)) continue;
        if (boolAt(i)) out[k >> 3]! |= 1 << (k & 7);
        k++;
      }
      return out.subarray(0, (k + 7) >> 3);
    }
    default: {
      const typed = data.values as Int32Array | Float32Array | Float64Array | BigInt64Array;
      const width = typed.BYTES_PER_ELEMENT;
      const all = new Uint8Array(typed.buffer, typed.byteOffset + data.offset * width, n * width);
      if (!hasNulls) return all;
      const out = new Uint8Array(n * width);
      let at = 0;
      for (let i = 0; i < n; i++) {
        if (isNull(i)) continue;
        out.set(all.subarray(i * width, (i + 1) * width), at);
        at += width;
      }
      return out.subarray(0, at);
    }
  }
}

/**
 * Repetition and definition levels of `rows` non-null lists of `size` elements: the repetition
 * levels are one row's two runs (a 0, then size − 1 ones) repeated, the definition levels one run.
 */
function listLevelsWithoutNulls(rows: number, size: number): [Uint8Array, Uint8Array] {
  const one = new RleRuns(1);
  one.add(0, 1);
  if (size > 1) one.add(1, size - 1);
  const row = one.finishWithLength().subarray(4);
  const rep = new Uint8Array(4 + rows * row.length);
  new DataView(rep.buffer).setUint32(0, rows * row.length, true);
  for (let i = 0, at = 4; i < rows; i++, at += row.length) rep.set(row, at);
  const def = new RleRuns(2);
  def.add(2, rows * size);
  return [rep, def.finishWithLength()];
}

function bytesOf(v: ArrayBufferView): Uint8Array {
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

/** Levels in the RLE/bit-packed hybrid, RLE runs only (levels here come in long runs). */
class RleRuns {
  readonly #bytes: number[] = [];
  #value = -1;
  #count = 0;

  constructor(readonly bitWidth: number) {}

  add(value: number, count: number): void {
    if (value === this.#value) {
      this.#count += count;
      return;
    }
    this.#flush();
    this.#value = value;
    this.#count = count;
  }

  #flush(): void {
    if (this.#count === 0) return;
    pushVarint(this.#bytes, this.#count * 2); // header: run length << 1, low bit 0 = RLE run
    this.#bytes.push(this.#value); // ceil(bitWidth / 8) = 1 byte for the widths used here
  }

  /** The encoded levels preceded by their 4-byte little-endian length (DATA_PAGE v1). */
  finishWithLength(): Uint8Array {
    this.#flush();
    this.#count = 0;
    const out = new Uint8Array(4 + this.#bytes.length);
    new DataView(out.buffer).setUint32(0, this.#bytes.length, true);
    out.set(this.#bytes, 4);
    return out;
  }
}

function pushVarint(out: number[], value: number): void {
  let v = value;
  while (v >= 0x80) {
    out.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
}

// ---------------------------------------------------------------------------------------------
// Footer

interface ColumnChunkMeta {
  readonly plan: LeafPlan;
  readonly dataPageOffset: number;
  readonly size: number;
  readonly values: number;
}

interface RowGroupMeta {
  readonly columns: readonly ColumnChunkMeta[];
  readonly rows: number;
  readonly bytes: number;
}

/** The Arrow schema message, base64, as Arrow writers store it (nullable fields, as `writeParquetFile`). */
function arrowSchemaBase64(plans: readonly LeafPlan[]): string {
  const fields = plans.map((p) => new Field(p.column.name, p.arrowType, true));
  const ipc = tableToIPC(new Table(new Schema(fields)), 'stream');
  const view = new DataView(ipc.buffer, ipc.byteOffset, ipc.byteLength);
  if (view.getUint32(0, true) !== 0xffffffff) throw new InvariantError('unexpected Arrow IPC stream header');
  return Buffer.from(ipc.subarray(0, 8 + view.getInt32(4, true))).toString('base64');
}

function encodeFileMetaData(plans: readonly LeafPlan[], rowGroups: readonly RowGroupMeta[], rows: number, arrowSchema: string): Uint8Array {
  const w = new ThriftWriter();
  const pathOf = (p: LeafPlan): string[] => (p.listSize > 0 ? [p.column.name, 'list', p.elementName] : [p.column.name]);
  w.struct(() => {
    w.i32Field(1, 1); // version
    w.listField(2, TType.STRUCT, schemaElementCount(plans), () => {
      // The root, named as Arrow writers name it.
      w.struct(() => {
        w.binaryField(4, 'arrow_schema');
        w.i32Field(5, plans.length);
      });
      for (const p of plans) {
        if (p.listSize > 0) {
          w.struct(() => {
            w.i32Field(3, Repetition.OPTIONAL);
            w.binaryField(4, p.column.name);
            w.i32Field(5, 1);
            w.i32Field(6, ConvertedType.LIST);
            w.structField(10, () => w.structField(3, () => {})); // LogicalType.LIST
          });
          w.struct(() => {
            w.i32Field(3, Repetition.REPEATED);
            w.binaryField(4, 'list');
            w.i32Field(5, 1);
          });
          w.struct(() => {
            w.i32Field(1, p.physical);
            w.i32Field(3, Repetition.REQUIRED);
            w.binaryField(4, p.elementName);
          });
        } else {
          w.struct(() => {
            w.i32Field(1, p.physical);
            w.i32Field(3, Repetition.OPTIONAL);
            w.binaryField(4, p.column.name);
            if (p.physical === PhysicalType.BYTE_ARRAY) {
              w.i32Field(6, ConvertedType.UTF8);
              w.structField(10, () => w.structField(1, () => {})); // LogicalType.STRING
            }
          });
        }
      }
    });
    w.i64Field(3, rows);
    w.listField(4, TType.STRUCT, rowGroups.length, () => {
      for (const g of rowGroups) {
        w.struct(() => {
          w.listField(1, TType.STRUCT, g.columns.length, () => {
            for (const c of g.columns) {
              w.struct(() => {
                w.i64Field(2, c.dataPageOffset); // file_offset (deprecated): the chunk's start
                w.structField(3, () => {
                  w.i32Field(1, c.plan.physical);
                  w.listField(2, TType.I32, 2, () => {
                    w.i32(Encoding.PLAIN);
                    w.i32(Encoding.RLE);
                  });
                  const names = pathOf(c.plan);
                  w.listField(3, TType.BINARY, names.length, () => names.forEach((s) => w.binary(s)));
                  w.i32Field(4, CODEC_UNCOMPRESSED);
                  w.i64Field(5, c.values);
                  w.i64Field(6, c.size);
                  w.i64Field(7, c.size);
                  w.i64Field(9, c.dataPageOffset);
                });
              });
            }
          });
          w.i64Field(2, g.bytes);
          w.i64Field(3, g.rows);
        });
      }
    });
    w.listField(5, TType.STRUCT, 1, () => {
      w.struct(() => {
        w.binaryField(1, 'ARROW:schema');
        w.binaryField(2, arrowSchema);
      });
    });
    w.binaryField(6, 'semdedup');
  });
  return w.finish();
}

function schemaElementCount(plans: readonly LeafPlan[]): number {
  return 1 + plans.reduce((s, p) => s + (p.listSize > 0 ? 3 : 1), 0);
}

// ---------------------------------------------------------------------------------------------
// Thrift compact protocol, write side: just the field kinds parquet.thrift needs here.

const TType = { I32: 5, I64: 6, BINARY: 8, LIST: 9, STRUCT: 12 } as const;

class ThriftWriter {
  readonly #out: number[] = [];
  readonly #lastField: number[] = [];
  readonly #encoder = new TextEncoder();

  /** Unsigned varint; values here (offsets, sizes, counts) stay far below 2^53. */
  #varint(value: number): void {
    let v = value;
    while (v >= 0x80) {
      this.#out.push((v % 0x80) | 0x80);
      v = Math.floor(v / 0x80);
    }
    this.#out.push(v);
  }

  #zigzag(value: number): number {
    return value >= 0 ? value * 2 : -value * 2 - 1;
  }

  #fieldHeader(id: number, type: number): void {
    const last = this.#lastField[this.#lastField.length - 1]!;
    const delta = id - last;
    if (delta > 0 && delta <= 15) this.#out.push((delta << 4) | type);
    else {
      this.#out.push(type);
      this.#varint(this.#zigzag(id));
    }
    this.#lastField[this.#lastField.length - 1] = id;
  }

  struct(body: () => void): void {
    this.#lastField.push(0);
    body();
    this.#out.push(0); // STOP
    this.#lastField.pop();
  }

  structField(id: number, body: () => void): void {
    this.#fieldHeader(id, TType.STRUCT);
    this.struct(body);
  }

  i32(value: number): void {
    this.#varint(this.#zigzag(value));
  }

  i32Field(id: number, value: number): void {
    this.#fieldHeader(id, TType.I32);
    this.i32(value);
  }

  i64Field(id: number, value: number): void {
    this.#fieldHeader(id, TType.I64);
    this.#varint(this.#zigzag(value));
  }

  binary(value: string): void {
    const bytes = this.#encoder.encode(value);
    this.#varint(bytes.length);
    for (const b of bytes) this.#out.push(b);
  }

  binaryField(id: number, value: string): void {
    this.#fieldHeader(id, TType.BINARY);
    this.binary(value);
  }

  listField(id: number, elemType: number, size: number, body: () => void): void {
    this.#fieldHeader(id, TType.LIST);
    if (size < 15) this.#out.push((size << 4) | elemType);
    else {
      this.#out.push(0xf0 | elemType);
      this.#varint(size);
    }
    body();
  }

  finish(): Uint8Array {
    return Uint8Array.from(this.#out);
  }
}
