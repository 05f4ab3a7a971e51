/**
 * Parquet source: opens each file lazily (a file-backed Blob, or for `s3://` an object read by
 * ranged GETs, so parquet-wasm fetches only the footer and the projected column chunks it needs),
 * streams record batches row group by row group, and turns them into `RawClipBatch`es through
 * Arrow IPC.
 *
 * Why a Blob and `ParquetFile.stream`: parquet-wasm's WebAssembly memory never shrinks and tops
 * out near 2 GB, so the whole file must never be copied into it; the stream decodes at most
 * `batchRows` rows of one row group at a time and only when the consumer pulls.
 */
import type * as pw from 'parquet-wasm';
import { DataType, Precision, tableFromIPC } from 'apache-arrow';
import type { Data, Field, RecordBatch, Schema, Vector } from 'apache-arrow';
import { InputError, SemdedupError } from '../../shared/errors.js';
import { loadParquetWasm } from '../../shared/parquet-wasm.js';
import { storageFor, type LazyBlob, type StorageOptions } from '../../storage/index.js';
import type { BatchOrigin, IdType, MetadataValue, RawClipBatch } from '../../shared/types.js';
import type { FileInspection, InputFieldOptions } from '../index.js';

/** Rows decoded per batch when the caller does not say. */
export const DEFAULT_BATCH_ROWS = 8192;
/** Rows of each file read up front to check its embedding dimension. */
const DIM_SAMPLE_ROWS = 1024;

/**
 * Why reads are guarded: parquet-wasm traps (an uncatchable wasm `unreachable` that ends the
 * process) when a read of its Blob rejects while it decodes a row group, e.g. on a network error.
 * So the Blob it is given never rejects: a failed read stays pending, and its error rejects a
 * per-file promise that every wait on the file races (`untilReadFails`).
 */
const readFailures = new WeakMap<pw.ParquetFile, Promise<never>>();

function guardReads(blob: LazyBlob, onFailure: (err: unknown) => void): LazyBlob {
  return {
    size: blob.size,
    type: blob.type,
    slice: (start, end) => guardReads(blob.slice(start, end), onFailure),
    arrayBuffer: () =>
      blob.arrayBuffer().catch((err: unknown) => {
        onFailure(err);
        return new Promise<ArrayBuffer>(() => undefined);
      }),
  };
}

/** `work`, or the file's read error if a read fails first. */
function untilReadFails<T>(pf: pw.ParquetFile, work: Promise<T>): Promise<T> {
  const failure = readFailures.get(pf);
  return failure ? Promise.race([work, failure]) : work;
}

/**
 * Open a Parquet file (local or `s3://`) without reading it; InputError naming the file when it
 * is not Parquet.
 */
export async function openParquetFile(file: string, storage?: StorageOptions): Promise<pw.ParquetFile> {
  let blob: LazyBlob;
  try {
    blob = await storageFor(file, storage).openBlob(file);
  } catch (cause) {
    if (cause instanceof SemdedupError) throw cause;
    throw new InputError(`cannot open input file ${file}: ${errorText(cause)}`, { cause, context: { file } });
  }
  let fail!: (err: unknown) => void;
  const failure = new Promise<never>((_, reject) => (fail = reject));
  failure.catch(() => undefined); // raised where the file is awaited, not here
  const guarded = guardReads(blob, (cause) =>
    fail(cause instanceof SemdedupError ? cause : new InputError(`cannot read input file ${file}: ${errorText(cause)}`, { cause, context: { file } })),
  );
  let pf: pw.ParquetFile;
  try {
    // parquet-wasm uses only `size` and `slice(a, b).arrayBuffer()` of the Blob it is given.
    const { ParquetFile } = await loadParquetWasm();
    pf = await Promise.race([ParquetFile.fromFile(guarded as Blob), failure]);
  } catch (cause) {
    if (cause instanceof SemdedupError) throw cause;
    throw new InputError(`input file ${file} is not a readable Parquet file (${errorText(cause)})`, {
      cause,
      context: { file },
    });
  }
  readFailures.set(pf, failure);
  return pf;
}

/** The Arrow schema stored in (or derived from) a Parquet file's footer. */
export function parquetArrowSchema(file: string, pf: pw.ParquetFile): Schema {
  try {
    return tableFromIPC(pf.schema().intoIPCStream()).schema;
  } catch (cause) {
    throw new InputError(`input file ${file}: cannot read its schema (${errorText(cause)})`, { cause, context: { file } });
  }
}

