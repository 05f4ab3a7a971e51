/**
 * Parquet writer through DuckDB, for files whose columns are already in memory (the per-cluster
 * kmeans_results file): the same `ColumnSpec`s as `writeParquetFile` (src/sinks/parquet), filled
 * into DuckDB data chunks, appended to a temporary table, and written by DuckDB's native Parquet
 * writer with `COPY ... TO` into a temporary file renamed into place when complete.
 *
 * Why: parquet-wasm's list encoder dominates writing embeddings (1000 × 768 float32 per cluster);
 * DuckDB encodes them natively. Chunks are filled with the bindings' bulk copies
 * (`copy_data_to_vector` into the FLOAT[N] child, the list child and the primitive vectors), so a
 * 2048-row slice of a column costs one memcpy, never a call per value — except strings, which DuckDB
 * takes one `vector_assign_string_element` call per row.
 *
 * Layout: DuckDB writes FLOAT[N] as a plain Parquet LIST (Parquet has no fixed-size list), and
 * all columns OPTIONAL. The file also carries the `ARROW:schema` footer entry, as pyarrow and
 * arrow-rs write it, so Arrow readers (pyarrow, parquet-wasm) read the embedding back as
 * `fixed_size_list<float>[N]` and every column with its Arrow type; DuckDB itself reads FLOAT[].
 */
