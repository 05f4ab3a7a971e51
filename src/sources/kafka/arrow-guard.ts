/**
 * A structural check of an Arrow IPC stream before apache-arrow decodes it.
 *
 * Why: apache-arrow trusts the flatbuffer metadata. A single flipped bit in a vector length
 * (schema fields, record-batch nodes) makes it build millions of objects and run the process out
 * of memory — found by fuzzing `decodeKafkaRecords`. A Kafka record is untrusted input, so before
 * decoding we walk the stream's framing and the flatbuffer tables it will materialize, and refuse
 * any vector or buffer that lies outside its bytes, or lengths no real batch could have.
 *
 * Flatbuffer layout used here (https://flatbuffers.dev/internals): a table starts with an int32
 * offset back to its vtable; the vtable holds uint16 sizes then one uint16 offset per field
 * (0 = absent); offset fields hold a uint32 relative offset; a vector is a uint32 length then
 * its elements. Field numbers follow Arrow's Message.fbs / Schema.fbs.
 */

/** Header types of Message.fbs that a stream of clips may contain. */
const SCHEMA = 1;
const DICTIONARY_BATCH = 2;
const RECORD_BATCH = 3;

const MAX_FIELDS = 4096;
const MAX_DEPTH = 32;

class GuardError extends Error {}

/** A bounds-checked reader over one flatbuffer (a message's metadata). */
class FlatReader {
  readonly #view: DataView;
  readonly size: number;
  constructor(bytes: Uint8Array) {
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.size = bytes.byteLength;
  }

  #check(pos: number, bytes: number, what: string): void {
    if (!(pos >= 0 && pos + bytes <= this.size)) throw new GuardError(`${what} out of bounds`);
  }
  u8(pos: number): number {
    this.#check(pos, 1, 'byte');
    return this.#view.getUint8(pos);
  }
  u16(pos: number): number {
    this.#check(pos, 2, 'uint16');
    return this.#view.getUint16(pos, true);
  }
  i32(pos: number): number {
    this.#check(pos, 4, 'int32');
    return this.#view.getInt32(pos, true);
  }
  u32(pos: number): number {
    this.#check(pos, 4, 'uint32');
    return this.#view.getUint32(pos, true);
  }
  i64(pos: number): bigint {
    this.#check(pos, 8, 'int64');
    return this.#view.getBigInt64(pos, true);
  }

  /** Position of the table whose offset is stored at `at` (the root: at = 0). */
  tableAt(at: number, what: string): number {
    const pos = at + this.u32(at);
    const vtable = pos - this.i32(pos);
    const vtSize = this.u16(vtable);
    if (vtSize < 4 || vtSize % 2 !== 0) throw new GuardError(`${what}: bad vtable`);
    this.#check(vtable, vtSize, `${what} vtable`);
    const tableSize = this.u16(vtable + 2);
    this.#check(pos, Math.max(tableSize, 4), `${what} table`);
    return pos;
  }

  /** Absolute position of field `index` of the table at `table`, or null when absent. */
  field(table: number, index: number): number | null {
    const vtable = table - this.i32(table);
    const vtSize = this.u16(vtable);
    const slot = 4 + 2 * index;
    if (slot + 2 > vtSize) return null;
    const offset = this.u16(vtable + slot);
    if (offset === 0) return null;
    if (offset >= this.u16(vtable + 2)) throw new GuardError('field outside its table');
    return table + offset;
  }

  /** The vector stored at field `index`: start of its elements and its length (0 when absent). */
  vector(table: number, index: number, elementBytes: number, what: string): { start: number; length: number } {
    const at = this.field(table, index);
    if (at === null) return { start: 0, length: 0 };
    const pos = at + this.u32(at);
    const length = this.u32(pos);
    if (length * elementBytes > this.size - pos - 4) throw new GuardError(`${what}: vector of ${length} does not fit its metadata`);
    return { start: pos + 4, length };
  }
}

/** Why the bytes are not a safe-to-decode Arrow IPC stream, or null when they are. */
export function arrowStreamProblem(bytes: Uint8Array): string | null {
  try {
    checkStream(bytes);
    return null;
  } catch (err) {
    if (err instanceof GuardError) return `invalid Arrow IPC stream (${err.message})`;
    throw err;
  }
}