/** How the embedding column is laid out; anything else is refused. */
interface EmbeddingLayout {
  readonly kind: 'list' | 'large-list' | 'fixed-size-list';
  readonly listSize?: number;
  readonly float: 32 | 64;
}

/** `string` for string ids, `int64` for any integer type; null when ids cannot have this type. */
export function idTypeOfArrow(type: DataType): IdType | null {
  const t = DataType.isDictionary(type) ? type.dictionary : type;
  if (DataType.isUtf8(t) || DataType.isLargeUtf8(t)) return 'string';
  if (DataType.isInt(t)) return 'int64';
  return null;
}

function embeddingLayoutOf(type: DataType): EmbeddingLayout | null {
  const kind = DataType.isFixedSizeList(type)
    ? 'fixed-size-list'
    : DataType.isLargeList(type)
      ? 'large-list'
      : DataType.isList(type)
        ? 'list'
        : null;
  if (!kind) return null;
  const child = (type.children[0] as Field | undefined)?.type;
  if (!child || !DataType.isFloat(child)) return null;
  const float = child.precision === Precision.SINGLE ? 32 : child.precision === Precision.DOUBLE ? 64 : null;
  if (!float) return null;
  return kind === 'fixed-size-list' ? { kind, float, listSize: (type as unknown as { listSize: number }).listSize } : { kind, float };
}

/**
 * The type a metadata column is carried and written back with, or null when unsupported.
 * Dictionary columns become their value type (the dictionary is a storage detail).
 */
export function metadataTypeOfArrow(type: DataType): DataType | null {
  const t = DataType.isDictionary(type) ? type.dictionary : type;
  if (
    DataType.isUtf8(t) ||
    DataType.isLargeUtf8(t) ||
    DataType.isBool(t) ||
    DataType.isInt(t) ||
    DataType.isFloat(t) ||
    DataType.isTimestamp(t) ||
    DataType.isDate(t) ||
    DataType.isTime(t)
  ) {
    return t;
  }
  return null;
}

/** Check that the needed columns exist with usable types; InputError naming file and column. */
export function checkInputColumns(
  file: string,
  schema: Schema,
  fields: InputFieldOptions,
): { idType: IdType; layout: EmbeddingLayout; metadataTypes: Record<string, DataType> } {
  const byName = new Map(schema.fields.map((f) => [f.name, f] as const));
  const present = schema.fields.map((f) => f.name).join(', ');
  const need = (name: string, role: string): Field => {
    const f = byName.get(name);
    if (!f) {
      throw new InputError(`input file ${file} has no ${role} column "${name}" (columns: ${present})`, {
        context: { file, field: name },
      });
    }
    return f;
  };
  const idField = need(fields.idField, 'id');
  const idType = idTypeOfArrow(idField.type);
  if (!idType) {
    throw new InputError(
      `input file ${file}: id column "${fields.idField}" has type ${String(idField.type)}; expected a string or integer`,
      { context: { file, field: fields.idField } },
    );
  }
  const embField = need(fields.embeddingField, 'embedding');
  const layout = embeddingLayoutOf(embField.type);
  if (!layout) {
    throw new InputError(
      `input file ${file}: embedding column "${fields.embeddingField}" has type ${String(embField.type)}; ` +
        'expected a list, large list or fixed-size list of float32 or float64',
      { context: { file, field: fields.embeddingField } },
    );
  }
  const metadataTypes: Record<string, DataType> = {};
  for (const name of fields.metadataFields) {
    const f = need(name, 'metadata');
    const t = metadataTypeOfArrow(f.type);
    if (!t) {
      throw new InputError(
        `input file ${file}: metadata column "${name}" has type ${String(f.type)}; ` +
          'supported: string, integer, float, bool, timestamp, date, time',
        { context: { file, field: name } },
      );
    }
    metadataTypes[name] = t;
  }
  return { idType, layout, metadataTypes };
}

function projectedColumns(fields: InputFieldOptions): string[] {
  return [...new Set([fields.idField, fields.embeddingField, ...fields.metadataFields])];
}

/**
 * Read a file's footer and the first rows of its embedding column: columns, types, row count and
 * the embedding lengths of the first non-empty rows (for the dimension check).
 */
