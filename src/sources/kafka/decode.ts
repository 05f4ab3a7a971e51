/**
 * Kafka records → one `RawClipBatch`, plus the way back from each row to the record it came
 * from, so a refused row can be dead-lettered with its original bytes.
 *
 * Two value formats, told apart by the `content-type` header (or, without one, by the Arrow IPC
 * continuation marker `FF FF FF FF`, which no JSON text starts with):
 * - JSON: one clip per record, `{"id", "embedding": [...], ...metadata}`;
 * - Arrow IPC stream (`application/vnd.apache.arrow.stream`): many rows per record, an `id`
 *   column (string or integer) and an `embedding` list or fixed-size list of float32/float64.
 *
 * Nothing here throws on bad input: a record that cannot be decoded becomes one row carrying a
 * `rowErrors` reason, which validation turns into a refusal (bad records are data).
 *
 * ```ts
 * const decoded = decodeKafkaRecords(batch.records, { idField: 'id', embeddingField: 'embedding', metadataFields: [], idType: 'string' });
 * const { ok, rejected } = validateRawBatch(decoded.raw, validation);
 * const letters = rejected.map((r) => deadLetterForRow(decoded.rows[r.row!]!, r.reason));
 * ```
 */
import { DataType, Precision, tableFromIPC, tableToIPC } from 'apache-arrow';
import type { Table } from 'apache-arrow';
import { decodeEmbeddings, idTypeOfArrow, metadataTypeOfArrow, metadataValues } from '../index.js';
import type { DeadLetter } from '../../sinks/kafka/index.js';
import type { IdType, MetadataValue, RawClipBatch } from '../../shared/types.js';
import { arrowStreamProblem } from './arrow-guard.js';
import { splitJsonEmbedding } from './json-embedding.js';
import { headerText } from './types.js';
import type { KafkaRecord } from './types.js';

export const ARROW_STREAM_CONTENT_TYPE = 'application/vnd.apache.arrow.stream';
export const JSON_CONTENT_TYPE = 'application/json';
/** Header added to a dead letter cut from one row of an Arrow record: the row's index in it. */
export const SOURCE_ROW_HEADER = 'source-row';

export interface KafkaDecodeOptions {
  readonly idField: string;
  readonly embeddingField: string;
  readonly metadataFields: readonly string[];
  /** JSON ids must be strings (`string`) or integers (`int64`); Arrow id columns likewise. */
  readonly idType: IdType;
  /** Expected dimension, only to size buffers. */
  readonly dim?: number;
  /** Records with a larger value are refused undecoded (bytes). Default: no limit. */
  readonly maxRecordBytes?: number;
}

/** Where a decoded row came from. */
export interface RowOrigin {
  readonly record: KafkaRecord;
  /** Row index inside an Arrow record; null for a JSON record or a record that did not decode. */
  readonly rowInRecord: number | null;
  /** The decoded Arrow table of the record (to cut a one-row dead letter from). */
  readonly table?: Table;
}

export interface DecodedKafkaBatch {
  /** Rows of every record, in record order; `origin.firstRow` is 0 so a row's index is its number. */
  readonly raw: RawClipBatch;
  /** Aligned with `raw.ids`. */
  readonly rows: readonly RowOrigin[];
  /** Records (not rows) per format, for metrics. */
  readonly arrowRecords: number;
  readonly jsonRecords: number;
}