function checkStream(bytes: Uint8Array): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  let sawSchema = false;
  for (;;) {
    if (pos + 4 > bytes.length) {
      if (pos === bytes.length && sawSchema) return; // end without the optional end marker
      throw new GuardError('truncated message header');
    }
    let length = view.getInt32(pos, true);
    pos += 4;
    if (length === -1) {
      // Continuation marker (format >= 0.15), then the metadata length.
      if (pos + 4 > bytes.length) throw new GuardError('truncated message header');
      length = view.getInt32(pos, true);
      pos += 4;
    }
    if (length === 0) {
      if (!sawSchema) throw new GuardError('stream ends before its schema');
      return;
    }
    if (length < 8 || length > bytes.length - pos) throw new GuardError(`metadata length ${length} does not fit the record`);
    const meta = new FlatReader(bytes.subarray(pos, pos + length));
    pos += length;
    const message = meta.tableAt(0, 'message');
    const typeAt = meta.field(message, 1);
    const headerType = typeAt === null ? 0 : meta.u8(typeAt);
    const bodyAt = meta.field(message, 3);
    const bodyLength = bodyAt === null ? 0n : meta.i64(bodyAt);
    if (bodyLength < 0n || bodyLength > BigInt(bytes.length - pos)) throw new GuardError(`body of ${bodyLength} bytes does not fit the record`);
    checkKeyValues(meta, message, 4);
    const headerAt = meta.field(message, 2);
    if (headerAt === null) throw new GuardError('message without header');
    const header = meta.tableAt(headerAt, 'header');
    const body = Number(bodyLength);
    if (headerType === SCHEMA) {
      if (sawSchema) throw new GuardError('second schema in one stream');
      checkSchema(meta, header);
      sawSchema = true;
    } else if (headerType === RECORD_BATCH) {
      if (!sawSchema) throw new GuardError('record batch before the schema');
      checkRecordBatch(meta, header, body);
    } else if (headerType === DICTIONARY_BATCH) {
      if (!sawSchema) throw new GuardError('dictionary batch before the schema');
      const dataAt = meta.field(header, 1);
      if (dataAt === null) throw new GuardError('dictionary batch without data');
      checkRecordBatch(meta, meta.tableAt(dataAt, 'dictionary data'), body);
    } else {
      throw new GuardError(`unsupported message type ${headerType}`);
    }
    pos += body;
  }
}

function checkKeyValues(meta: FlatReader, table: number, index: number): void {
  const { start, length } = meta.vector(table, index, 4, 'custom metadata');
  for (let i = 0; i < length; i++) meta.tableAt(start + 4 * i, 'custom metadata entry');
}

function checkSchema(meta: FlatReader, schema: number): void {
  const counter = { fields: 0 };
  const fields = meta.vector(schema, 1, 4, 'schema fields');
  for (let i = 0; i < fields.length; i++) checkField(meta, meta.tableAt(fields.start + 4 * i, 'field'), 1, counter);
  checkKeyValues(meta, schema, 2);
  meta.vector(schema, 3, 8, 'schema features');
}

/** Type ids of Schema.fbs whose type table holds an int the decoder allocates with. */
const FIXED_SIZE_LIST = 16;
const FIXED_SIZE_BINARY = 15;

function checkField(meta: FlatReader, field: number, depth: number, counter: { fields: number }): void {
  if (depth > MAX_DEPTH) throw new GuardError('fields nested too deeply');
  if (++counter.fields > MAX_FIELDS) throw new GuardError('too many fields');
  const typeTypeAt = meta.field(field, 2);
  const typeAt = meta.field(field, 3);
  if (typeAt !== null) {
    const type = meta.tableAt(typeAt, 'field type');
    const typeType = typeTypeAt === null ? 0 : meta.u8(typeTypeAt);
    if (typeType === FIXED_SIZE_LIST || typeType === FIXED_SIZE_BINARY) {
      const sizeAt = meta.field(type, 0);
      const size = sizeAt === null ? 0 : meta.i32(sizeAt);
      if (size < 0 || size > 1 << 24) throw new GuardError(`fixed size ${size} out of range`);
    }
  }
  const dictionaryAt = meta.field(field, 4);
  if (dictionaryAt !== null) {
    const dictionary = meta.tableAt(dictionaryAt, 'dictionary encoding');
    const indexAt = meta.field(dictionary, 1);
    if (indexAt !== null) meta.tableAt(indexAt, 'dictionary index type');
  }
  const children = meta.vector(field, 5, 4, 'field children');
  for (let i = 0; i < children.length; i++) checkField(meta, meta.tableAt(children.start + 4 * i, 'child field'), depth + 1, counter);
  checkKeyValues(meta, field, 6);
}

function checkRecordBatch(meta: FlatReader, batch: number, bodyLength: number): void {
  // No column holds more values than 8 per body byte (a validity bit each) — a little slack for
  // empty or all-null columns.
  const maxValues = BigInt(bodyLength) * 8n + 64n;
  const lengthAt = meta.field(batch, 0);
  const rows = lengthAt === null ? 0n : meta.i64(lengthAt);
  if (rows < 0n || rows > maxValues) throw new GuardError(`record batch of ${rows} rows in ${bodyLength} body bytes`);
  const nodes = meta.vector(batch, 1, 16, 'field nodes');
  if (nodes.length > MAX_FIELDS) throw new GuardError('too many field nodes');
  for (let i = 0; i < nodes.length; i++) {
    const length = meta.i64(nodes.start + 16 * i);
    const nulls = meta.i64(nodes.start + 16 * i + 8);
    if (length < 0n || length > maxValues || nulls < 0n || nulls > length) throw new GuardError(`field node ${i}: length ${length}, nulls ${nulls}`);
  }
  const buffers = meta.vector(batch, 2, 16, 'buffers');
  if (buffers.length > 3 * MAX_FIELDS) throw new GuardError('too many buffers');
  for (let i = 0; i < buffers.length; i++) {
    const offset = meta.i64(buffers.start + 16 * i);
    const length = meta.i64(buffers.start + 16 * i + 8);
    if (offset < 0n || length < 0n || offset + length > BigInt(bodyLength)) throw new GuardError(`buffer ${i} outside the body`);
  }
  if (meta.field(batch, 3) !== null) throw new GuardError('compressed record batches are not supported');
  meta.vector(batch, 4, 8, 'variadic buffer counts');
}