export async function inspectParquetFile(file: string, fields: InputFieldOptions): Promise<FileInspection> {
  const pf = await openParquetFile(file, fields.storage);
  try {
    const schema = parquetArrowSchema(file, pf);
    const { idType, layout, metadataTypes } = checkInputColumns(file, schema, fields);
    const rows = pf.metadata().fileMetadata().numRows();
    let sampleLengths: number[] = [];
    if (rows > 0 && layout.kind !== 'fixed-size-list') {
      let table;
      try {
        const wt = await untilReadFails(pf, pf.read({ columns: [fields.embeddingField], limit: Math.min(rows, DIM_SAMPLE_ROWS) }));
        table = tableFromIPC(wt.intoIPCStream());
      } catch (cause) {
        if (cause instanceof SemdedupError) throw cause;
        throw new InputError(`input file ${file} is corrupt (${errorText(cause)})`, { cause, context: { file } });
      }
      sampleLengths = nonEmptyLengths(decodeEmbeddings(table.getChild(fields.embeddingField)!));
    }
    return {
      file,
      format: 'parquet',
      idType,
      metadataTypes,
      inferredTypes: false,
      rows,
      hasRows: rows > 0,
      fixedSize: layout.kind === 'fixed-size-list' ? layout.listSize : undefined,
      sampleLengths,
    };
  } finally {
    pf.free();
  }
}

function nonEmptyLengths(e: DecodedEmbeddings): number[] {
  const out: number[] = [];
  for (let i = 0; i < e.embeddingNull.length; i++) {
    const len = e.offsets[i + 1]! - e.offsets[i]!;
    if (!e.embeddingNull[i] && len > 0) out.push(len);
  }
  return out;
}

/**
 * Stream one Parquet file as RawClipBatches of at most `batchRows` rows, projected to the needed
 * columns. Lazy: nothing is read until the first `next()`, and each `next()` decodes one batch.
 */
export async function* iterateParquetFile(
  file: string,
  fields: InputFieldOptions,
  options: { batchRows?: number; idType?: IdType } = {},
): AsyncGenerator<RawClipBatch> {
  const pf = await openParquetFile(file, fields.storage);
  let reader: ReadableStreamDefaultReader<pw.RecordBatch> | undefined;
  try {
    const schema = parquetArrowSchema(file, pf);
    const { idType } = checkInputColumns(file, schema, fields);
    try {
      const stream = await untilReadFails(pf, pf.stream({ columns: projectedColumns(fields), batchSize: options.batchRows ?? DEFAULT_BATCH_ROWS }));
      reader = stream.getReader() as ReadableStreamDefaultReader<pw.RecordBatch>;
    } catch (cause) {
      if (cause instanceof SemdedupError) throw cause;
      throw new InputError(`input file ${file} is corrupt (${errorText(cause)})`, { cause, context: { file } });
    }
    let firstRow = 0;
    for (;;) {
      let table;
      try {
        const { done, value } = await untilReadFails(pf, reader.read());
        if (done) break;
        table = tableFromIPC(value.intoIPCStream());
      } catch (cause) {
        if (cause instanceof SemdedupError) throw cause;
        throw new InputError(`input file ${file} is corrupt near row ${firstRow} (${errorText(cause)})`, {
          cause,
          context: { file, row: firstRow },
        });
      }
      for (const batch of table.batches) {
        if (batch.numRows === 0) continue;
        yield rawClipBatchFromArrow(batch, fields, { file, firstRow }, options.idType ?? idType);
        firstRow += batch.numRows;
      }
    }
  } finally {
    if (reader) await reader.cancel().catch(() => undefined);
    pf.free();
  }
}

/**
 * Convert an Arrow record batch (from Parquet, or an Arrow IPC Kafka record) into a RawClipBatch.
 * Float32 embeddings are taken zero-copy from the child buffer; float64 are narrowed to float32.
 */