/** Decode records of one partition; never throws on bad bytes. */
export function decodeKafkaRecords(records: readonly KafkaRecord[], options: KafkaDecodeOptions): DecodedKafkaBatch {
  // Size the values once: an Arrow record holds at most a float per 4 bytes of it, a JSON
  // record one embedding (growing by doubling copied each batch's values several times).
  const arrow = records.map(isArrowRecord);
  let expectedValues = 0;
  const maxBytes = options.maxRecordBytes ?? Infinity;
  records.forEach((r, i) => (expectedValues += r.value.length > maxBytes ? 0 : arrow[i] ? r.value.length >> 2 : (options.dim ?? 64)));
  const builder = new RawBatchBuilder(options, records.length, expectedValues);
  let arrowRecords = 0;
  for (const [i, record] of records.entries()) {
    if (record.value.length > maxBytes) {
      // Not even parsed: a huge record must not cost the memory or time its decoding would.
      builder.addErrorRow(oversizedReason(record.value.length, maxBytes), { record, rowInRecord: null });
      if (arrow[i]) arrowRecords++;
    } else if (arrow[i]) {
      arrowRecords++;
      decodeArrowRecord(record, options, builder);
    } else {
      decodeJsonRecord(record, options, builder);
    }
  }
  const first = records[0];
  return {
    raw: builder.build(first ? { topic: first.topic, partition: first.partition, firstRow: 0 } : { firstRow: 0 }),
    rows: builder.origins,
    arrowRecords,
    jsonRecords: records.length - arrowRecords,
  };
}

/** The dead-letter reason of a record over `--max-record-bytes` (names both sizes). */
export function oversizedReason(bytes: number, limit: number): string {
  return `record of ${bytes} bytes exceeds --max-record-bytes ${limit}`;
}

export function isArrowRecord(record: KafkaRecord): boolean {
  const type = headerText(record.headers, 'content-type');
  if (type !== undefined) return type.split(';')[0]!.trim().toLowerCase() === ARROW_STREAM_CONTENT_TYPE;
  const v = record.value;
  return v.length >= 4 && v[0] === 0xff && v[1] === 0xff && v[2] === 0xff && v[3] === 0xff;
}

/**
 * The dead letter for a refused row: the record's own bytes, or for one row of an Arrow record,
 * that row alone as an Arrow IPC stream (so replaying the dead-letter topic does not re-send the
 * rows that were accepted), with a `source-row` header.
 */
export function deadLetterForRow(origin: RowOrigin, reason: string): DeadLetter {
  if (origin.rowInRecord === null || !origin.table) return { record: origin.record, reason };
  let value: Buffer;
  try {
    value = Buffer.from(tableToIPC(origin.table.slice(origin.rowInRecord, origin.rowInRecord + 1), 'stream'));
  } catch {
    value = origin.record.value; // cannot happen for a table we decoded; keep the whole record then
  }
  return {
    record: { ...origin.record, value, headers: { ...origin.record.headers, [SOURCE_ROW_HEADER]: Buffer.from(String(origin.rowInRecord)) } },
    reason,
  };
}

// ---------------------------------------------------------------------------------------------
// JSON