import { open, rename, unlink, mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import duckdb from '@duckdb/node-bindings';
import { DuckDBDataChunk } from '@duckdb/node-api';
import type { DuckDBConnection } from '@duckdb/node-api';
import {
  Bool,
  DataType,
  Field,
  FixedSizeList,
  Float32,
  Float64,
  Int32,
  Int64,
  List,
  Precision,
  Schema,
  Table,
  TimeUnit,
  Utf8,
  tableToIPC,
} from 'apache-arrow';
import { InvariantError } from '../shared/errors.js';
import { syncDir, type ColumnSpec, type ParquetCompression, type ParquetWriteResult } from './parquet/index.js';
import { sqlIdent, sqlString } from '../store/index.js';

export interface DuckDbParquetWriteOptions {
  /** Rows per row group (default 16384). */
  readonly rowGroupRows?: number;
  /** Default `snappy` (as pyarrow and `writeParquetFile`). */
  readonly compression?: ParquetCompression;
}

const DEFAULT_ROW_GROUP_ROWS = 16384;
let tableCounter = 0;

/**
 * Write `columns` (all the same length) to `filePath` through DuckDB on `connection`: written as
 * `filePath.tmp-<pid>`, fsynced and renamed when complete, so the path never holds a partial file.
 * Uses (and drops) a temporary table on the connection; run one write at a time per connection.
 */
export async function writeParquetViaDuckDb(
  connection: DuckDBConnection,
  filePath: string,
  columns: readonly ColumnSpec[],
  options: DuckDbParquetWriteOptions = {},
): Promise<ParquetWriteResult> {
  if (os.endianness() !== 'LE') throw new InvariantError('the DuckDB Parquet writer fills native vectors as little-endian');
  if (columns.length === 0) throw new InvariantError(`no columns to write to ${filePath}`);
  const rowGroupRows = options.rowGroupRows ?? DEFAULT_ROW_GROUP_ROWS;
  if (!(rowGroupRows > 0)) throw new InvariantError(`rowGroupRows must be positive, got ${rowGroupRows}`);
  const n = columnLength(columns[0]!);
  for (const c of columns) {
    if (columnLength(c) !== n) {
      throw new InvariantError(`column ${c.name} has ${columnLength(c)} rows, ${columns[0]!.name} has ${n} (${filePath})`);
    }
  }
  const writers = columns.map(columnWriter);
  const table = `semdedup_parquet_write_${process.pid}_${tableCounter++}`;
  const tmp = `${filePath}.tmp-${process.pid}`;
  await mkdir(path.dirname(filePath), { recursive: true });

  await connection.run(
    `CREATE OR REPLACE TEMP TABLE ${sqlIdent(table)} (${columns.map((c, i) => `${sqlIdent(c.name)} ${writers[i]!.sqlType}`).join(', ')})`,
  );
  try {
    const appender = await connection.createAppender(table, 'main', 'temp');
    try {
      const logicalTypes = writers.map((w) => w.logicalType());
      const capacity = duckdb.vector_size();
      for (let start = 0; start < n; start += capacity) {
        const end = Math.min(n, start + capacity);
        const chunk = duckdb.create_data_chunk(logicalTypes);
        writers.forEach((w, k) => w.fill(duckdb.data_chunk_get_vector(chunk, k), start, end));
        duckdb.data_chunk_set_size(chunk, end - start);
        appender.appendDataChunk(new DuckDBDataChunk(chunk));
      }
      appender.flushSync();
    } finally {
      appender.closeSync();
    }
    const compression = (options.compression ?? 'snappy') === 'none' ? 'uncompressed' : (options.compression ?? 'snappy');
    const arrowSchema = Buffer.from(arrowSchemaMessage(columns.map((c, i) => new Field(c.name, writers[i]!.arrowType, true)))).toString('base64');
    await connection.run(
      `COPY ${sqlIdent(table)} TO ${sqlString(tmp)} (FORMAT parquet, COMPRESSION ${compression}, ` +
        `ROW_GROUP_SIZE ${Math.floor(rowGroupRows)}, KV_METADATA {'ARROW:schema': ${sqlString(arrowSchema)}})`,
    );
    const fh = await open(tmp, 'r+');
    let bytes: number;
    try {
      await fh.sync();
      bytes = (await fh.stat()).size;
    } finally {
      await fh.close();
    }
    await rename(tmp, filePath);
    await syncDir(path.dirname(filePath));
    return { path: filePath, rows: n, bytes };
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  } finally {
    await connection.run(`DROP TABLE IF EXISTS ${sqlIdent(table)}`).catch(() => undefined);
  }
}

/**
 * The encapsulated IPC schema message (continuation marker, length, flatbuffer) that Arrow
 * writers store base64-encoded under `ARROW:schema`: the first message of an IPC stream.
 */
function arrowSchemaMessage(fields: Field[]): Uint8Array {
  const ipc = tableToIPC(new Table(new Schema(fields)), 'stream');
  const view = new DataView(ipc.buffer, ipc.byteOffset, ipc.byteLength);
  if (view.getUint32(0, true) !== 0xffffffff) throw new InvariantError('unexpected Arrow IPC stream header');
  return ipc.subarray(0, 8 + view.getInt32(4, true));
}

function columnLength(c: ColumnSpec): number {
  if (c.type === 'fixed-list-float32') return c.values.length / (c.listSize ?? Number.NaN);
  if (c.type === 'list-float32' && c.offsets) return c.offsets.length - 1;
  return c.values.length;
}

// ---------------------------------------------------------------------------------------------
// Columns

/** How one column is declared and filled, 2048 rows (one data chunk) at a time. */
interface ColumnWriter {
  readonly sqlType: string;
  readonly arrowType: DataType;
  logicalType(): duckdb.LogicalType;
  /** Fill rows [start, end) of the column into `vector` (rows 0 .. end - start). */
  fill(vector: duckdb.Vector, start: number, end: number): void;
}

const T = duckdb.Type;

function columnWriter(c: ColumnSpec): ColumnWriter {
  const t = c.type;
  if (typeof t === 'object') return metadataWriter(c, t.arrow);
  switch (t) {
    case 'utf8':
      return stringWriter(c, new Utf8());
    case 'bool':
      return boolWriter(c, new Bool());
    case 'int32':
      return numericWriter(c, 'INTEGER', T.INTEGER, new Int32(), Int32Array, Number);
    case 'int64':
      return numericWriter(c, 'BIGINT', T.BIGINT, new Int64(), BigInt64Array, toBigInt);
    case 'float32':
      return numericWriter(c, 'FLOAT', T.FLOAT, new Float32(), Float32Array, Number);
    case 'float64':
      return numericWriter(c, 'DOUBLE', T.DOUBLE, new Float64(), Float64Array, Number);
    case 'fixed-list-float32':
      return fixedListWriter(c);
    case 'list-float32':
      return listWriter(c);
    default:
      throw new InvariantError(`column ${c.name}: unknown column type ${String(t)}`);
  }
}

/** 1 = null, for rows [start, end), from the spec's mask or the null entries of a plain array. */
function nullMask(c: ColumnSpec, start: number, end: number, plain: boolean): Uint8Array | undefined {
  let mask: Uint8Array | undefined;
  for (let i = start; i < end; i++) {
    const isNull = plain ? c.values[i] === null || c.values[i] === undefined : c.nulls?.[i] === 1;
    if (isNull) (mask ??= new Uint8Array(end - start))[i - start] = 1;
  }
  return mask;
}

/** Mark the null rows of `mask` invalid in the vector's validity. */
function writeValidity(vector: duckdb.Vector, mask: Uint8Array | undefined): void {
  if (!mask) return;
  const n = mask.length;
  const words = new Uint8Array(Math.ceil(n / 64) * 8).fill(0xff);
  for (let i = 0; i < n; i++) if (mask[i]) words[i >> 3]! &= ~(1 << (i & 7));
  duckdb.vector_ensure_validity_writable(vector);
  duckdb.copy_data_to_vector_validity(vector, 0, words.buffer, 0, words.byteLength);
}

function copyTyped(vector: duckdb.Vector, data: ArrayBufferView, byteCount: number, byteOffset = 0): void {
  if (byteCount === 0) return;
  duckdb.copy_data_to_vector(vector, 0, data.buffer as ArrayBuffer, data.byteOffset + byteOffset, byteCount);
}

type TypedCtor = Int32ArrayConstructor | BigInt64ArrayConstructor | Float32ArrayConstructor | Float64ArrayConstructor | Int8ArrayConstructor | Int16ArrayConstructor | Uint8ArrayConstructor | Uint16ArrayConstructor | Uint32ArrayConstructor | BigUint64ArrayConstructor;

function numericWriter(
  c: ColumnSpec,
  sqlType: string,
  type: duckdb.Type,
  arrowType: DataType,
  ctor: TypedCtor,
  convert: (v: unknown) => number | bigint,
): ColumnWriter {
  const typed = c.values instanceof ctor;
  return {
    sqlType,
    arrowType,
    logicalType: () => duckdb.create_logical_type(type),
    fill(vector, start, end) {
      const n = end - start;
      if (typed) {
        const v = c.values as unknown as ArrayBufferView & { BYTES_PER_ELEMENT: number };
        copyTyped(vector, v, n * v.BYTES_PER_ELEMENT, start * v.BYTES_PER_ELEMENT);
        writeValidity(vector, nullMask(c, start, end, false));
        return;
      }
      const out = new ctor(n) as unknown as (number | bigint)[] & ArrayBufferView;
      const plainNulls = !ArrayBuffer.isView(c.values);
      for (let i = 0; i < n; i++) {
        const v = c.values[start + i];
        if (v !== null && v !== undefined) out[i] = convert(v);
      }
      copyTyped(vector, out, out.byteLength);
      writeValidity(vector, nullMask(c, start, end, plainNulls));
    },
  };
}

function stringWriter(c: ColumnSpec, arrowType: DataType, toText: (v: unknown) => string = String): ColumnWriter {
  const encoder = new TextEncoder();
  return {
    sqlType: 'VARCHAR',
    arrowType,
    logicalType: () => duckdb.create_logical_type(T.VARCHAR),
    fill(vector, start, end) {
      for (let i = start; i < end; i++) {
        const v = c.values[i];
        if (v === null || v === undefined) continue;
        const s = toText(v);
        // The plain assign takes a C string, which would stop at a NUL.
        if (s.includes('\0')) duckdb.vector_assign_string_element_len(vector, i - start, encoder.encode(s));
        else duckdb.vector_assign_string_element(vector, i - start, s);
      }
      writeValidity(vector, nullMask(c, start, end, true));
    },
  };
}

function boolWriter(c: ColumnSpec, arrowType: DataType): ColumnWriter {
  if (duckdb.sizeof_bool !== 1) throw new InvariantError(`unsupported sizeof(bool) ${duckdb.sizeof_bool}`);
  return {
    sqlType: 'BOOLEAN',
    arrowType,
    logicalType: () => duckdb.create_logical_type(T.BOOLEAN),
    fill(vector, start, end) {
      const n = end - start;
      const out = new Uint8Array(n);
      for (let i = 0; i < n; i++) out[i] = c.values[start + i] ? 1 : 0;
      copyTyped(vector, out, n);
      writeValidity(vector, nullMask(c, start, end, !ArrayBuffer.isView(c.values)));
    },
  };
}

function fixedListWriter(c: ColumnSpec): ColumnWriter {
  const size = c.listSize;
  if (!size || !(c.values instanceof Float32Array)) {
    throw new InvariantError(`column ${c.name}: fixed-list-float32 needs a Float32Array and listSize`);
  }
  const values = c.values;
  return {
    sqlType: `FLOAT[${size}]`,
    // The child as DuckDB writes it (`element`, optional); Arrow readers take the name from the file.
    arrowType: new FixedSizeList(size, new Field('element', new Float32(), true)),
    logicalType: () => duckdb.create_array_type(duckdb.create_logical_type(T.FLOAT), size),
    fill(vector, start, end) {
      const child = duckdb.array_vector_get_child(vector);
      copyTyped(child, values, (end - start) * size * 4, start * size * 4);
      writeValidity(vector, nullMask(c, start, end, false));
    },
  };
}

function listWriter(c: ColumnSpec): ColumnWriter {
  const flat = c.offsets && c.values instanceof Float32Array;
  return {
    sqlType: 'FLOAT[]',
    arrowType: new List(new Field('element', new Float32(), true)),
    logicalType: () => duckdb.create_list_type(duckdb.create_logical_type(T.FLOAT)),
    fill(vector, start, end) {
      const n = end - start;
      // list_entry_t per row: (offset, length) as uint64.
      const entries = new BigUint64Array(2 * n);
      let values: Float32Array;
      let mask: Uint8Array | undefined;
      if (flat) {
        const offsets = c.offsets!;
        const base = offsets[start]!;
        for (let i = 0; i < n; i++) {
          entries[2 * i] = BigInt(offsets[start + i]! - base);
          entries[2 * i + 1] = BigInt(offsets[start + i + 1]! - offsets[start + i]!);
        }
        values = (c.values as Float32Array).subarray(base, offsets[end]!);
        mask = nullMask(c, start, end, false);
      } else {
        let total = 0;
        for (let i = start; i < end; i++) total += (c.values[i] as ArrayLike<number> | null)?.length ?? 0;
        values = new Float32Array(total);
        let at = 0;
        for (let i = 0; i < n; i++) {
          const row = c.values[start + i] as ArrayLike<number> | null | undefined;
          entries[2 * i] = BigInt(at);
          if (row === null || row === undefined) {
            (mask ??= new Uint8Array(n))[i] = 1;
            continue;
          }
          values.set(row, at);
          entries[2 * i + 1] = BigInt(row.length);
          at += row.length;
        }
      }
      duckdb.list_vector_reserve(vector, values.length);
      duckdb.list_vector_set_size(vector, values.length);
      copyTyped(duckdb.list_vector_get_child(vector), values, values.byteLength);
      copyTyped(vector, entries, entries.byteLength);
      writeValidity(vector, mask);
    },
  };
}

/**
 * A metadata column (values as read: int64 as bigint, timestamps and dates as epoch
 * milliseconds) written with the DuckDB type matching its Arrow type.
 */
function metadataWriter(c: ColumnSpec, type: DataType): ColumnWriter {
  const t = DataType.isDictionary(type) ? type.dictionary : type;
  const fail = (): never => {
    throw new InvariantError(`column ${c.name}: Arrow type ${String(t)} is not supported by the DuckDB Parquet writer; use writeParquetFile`);
  };
  if (DataType.isUtf8(t) || DataType.isLargeUtf8(t)) return stringWriter(c, t);
  if (DataType.isBool(t)) return boolWriter(c, t);
  if (DataType.isInt(t)) {
    const w = t.bitWidth;
    const ints: Record<string, [string, duckdb.Type, TypedCtor]> = {
      s8: ['TINYINT', T.TINYINT, Int8Array],
      s16: ['SMALLINT', T.SMALLINT, Int16Array],
      s32: ['INTEGER', T.INTEGER, Int32Array],
      s64: ['BIGINT', T.BIGINT, BigInt64Array],
      u8: ['UTINYINT', T.UTINYINT, Uint8Array],
      u16: ['USMALLINT', T.USMALLINT, Uint16Array],
      u32: ['UINTEGER', T.UINTEGER, Uint32Array],
      u64: ['UBIGINT', T.UBIGINT, BigUint64Array],
    };
    const [sql, dt, ctor] = ints[`${t.isSigned ? 's' : 'u'}${w}`] ?? fail();
    return numericWriter(plain(c), sql, dt, t, ctor, w === 64 ? toBigInt : Number);
  }
  if (DataType.isFloat(t)) {
    if (t.precision === Precision.SINGLE) return numericWriter(plain(c), 'FLOAT', T.FLOAT, t, Float32Array, Number);
    if (t.precision === Precision.DOUBLE) return numericWriter(plain(c), 'DOUBLE', T.DOUBLE, t, Float64Array, Number);
    return fail();
  }
  if (DataType.isDate(t)) {
    // DATE: int32 days, as apache-arrow stores a DateDay from epoch milliseconds.
    return numericWriter(plain(c), 'DATE', T.DATE, t, Int32Array, (v) => Math.floor(Number(v) / 86400000));
  }
  if (DataType.isTimestamp(t)) {
    // int64 in the unit; DuckDB's zone-aware timestamp is microseconds only.
    if (t.timezone) {
      return numericWriter(plain(c), 'TIMESTAMPTZ', T.TIMESTAMP_TZ, t, BigInt64Array, (v) => BigInt(Math.round(Number(v) * 1000)));
    }
    switch (t.unit) {
      case TimeUnit.SECOND:
        return numericWriter(plain(c), 'TIMESTAMP_S', T.TIMESTAMP_S, t, BigInt64Array, (v) => BigInt(Math.trunc(Number(v) / 1000)));
      case TimeUnit.MILLISECOND:
        return numericWriter(plain(c), 'TIMESTAMP_MS', T.TIMESTAMP_MS, t, BigInt64Array, (v) => BigInt(Math.round(Number(v))));
      case TimeUnit.MICROSECOND:
        return numericWriter(plain(c), 'TIMESTAMP', T.TIMESTAMP, t, BigInt64Array, (v) => BigInt(Math.round(Number(v) * 1000)));
      case TimeUnit.NANOSECOND:
        return numericWriter(plain(c), 'TIMESTAMP_NS', T.TIMESTAMP_NS, t, BigInt64Array, (v) => BigInt(Math.round(Number(v) * 1e6)));
    }
  }
  return fail();
}

/** Metadata values are plain arrays (MetadataValue[]); never take them as a typed column. */
function plain(c: ColumnSpec): ColumnSpec {
  return ArrayBuffer.isView(c.values) ? { ...c, values: Array.from(c.values as unknown as ArrayLike<unknown>) } : c;
}

function toBigInt(v: unknown): bigint {
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number') return BigInt(Math.trunc(v));
  return BigInt(String(v));
}