export function rawClipBatchFromArrow(
  batch: RecordBatch,
  fields: InputFieldOptions,
  origin: BatchOrigin,
  idType: IdType,
): RawClipBatch {
  const idVec = batch.getChild(fields.idField);
  const embVec = batch.getChild(fields.embeddingField);
  if (!idVec || !embVec) {
    const missing = !idVec ? fields.idField : fields.embeddingField;
    throw new InputError(`${origin.file ? `input file ${origin.file}: ` : ''}no column "${missing}" in batch`, {
      context: { file: origin.file, field: missing },
    });
  }
  const n = batch.numRows;
  const ids: (string | null)[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const v = idVec.get(i) as unknown;
    ids[i] = v === null || v === undefined ? null : typeof v === 'string' ? v : String(v);
  }
  const { values, offsets, embeddingNull } = decodeEmbeddings(embVec);
  const metadata: Record<string, MetadataValue[]> = {};
  for (const name of fields.metadataFields) {
    const vec = batch.getChild(name);
    if (!vec) {
      throw new InputError(`${origin.file ? `input file ${origin.file}: ` : ''}no metadata column "${name}" in batch`, {
        context: { file: origin.file, field: name },
      });
    }
    metadata[name] = metadataValues(vec);
  }
  return { ids, idType, values, offsets, embeddingNull, metadata, origin };
}

/** Plain MetadataValues of a column: int64 as bigint, timestamps and dates as epoch milliseconds. */
export function metadataValues(vec: Vector): MetadataValue[] {
  const out: MetadataValue[] = new Array(vec.length);
  for (let i = 0; i < vec.length; i++) {
    const v = vec.get(i) as unknown;
    out[i] = v === undefined ? null : v instanceof Date ? v.getTime() : (v as MetadataValue);
  }
  return out;
}

interface DecodedEmbeddings {
  values: Float32Array;
  offsets: Int32Array;
  embeddingNull: Uint8Array;
}

/** Decode a list-of-float column (any chunks) into concatenated float32 values + offsets. */
export function decodeEmbeddings(vec: Vector): DecodedEmbeddings {
  if (vec.data.length === 1) return decodeEmbeddingData(vec.data[0]!);
  const parts = vec.data.map((d) => decodeEmbeddingData(d));
  const n = parts.reduce((s, p) => s + p.embeddingNull.length, 0);
  const total = parts.reduce((s, p) => s + p.values.length, 0);
  const values = new Float32Array(total);
  const offsets = new Int32Array(n + 1);
  const embeddingNull = new Uint8Array(n);
  let row = 0;
  let base = 0;
  for (const p of parts) {
    values.set(p.values, base);
    for (let i = 0; i < p.embeddingNull.length; i++) offsets[row + i + 1] = base + p.offsets[i + 1]!;
    embeddingNull.set(p.embeddingNull, row);
    row += p.embeddingNull.length;
    base += p.values.length;
  }
  return { values, offsets, embeddingNull };
}

function isValidAt(data: Data, i: number): boolean {
  if (data.nullCount === 0) return true;
  const bitmap = data.nullBitmap;
  if (!bitmap || bitmap.length === 0) return true;
  const k = data.offset + i;
  return (bitmap[k >> 3]! & (1 << (k & 7))) !== 0;
}

function decodeEmbeddingData(data: Data): DecodedEmbeddings {
  const n = data.length;
  const type = data.type as DataType;
  const offsets = new Int32Array(n + 1);
  const embeddingNull = new Uint8Array(n);
  for (let i = 0; i < n; i++) embeddingNull[i] = isValidAt(data, i) ? 0 : 1;
  const child = data.children[0] as Data | undefined;
  // apache-arrow keeps `values` and `valueOffsets` relative to a slice; only bitmaps use `offset`.
  let start: number;
  let end: number;
  if (DataType.isFixedSizeList(type)) {
    const size = type.listSize;
    for (let i = 0; i <= n; i++) offsets[i] = i * size;
    start = 0;
    end = n * size;
  } else {
    const vo = data.valueOffsets as Int32Array | BigInt64Array;
    const at = (i: number): number => Number(vo[i]!);
    start = n > 0 ? at(0) : 0;
    for (let i = 0; i <= n; i++) offsets[i] = at(i) - start;
    end = n > 0 ? at(n) : 0;
  }
  if (!child || end === start) return { values: new Float32Array(0), offsets, embeddingNull };
  const raw = child.values as Float32Array | Float64Array;
  let values: Float32Array =
    raw instanceof Float32Array ? raw.subarray(start, end) : Float32Array.from(raw.subarray(start, end));
  if (child.nullCount > 0) {
    // A null inside a vector becomes NaN so validation refuses the row as non-finite.
    if (values.buffer === raw.buffer) values = values.slice();
    for (let k = start; k < end; k++) if (!isValidAt(child, k)) values[k - start] = Number.NaN;
  }
  return { values, offsets, embeddingNull };
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