function decodeJsonRecord(record: KafkaRecord, options: KafkaDecodeOptions, out: RawBatchBuilder): void {
  const origin: RowOrigin = { record, rowInRecord: null };
  if (record.value.length === 0) {
    out.addErrorRow('empty value (tombstone)', origin);
    return;
  }
  // Fast path: the embedding array parsed from the bytes, JSON.parse for the rest (see
  // json-embedding.ts); anything it does not take, and any error, goes the ordinary way.
  let parsed: unknown;
  let fastValues: Float32Array | null = null;
  const split = splitJsonEmbedding(record.value, options.embeddingField);
  if (split) {
    try {
      parsed = JSON.parse(split.rest);
      fastValues = split.values;
    } catch {
      // the whole text below gives the exact error
    }
  }
  let textCache: string | null = null;
  const text = (): string => (textCache ??= record.value.toString('utf8'));
  if (fastValues === null) {
    try {
      parsed = JSON.parse(text());
    } catch (err) {
      out.addErrorRow(`invalid JSON (${(err as Error).message})`, origin);
      return;
    }
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    out.addErrorRow('not a JSON object', origin);
    return;
  }
  const obj = parsed as Record<string, unknown>;
  const problems: string[] = [];
  let id: string | null = null;
  if (!(options.idField in obj)) problems.push(`no field "${options.idField}"`);
  else {
    const v = obj[options.idField];
    if (v !== null) {
      id = jsonId(v, options.idType, text, options.idField);
      if (id === null) {
        problems.push(`field "${options.idField}" is ${clip(JSON.stringify(v))}; expected ${options.idType === 'string' ? 'a string' : 'an integer'} id`);
      }
    }
  }
  let embedding: readonly unknown[] | Float32Array | null = null;
  if (!(options.embeddingField in obj)) problems.push(`no field "${options.embeddingField}"`);
  else if (fastValues !== null) embedding = fastValues; // numbers by construction
  else {
    const e = obj[options.embeddingField];
    if (Array.isArray(e)) {
      if (e.every((x) => typeof x === 'number')) embedding = e;
      else problems.push(`field "${options.embeddingField}" has a non-number element`);
    } else if (e !== null) problems.push(`field "${options.embeddingField}" is not an array`);
  }
  const meta: MetadataValue[] = options.metadataFields.map((name) => {
    const v = obj[name];
    if (v === undefined || v === null) return null;
    if (typeof v === 'string' || typeof v === 'boolean') return v;
    if (typeof v === 'number') {
      // Integers beyond 2^53 keep their digits, as the JSONL source does.
      if (Number.isInteger(v) && !Number.isSafeInteger(v)) return BigInt(rawIntegerText(text(), name) ?? BigInt(v).toString());
      return v;
    }
    problems.push(`field "${name}" holds ${Array.isArray(v) ? 'an array' : 'an object'}; expected a string, number or bool`);
    return null;
  });
  if (problems.length > 0) {
    out.addErrorRow(problems.join('; '), origin, id);
    return;
  }
  out.addJsonRow(id, embedding, meta, origin);
}

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** The canonical id string, or null when `v` is not an id of `idType`. */
function jsonId(v: unknown, idType: IdType, text: () => string, field: string): string | null {
  if (idType === 'string') return typeof v === 'string' ? v : null;
  let n: bigint;
  if (typeof v === 'number' && Number.isInteger(v)) {
    n = Number.isSafeInteger(v) ? BigInt(v) : BigInt(rawIntegerText(text(), field) ?? BigInt(v).toString());
  } else if (typeof v === 'string' && /^-?\d{1,20}$/.test(v)) {
    // Producers in languages without int64 JSON numbers often send them as strings.
    n = BigInt(v);
  } else return null;
  return n >= INT64_MIN && n <= INT64_MAX ? n.toString() : null;
}

/** The digits of an integer field as written (JSON.parse rounds beyond 2^53). */
function rawIntegerText(text: string, field: string): string | null {
  const esc = field.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const m = new RegExp(`"${esc}"\\s*:\\s*(-?\\d+)\\s*[,}]`).exec(text);
  return m ? m[1]! : null;
}

function clip(s: string | undefined, max = 40): string {
  if (s === undefined) return 'undefined';
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

// ---------------------------------------------------------------------------------------------
// Arrow IPC

function decodeArrowRecord(record: KafkaRecord, options: KafkaDecodeOptions, out: RawBatchBuilder): void {
  const whole: RowOrigin = { record, rowInRecord: null };
  const unsafe = arrowStreamProblem(record.value);
  if (unsafe) {
    out.addErrorRow(unsafe, whole);
    return;
  }
  let table: Table;
  try {
    table = tableFromIPC(record.value);
  } catch (err) {
    out.addErrorRow(`invalid Arrow IPC stream (${err instanceof Error ? err.message : String(err)})`, whole);
    return;
  }
  const problem = arrowSchemaProblem(table, options);
  if (problem) {
    out.addErrorRow(problem, whole);
    return;
  }
  if (table.numRows === 0) {
    out.addErrorRow('Arrow stream holds no rows', whole);
    return;
  }
  let ids: (string | null)[];
  let emb: ReturnType<typeof decodeEmbeddings>;
  const meta: MetadataValue[][] = [];
  try {
    const idVec = table.getChild(options.idField)!;
    const embVec = table.getChild(options.embeddingField)!;
    if (idVec.length !== table.numRows || embVec.length !== table.numRows) throw new Error('column lengths differ from the row count');
    ids = new Array<string | null>(table.numRows);
    for (let i = 0; i < table.numRows; i++) {
      const v = idVec.get(i) as unknown;
      ids[i] = v === null || v === undefined ? null : typeof v === 'string' ? v : String(v);
    }
    emb = decodeEmbeddings(embVec);
    if (emb.offsets[table.numRows] !== emb.values.length) throw new Error('embedding values do not match their offsets');
    for (const name of options.metadataFields) {
      const vec = table.getChild(name);
      if (vec && vec.length !== table.numRows) throw new Error(`column "${name}" length differs from the row count`);
      meta.push(vec ? metadataValues(vec) : new Array<MetadataValue>(table.numRows).fill(null));
    }
  } catch (err) {
    // A stream whose buffers do not match its schema can still fail here.
    out.addErrorRow(`invalid Arrow data (${err instanceof Error ? err.message : String(err)})`, whole);
    return;
  }
  out.addArrowRows(ids, emb, meta, record, table);
}

/** Why the table's columns cannot be read as clips, or null. */
function arrowSchemaProblem(table: Table, options: KafkaDecodeOptions): string | null {
  const idField = table.schema.fields.find((f) => f.name === options.idField);
  if (!idField) return `Arrow stream has no id column "${options.idField}"`;
  const idType = idTypeOfArrow(idField.type as DataType);
  if (idType === null) return `id column "${options.idField}" has type ${String(idField.type)}; expected a string or integer`;
  if (idType !== options.idType) return `id column "${options.idField}" holds ${idType === 'string' ? 'strings' : 'integers'}; this stream's ids are ${options.idType === 'string' ? 'strings' : 'integers'} (--id-type)`;
  const embField = table.schema.fields.find((f) => f.name === options.embeddingField);
  if (!embField) return `Arrow stream has no embedding column "${options.embeddingField}"`;
  const t = embField.type as DataType;
  const isList = DataType.isList(t) || DataType.isFixedSizeList(t) || DataType.isLargeList(t);
  const child = isList ? (t.children[0]?.type as DataType | undefined) : undefined;
  if (!child || !DataType.isFloat(child) || (child.precision !== Precision.SINGLE && child.precision !== Precision.DOUBLE)) {
    return `embedding column "${options.embeddingField}" has type ${String(t)}; expected a list or fixed-size list of float32 or float64`;
  }
  for (const name of options.metadataFields) {
    const f = table.schema.fields.find((x) => x.name === name);
    if (f && metadataTypeOfArrow(f.type as DataType) === null) return `metadata column "${name}" has unsupported type ${String(f.type)}`;
  }
  return null;
}

// ---------------------------------------------------------------------------------------------

/** Accumulates rows of many records into one RawClipBatch. */
class RawBatchBuilder {
  readonly origins: RowOrigin[] = [];
  readonly #options: KafkaDecodeOptions;
  readonly #ids: (string | null)[] = [];
  readonly #rowErrors: (string | null)[] = [];
  #anyError = false;
  readonly #nulls: number[] = [];
  #ends: Int32Array;
  #values: Float32Array;
  /**
   * The values of the batch's first Arrow record when it is all the batch holds so far: used as
   * they are (no copy of the decoded floats) unless more rows follow. The caller owns them then
   * (validation scales rows in place); a refused row is left as it was, so its dead letter,
   * re-encoded from the record's table, carries the values the producer sent.
   */
  #borrowed: Float32Array | null = null;
  readonly #expectedValues: number;
  #length = 0;
  readonly #meta: MetadataValue[][];

  constructor(options: KafkaDecodeOptions, expectedRows: number, expectedValues = expectedRows * (options.dim ?? 64)) {
    this.#options = options;
    this.#meta = options.metadataFields.map(() => []);
    this.#ends = new Int32Array(Math.max(16, expectedRows));
    // Allocated on the first copy: a batch of one Arrow record never needs it.
    this.#expectedValues = Math.max(16, expectedValues);
    this.#values = new Float32Array(0);
  }

  addErrorRow(reason: string, origin: RowOrigin, id: string | null = null): void {
    this.#push(id, origin, reason);
    this.#meta.forEach((m) => m.push(null));
  }

  addJsonRow(id: string | null, embedding: readonly unknown[] | Float32Array | null, meta: readonly MetadataValue[], origin: RowOrigin): void {
    if (embedding) {
      this.#reserve(embedding.length);
      const v = this.#values;
      if (embedding instanceof Float32Array) v.set(embedding, this.#length);
      else for (let i = 0; i < embedding.length; i++) v[this.#length + i] = embedding[i] as number;
      this.#length += embedding.length;
    }
    this.#push(id, origin, null, embedding === null);
    meta.forEach((value, j) => this.#meta[j]!.push(value));
  }

  addArrowRows(ids: readonly (string | null)[], emb: { values: Float32Array; offsets: Int32Array; embeddingNull: Uint8Array }, meta: readonly MetadataValue[][], record: KafkaRecord, table: Table): void {
    const base = this.#length;
    if (this.#ids.length === 0 && base === 0) this.#borrowed = emb.values;
    else {
      this.#reserve(emb.values.length);
      this.#values.set(emb.values, base);
    }
    this.#length += emb.values.length;
    for (let i = 0; i < ids.length; i++) {
      this.#push(ids[i]!, { record, rowInRecord: i, table }, null, emb.embeddingNull[i] === 1, base + emb.offsets[i + 1]!);
    }
    meta.forEach((column, j) => {
      const target = this.#meta[j]!;
      for (const v of column) target.push(v);
    });
  }

  #push(id: string | null, origin: RowOrigin, error: string | null, embeddingNull = error !== null, end = this.#length): void {
    const row = this.#ids.length;
    if (row + 1 > this.#ends.length) {
      const next = new Int32Array(this.#ends.length * 2);
      next.set(this.#ends);
      this.#ends = next;
    }
    this.#ends[row] = end;
    this.#ids.push(id);
    this.#nulls.push(embeddingNull ? 1 : 0);
    this.#rowErrors.push(error);
    if (error !== null) this.#anyError = true;
    this.origins.push(origin);
  }

  #reserve(extra: number): void {
    if (this.#borrowed) {
      // More rows after a borrowed record: from here on the builder's own array.
      const borrowed = this.#borrowed;
      this.#borrowed = null;
      this.#values = new Float32Array(Math.max(this.#expectedValues, this.#length + extra));
      this.#values.set(borrowed.subarray(0, this.#length));
    }
    if (this.#length + extra <= this.#values.length) return;
    const next = new Float32Array(Math.max(this.#values.length * 2, this.#length + extra, this.#expectedValues));
    next.set(this.#values.subarray(0, this.#length));
    this.#values = next;
  }

  build(origin: RawClipBatch['origin']): RawClipBatch {
    const n = this.#ids.length;
    const offsets = new Int32Array(n + 1);
    offsets.set(this.#ends.subarray(0, n), 1);
    const metadata: Record<string, MetadataValue[]> = {};
    this.#options.metadataFields.forEach((name, j) => (metadata[name] = this.#meta[j]!));
    return {
      ids: this.#ids,
      idType: this.#options.idType,
      values: (this.#borrowed ?? this.#values).subarray(0, this.#length),
      offsets,
      embeddingNull: Uint8Array.from(this.#nulls),
      metadata,
      origin,
      ...(this.#anyError ? { rowErrors: this.#rowErrors } : {}),
    };
  }
}
