/**
 * DuckDB Parquet source: the same RawClipBatches as `iterateRawBatches` (src/sources/index.ts),
 * decoded by DuckDB's native, multi-threaded Parquet reader instead of parquet-wasm.
 *
 * Why: parquet-wasm's list decoder is the slow part of reading embeddings (50k × 768 float32:
 * ~2 s); DuckDB decodes the same file in a fraction of that. Rows come from a streaming query
 * (`connection.stream` + `fetchChunk`), so memory stays bounded by DuckDB's result buffer and one
 * output batch, never by the file size. The embedding floats are read straight from the native
 * vectors (`vector_get_data` of the list/array child, a view on DuckDB's memory) and copied once
 * into the batch; DOUBLE embeddings are narrowed to FLOAT by DuckDB in SQL.
 *
 * Files are read by one `read_parquet([...])` query per run of consecutive files with the same
 * column types, so DuckDB scans them in parallel; its `file_index` and `file_row_number` virtual
 * columns split the rows back into per-file batches with exact origins. A file that has a real
 * column of one of those names is read on its own and its rows are counted instead. Row order is
 * the files' order: DuckDB keeps insertion order unless `preserve_insertion_order` is turned off,
 * which a connection passed in must not do.
 *
 * DuckDB reads a Parquet fixed-size list (pyarrow's `fixed_size_list`) as a plain list, so a null
 * row's embedding has no values (offsets equal), where the parquet-wasm source keeps the Arrow
 * layout's `size` placeholder values; both flag the row in `embeddingNull`.
 *
 * Parquet only (no JSONL). Metadata types: string, bool, integers, floats, timestamps and dates
 * (as the parquet-wasm source returns them: int64 as bigint, timestamps and dates as epoch
 * milliseconds). TIME columns are refused: DuckDB does not keep their Parquet unit, so their
 * values could not match the parquet-wasm source's.
 */
import os from 'node:os';
import duckdb from '@duckdb/node-bindings';
import { DuckDBArrayType, DuckDBInstance, DuckDBListType, DuckDBTypeId } from '@duckdb/node-api';
import type { DuckDBConnection, DuckDBDataChunk, DuckDBType } from '@duckdb/node-api';
import { InputError, InvariantError } from '../../shared/errors.js';
import type { IdType, MetadataValue, RawClipBatch } from '../../shared/types.js';
import type { InputFieldOptions, InputSchema } from '../index.js';

/** Rows per emitted batch when the caller does not say (as the parquet-wasm source). */
const DEFAULT_BATCH_ROWS = 8192;
const FILE_INDEX = 'file_index';
const FILE_ROW_NUMBER = 'file_row_number';

export interface DuckDbSourceOptions extends InputFieldOptions {
  /** Rows per emitted batch (default 8192). Batches never span files. */
  readonly batchRows?: number;
  /** Expected embedding dimension (e.g. from centroids); else `schema.dim` or the first row's. */
  readonly dim?: number;
  /**
   * Run the queries on this connection instead of a private in-memory database. It must keep
   * DuckDB's default `preserve_insertion_order = true`, and run nothing else while reading.
   */
  readonly connection?: DuckDBConnection;
  /** Threads of the private database (default: the machine's available parallelism). */
  readonly threads?: number;
  /**
   * Reuse the embedding buffers of batches the consumer handed back (`RawClipBatch.release`)
   * instead of allocating fresh ones per batch (each is batchRows × dim floats).
   */
  readonly reuseValues?: boolean;
}

/**
 * Stream the rows of Parquet `files`, in order, as RawClipBatches of at most `batchRows` rows,
 * each from one file with `origin = { file, firstRow }`. Same contract as `iterateRawBatches`:
 * ids as canonical strings (`idType` from `schema`, else from the files), embeddings as float32
 * values + offsets + null flags (a null inside a vector becomes NaN), metadata as plain arrays.
 * File-level problems (missing or mistyped columns, unreadable files, id types differing across
 * files) are InputErrors naming the file; so is a file whose non-empty embeddings all have a
 * length other than the input's dimension (thrown after its last batch).
 */
export async function* iterateDuckDbRawBatches(
  files: readonly string[],
  options: DuckDbSourceOptions,
  schema?: InputSchema,
): AsyncGenerator<RawClipBatch> {
  if (files.length === 0) throw new InputError('no input files', { context: { field: 'input' } });
  const batchRows = options.batchRows ?? DEFAULT_BATCH_ROWS;
  if (!(batchRows > 0)) throw new InvariantError(`batchRows must be positive, got ${batchRows}`);
  if (os.endianness() !== 'LE') throw new InvariantError('the DuckDB source reads native vectors as little-endian');
  for (const file of files) {
    if (/\.(jsonl|ndjson|json)$/i.test(file)) {
      throw new InputError(`input file ${file}: the DuckDB source reads Parquet only`, { context: { file } });
    }
  }

  let instance: DuckDBInstance | undefined;
  let connection = options.connection;
  if (!connection) {
    instance = await DuckDBInstance.create(':memory:', {
      threads: String(options.threads ?? Math.max(1, os.availableParallelism())),
    });
    connection = await instance.connect();
  }
  try {
    const plans: FilePlan[] = [];
    for (const file of files) plans.push(await planFile(connection, file, options));
    const idType = schema?.idType ?? plans[0]!.idType;
    for (const p of plans) {
      if (p.idType !== idType) {
        const from = schema ? 'the input schema has' : `${plans[0]!.file} has`;
        throw new InputError(`input file ${p.file} has ${p.idType} ids but ${from} ${idType} ids; all files must agree`, {
          context: { file: p.file, field: options.idField },
        });
      }
    }

    const dimCheck = new DimensionCheck(options.dim ?? schema?.dim, options.embeddingField, files);
    const pool = options.reuseValues ? new BufferPool() : undefined;
    for (const group of groupPlans(plans)) {
      for await (const batch of readGroup(connection, group, options, idType, batchRows, dimCheck, pool)) yield batch;
    }
    dimCheck.finishUpTo(files.length);
  } finally {
    if (instance) {
      connection.closeSync();
      instance.closeSync();
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Per-file plans

type ScalarDecoder = 'varchar' | 'bool' | 'int32' | 'bigint' | 'ubigint' | 'float' | 'double' | 'epoch-us' | 'epoch-ns' | 'date';

interface ColumnPlan {
  /** SQL expression selecting the column, with the cast DuckDB does for us. */
  readonly sql: string;
  readonly decoder: ScalarDecoder;
  /** The DuckDB type as read, to group files that can share one query. */
  readonly typeKey: string;
}

interface EmbeddingPlan {
  readonly sql: string;
  /** `list`: FLOAT[] (variable length); `array`: FLOAT[size]. */
  readonly kind: 'list' | 'array';
  readonly size?: number;
  readonly typeKey: string;
}

interface FilePlan {
  readonly file: string;
  readonly idType: IdType;
  readonly id: ColumnPlan;
  readonly embedding: EmbeddingPlan;
  readonly metadata: readonly ColumnPlan[];
  /** False when the file has a real column named `file_index` or `file_row_number`. */
  readonly virtualColumns: boolean;
}

const sqlIdent = (s: string): string => `"${s.replace(/"/g, '""')}"`;
const sqlString = (s: string): string => `'${s.replace(/'/g, "''")}'`;

async function planFile(connection: DuckDBConnection, file: string, fields: InputFieldOptions): Promise<FilePlan> {
  let names: string[];
  let types: DuckDBType[];
  try {
    // Binding reads the footer only.
    const result = await connection.run(`SELECT * FROM read_parquet(${sqlString(file)}) LIMIT 0`);
    names = result.columnNames();
    types = result.columnTypes();
  } catch (cause) {
    throw new InputError(`input file ${file} is not a readable Parquet file (${errorText(cause)})`, { cause, context: { file } });
  }
  const byName = new Map(names.map((n, i) => [n, types[i]!] as const));
  const need = (name: string, role: string): DuckDBType => {
    const t = byName.get(name);
    if (!t) {
      throw new InputError(`input file ${file} has no ${role} column "${name}" (columns: ${names.join(', ')})`, {
        context: { file, field: name },
      });
    }
    return t;
  };

  const idT = need(fields.idField, 'id');
  const idCol = sqlIdent(fields.idField);
  let idType: IdType;
  let id: ColumnPlan;
  if (idT.typeId === DuckDBTypeId.VARCHAR) {
    idType = 'string';
    id = { sql: idCol, decoder: 'varchar', typeKey: String(idT) };
  } else if (SMALL_INTS.has(idT.typeId) || idT.typeId === DuckDBTypeId.BIGINT) {
    idType = 'int64';
    id = { sql: `CAST(${idCol} AS BIGINT)`, decoder: 'bigint', typeKey: String(idT) };
  } else if (idT.typeId === DuckDBTypeId.UBIGINT || idT.typeId === DuckDBTypeId.HUGEINT || idT.typeId === DuckDBTypeId.UHUGEINT) {
    // Beyond int64: DuckDB writes the decimal string.
    idType = 'int64';
    id = { sql: `CAST(${idCol} AS VARCHAR)`, decoder: 'varchar', typeKey: String(idT) };
  } else {
    throw new InputError(`input file ${file}: id column "${fields.idField}" has type ${String(idT)}; expected a string or integer`, {
      context: { file, field: fields.idField },
    });
  }

  const embT = need(fields.embeddingField, 'embedding');
  const embCol = sqlIdent(fields.embeddingField);
  let embedding: EmbeddingPlan | undefined;
  if (embT instanceof DuckDBListType || embT instanceof DuckDBArrayType) {
    const child = embT.valueType.typeId;
    if (child === DuckDBTypeId.FLOAT || child === DuckDBTypeId.DOUBLE) {
      const narrow = child === DuckDBTypeId.DOUBLE;
      if (embT instanceof DuckDBArrayType) {
        const size = embT.length;
        embedding = { sql: narrow ? `CAST(${embCol} AS FLOAT[${size}])` : embCol, kind: 'array', size, typeKey: String(embT) };
      } else {
        embedding = { sql: narrow ? `CAST(${embCol} AS FLOAT[])` : embCol, kind: 'list', typeKey: String(embT) };
      }
    }
  }
  if (!embedding) {
    throw new InputError(
      `input file ${file}: embedding column "${fields.embeddingField}" has type ${String(embT)}; ` +
        'expected a list, large list or fixed-size list of float32 or float64',
      { context: { file, field: fields.embeddingField } },
    );
  }

  const metadata = fields.metadataFields.map((name) => metadataPlan(file, name, need(name, 'metadata')));
  return {
    file,
    idType,
    id,
    embedding,
    metadata,
    virtualColumns: !byName.has(FILE_INDEX) && !byName.has(FILE_ROW_NUMBER),
  };
}

const SMALL_INTS = new Set<DuckDBTypeId>([
  DuckDBTypeId.TINYINT,
  DuckDBTypeId.SMALLINT,
  DuckDBTypeId.INTEGER,
  DuckDBTypeId.UTINYINT,
  DuckDBTypeId.USMALLINT,
  DuckDBTypeId.UINTEGER,
]);

function metadataPlan(file: string, name: string, t: DuckDBType): ColumnPlan {
  const col = sqlIdent(name);
  const typeKey = String(t);
  switch (t.typeId) {
    case DuckDBTypeId.VARCHAR:
      return { sql: col, decoder: 'varchar', typeKey };
    case DuckDBTypeId.BOOLEAN:
      return { sql: col, decoder: 'bool', typeKey };
    case DuckDBTypeId.TINYINT:
    case DuckDBTypeId.SMALLINT:
    case DuckDBTypeId.INTEGER:
    case DuckDBTypeId.UTINYINT:
    case DuckDBTypeId.USMALLINT:
      return { sql: `CAST(${col} AS INTEGER)`, decoder: 'int32', typeKey };
    case DuckDBTypeId.UINTEGER:
      // A number, as apache-arrow returns uint32; DOUBLE holds every uint32 exactly.
      return { sql: `CAST(${col} AS DOUBLE)`, decoder: 'double', typeKey };
    case DuckDBTypeId.BIGINT:
      return { sql: col, decoder: 'bigint', typeKey };
    case DuckDBTypeId.UBIGINT:
      return { sql: col, decoder: 'ubigint', typeKey };
    case DuckDBTypeId.FLOAT:
      return { sql: col, decoder: 'float', typeKey };
    case DuckDBTypeId.DOUBLE:
      return { sql: col, decoder: 'double', typeKey };
    case DuckDBTypeId.TIMESTAMP:
    case DuckDBTypeId.TIMESTAMP_S:
    case DuckDBTypeId.TIMESTAMP_MS:
    case DuckDBTypeId.TIMESTAMP_TZ:
      return { sql: `epoch_us(${col})`, decoder: 'epoch-us', typeKey };
    case DuckDBTypeId.TIMESTAMP_NS:
      return { sql: `epoch_ns(${col})`, decoder: 'epoch-ns', typeKey };
    case DuckDBTypeId.DATE:
      return { sql: col, decoder: 'date', typeKey };
    default:
      throw new InputError(
        `input file ${file}: metadata column "${name}" has type ${typeKey}; ` +
          'supported by the DuckDB source: string, integer, float, bool, timestamp, date',
        { context: { file, field: name } },
      );
  }
}

function planKey(p: FilePlan): string {
  return [p.id.typeKey, p.embedding.typeKey, ...p.metadata.map((m) => m.typeKey)].join('\u0000');
}

/** Runs of consecutive files one query can read: same column types, virtual columns usable. */
interface PlanGroup {
  readonly plans: readonly FilePlan[];
  /** Index of plans[0] among all files. */
  readonly firstIndex: number;
}

function groupPlans(plans: readonly FilePlan[]): PlanGroup[] {
  const groups: PlanGroup[] = [];
  let start = 0;
  for (let i = 1; i <= plans.length; i++) {
    const prev = plans[i - 1]!;
    const cur = plans[i];
    if (cur && prev.virtualColumns && cur.virtualColumns && planKey(prev) === planKey(cur)) continue;
    groups.push({ plans: plans.slice(start, i), firstIndex: start });
    start = i;
  }
  return groups;
}

// ---------------------------------------------------------------------------------------------
// Reading

async function* readGroup(
  connection: DuckDBConnection,
  group: PlanGroup,
  fields: InputFieldOptions,
  idType: IdType,
  batchRows: number,
  dimCheck: DimensionCheck,
  pool: BufferPool | undefined,
): AsyncGenerator<RawClipBatch> {
  const plan = group.plans[0]!;
  const virtual = plan.virtualColumns;
  const selects = [plan.id.sql, plan.embedding.sql, ...plan.metadata.map((m) => m.sql)];
  if (virtual) selects.push(FILE_INDEX, FILE_ROW_NUMBER);
  const fileList = `[${group.plans.map((p) => sqlString(p.file)).join(', ')}]`;
  const sql = `SELECT ${selects.join(', ')} FROM read_parquet(${fileList})`;
  const fileIndexCol = 2 + plan.metadata.length;
  const describe = (localIndex: number): string => group.plans[localIndex]?.file ?? group.plans[0]!.file;

  let builder: BatchBuilder | undefined;
  let localFile = 0;
  let nextRow = 0;
  const startBuilder = (firstRow: number): BatchBuilder =>
    new BatchBuilder(group.plans[localFile]!.file, firstRow, idType, plan, fields, batchRows, dimCheck.dimHint, pool);
  const finish = (): RawClipBatch | undefined => {
    const b = builder;
    builder = undefined;
    if (!b || b.rows === 0) return undefined;
    const batch = b.build();
    dimCheck.count(group.firstIndex + localFile, batch);
    return batch;
  };

  let result;
  try {
    result = await connection.stream(sql);
  } catch (cause) {
    throw new InputError(`input file ${describe(0)}: DuckDB cannot read it (${errorText(cause)})`, {
      cause,
      context: { file: describe(0) },
    });
  }
  for (;;) {
    let chunk: DuckDBDataChunk | null;
    try {
      chunk = await result.fetchChunk();
    } catch (cause) {
      const file = describe(localFile);
      throw new InputError(`input file ${file} is corrupt near row ${nextRow} (${errorText(cause)})`, {
        cause,
        context: { file, row: nextRow },
      });
    }
    if (!chunk || chunk.rowCount === 0) break;
    const n = chunk.rowCount;
    const raw = chunk.chunk;
    const fileIdx = virtual ? lowWords(duckdb.data_chunk_get_vector(raw, fileIndexCol), n) : undefined;
    const rowNum = virtual ? uint64Numbers(duckdb.data_chunk_get_vector(raw, fileIndexCol + 1), n) : undefined;
    const vectors = new ChunkVectors(raw, n, plan);
    let a = 0;
    while (a < n) {
      const f = fileIdx ? fileIdx[2 * a]! : localFile;
      const row = rowNum ? rowNum[a]! : nextRow;
      if (f !== localFile || row !== nextRow || (builder && builder.rows >= batchRows)) {
        const done = finish();
        if (done) yield done;
        if (f !== localFile) {
          if (f < localFile || f >= group.plans.length) {
            throw new InvariantError(`DuckDB returned rows of file index ${f} after file index ${localFile} (insertion order not preserved?)`);
          }
          dimCheck.finishUpTo(group.firstIndex + f);
          localFile = f;
        }
      }
      builder ??= startBuilder(row);
      // The run of rows [a, b) in this file with consecutive row numbers that still fits the batch.
      let b = a + 1;
      const limit = Math.min(n, a + (batchRows - builder.rows));
      while (b < limit && (!fileIdx || fileIdx[2 * b] === f) && (!rowNum || rowNum[b] === row + (b - a))) b++;
      builder.append(vectors, a, b);
      nextRow = row + (b - a);
      a = b;
    }
  }
  const done = finish();
  if (done) yield done;
  dimCheck.finishUpTo(group.firstIndex + group.plans.length);
}

/** The chunk's vectors with their native data, looked up once per chunk. */
class ChunkVectors {
  readonly id: ScalarColumn;
  readonly embedding: EmbeddingColumn;
  readonly metadata: ScalarColumn[];

  constructor(raw: duckdb.DataChunk, n: number, plan: FilePlan) {
    this.id = scalarColumn(duckdb.data_chunk_get_vector(raw, 0), n, plan.id.decoder);
    this.embedding = embeddingColumn(duckdb.data_chunk_get_vector(raw, 1), n, plan.embedding);
    this.metadata = plan.metadata.map((m, i) => scalarColumn(duckdb.data_chunk_get_vector(raw, 2 + i), n, m.decoder));
  }
}

interface ScalarColumn {
  readonly vector: duckdb.Vector;
  readonly decoder: ScalarDecoder;
  readonly data: Uint8Array;
  readonly validity: Uint8Array | null;
}

const BYTES: Record<ScalarDecoder, number> = {
  varchar: 16,
  bool: 1,
  int32: 4,
  bigint: 8,
  ubigint: 8,
  float: 4,
  double: 8,
  'epoch-us': 8,
  'epoch-ns': 8,
  date: 4,
};

function scalarColumn(vector: duckdb.Vector, n: number, decoder: ScalarDecoder): ScalarColumn {
  if (decoder === 'bool' && duckdb.sizeof_bool !== 1) throw new InvariantError(`unsupported sizeof(bool) ${duckdb.sizeof_bool}`);
  return { vector, decoder, data: duckdb.vector_get_data(vector, n * BYTES[decoder]), validity: validityOf(vector, n) };
}

/** DuckDB's validity mask as bytes (bit i of the little-endian uint64 words = row i), or null when all valid. */
function validityOf(vector: duckdb.Vector, n: number): Uint8Array | null {
  if (n === 0) return null;
  return (duckdb.vector_get_validity(vector, Math.ceil(n / 64) * 8) as Uint8Array | null | undefined) ?? null;
}

const isValid = (validity: Uint8Array | null, i: number): boolean => !validity || ((validity[i >> 3]! >> (i & 7)) & 1) === 1;

/** A typed view on native bytes; copies when the bytes are not aligned for it. */
function typedView<T extends Float32Array | Float64Array | Int32Array | Uint32Array | BigInt64Array | BigUint64Array>(
  ctor: { new (buffer: ArrayBufferLike, byteOffset: number, length: number): T; readonly BYTES_PER_ELEMENT: number },
  bytes: Uint8Array,
): T {
  const size = ctor.BYTES_PER_ELEMENT;
  const length = Math.floor(bytes.byteLength / size);
  if (bytes.byteOffset % size === 0) return new ctor(bytes.buffer, bytes.byteOffset, length);
  return new ctor(bytes.slice().buffer, 0, length);
}

/** The low and high 32-bit words of a UBIGINT/BIGINT vector (index 2i = low word of row i). */
function lowWords(vector: duckdb.Vector, n: number): Uint32Array {
  return typedView(Uint32Array, duckdb.vector_get_data(vector, n * 8));
}

function uint64Numbers(vector: duckdb.Vector, n: number): Float64Array {
  const w = lowWords(vector, n);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = w[2 * i]! + w[2 * i + 1]! * 4294967296;
  return out;
}

const textDecoder = new TextDecoder();

/** UTF-8 to string; short ASCII (most clip ids) without TextDecoder's per-call overhead. */
function utf8(bytes: Uint8Array): string {
  const len = bytes.length;
  if (len <= 48) {
    let ascii = true;
    for (let k = 0; k < len; k++) {
      if (bytes[k]! >= 0x80) {
        ascii = false;
        break;
      }
    }
    if (ascii) return String.fromCharCode.apply(null, bytes as unknown as number[]);
  }
  return textDecoder.decode(bytes);
}

/** Rows [start, end) of a scalar column, appended to `out` as MetadataValues (ids: strings). */
function decodeScalars(col: ScalarColumn, start: number, end: number, out: MetadataValue[], asIdString: boolean): void {
  const { data, validity } = col;
  switch (col.decoder) {
    case 'varchar': {
      const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
      for (let i = start; i < end; i++) {
        if (!isValid(validity, i)) {
          out.push(null);
          continue;
        }
        const at = i * 16;
        const len = dv.getUint32(at, true);
        // duckdb_string_t: up to 12 bytes inline after the length, else a prefix and a pointer.
        const bytes = len <= 12 ? data.subarray(at + 4, at + 4 + len) : duckdb.get_data_from_pointer(data.buffer as ArrayBuffer, data.byteOffset + at + 8, len);
        out.push(utf8(bytes));
      }
      return;
    }
    case 'bool':
      for (let i = start; i < end; i++) out.push(isValid(validity, i) ? data[i] !== 0 : null);
      return;
    case 'int32': {
      const v = typedView(Int32Array, data);
      for (let i = start; i < end; i++) out.push(isValid(validity, i) ? v[i]! : null);
      return;
    }
    case 'date': {
      const v = typedView(Int32Array, data);
      for (let i = start; i < end; i++) out.push(isValid(validity, i) ? 86400000 * v[i]! : null);
      return;
    }
    case 'bigint': {
      const v = typedView(BigInt64Array, data);
      for (let i = start; i < end; i++) out.push(isValid(validity, i) ? (asIdString ? String(v[i]!) : v[i]!) : null);
      return;
    }
    case 'ubigint': {
      const v = typedView(BigUint64Array, data);
      for (let i = start; i < end; i++) out.push(isValid(validity, i) ? v[i]! : null);
      return;
    }
    case 'float': {
      const v = typedView(Float32Array, data);
      for (let i = start; i < end; i++) out.push(isValid(validity, i) ? v[i]! : null);
      return;
    }
    case 'double': {
      const v = typedView(Float64Array, data);
      for (let i = start; i < end; i++) out.push(isValid(validity, i) ? v[i]! : null);
      return;
    }
    case 'epoch-us':
    case 'epoch-ns': {
      // As apache-arrow's timestamp getter: whole milliseconds plus the fraction.
      const div = col.decoder === 'epoch-us' ? 1000n : 1000000n;
      const v = typedView(BigInt64Array, data);
      for (let i = start; i < end; i++) out.push(isValid(validity, i) ? Number(v[i]! / div) + Number(v[i]! % div) / Number(div) : null);
      return;
    }
  }
}

interface EmbeddingColumn {
  readonly kind: 'list' | 'array';
  readonly size: number;
  /** Parent validity (null rows). */
  readonly validity: Uint8Array | null;
  /** list: (offset, length) uint64 pairs as 32-bit words [offLo, offHi, lenLo, lenHi] per row. */
  readonly entries?: Uint32Array;
  /** All child floats of the chunk (a view on DuckDB's memory). */
  readonly child: Float32Array;
  readonly childValidity: Uint8Array | null;
}

function embeddingColumn(vector: duckdb.Vector, n: number, plan: EmbeddingPlan): EmbeddingColumn {
  const validity = validityOf(vector, n);
  if (plan.kind === 'array') {
    const size = plan.size!;
    const child = duckdb.array_vector_get_child(vector);
    const count = n * size;
    const floats = count === 0 ? new Float32Array(0) : typedView(Float32Array, duckdb.vector_get_data(child, count * 4));
    return { kind: 'array', size, validity, child: floats, childValidity: validityOf(child, count) };
  }
  const entries = typedView(Uint32Array, duckdb.vector_get_data(vector, n * 16));
  const childSize = duckdb.list_vector_get_size(vector);
  const child = duckdb.list_vector_get_child(vector);
  const floats = childSize === 0 ? new Float32Array(0) : typedView(Float32Array, duckdb.vector_get_data(child, childSize * 4));
  return { kind: 'list', size: 0, validity, entries, child: floats, childValidity: validityOf(child, childSize) };
}

/** Float32 buffers handed back by the consumer, for later batches (largest first). */
class BufferPool {
  readonly #free: Float32Array[] = [];

  /** A buffer of at least `length` floats (contents arbitrary): a free one, else a fresh one. */
  take(length: number): Float32Array {
    const i = this.#free.findIndex((b) => b.length >= length);
    if (i >= 0) return this.#free.splice(i, 1)[0]!;
    return new Float32Array(length);
  }

  give(buffer: Float32Array): void {
    // A few are enough: the reader runs at most a couple of batches ahead of the consumer.
    if (this.#free.length < 4) this.#free.push(buffer);
  }
}

/** Accumulates up to `capacity` rows of one file into the arrays of one RawClipBatch. */
class BatchBuilder {
  rows = 0;
  readonly #file: string;
  readonly #firstRow: number;
  readonly #idType: IdType;
  readonly #fields: InputFieldOptions;
  readonly #ids: (string | null)[] = [];
  readonly #offsets: Int32Array;
  readonly #embeddingNull: Uint8Array;
  readonly #metadata: MetadataValue[][];
  #values: Float32Array;
  #used = 0;
  readonly #pool: BufferPool | undefined;

  constructor(
    file: string,
    firstRow: number,
    idType: IdType,
    plan: FilePlan,
    fields: InputFieldOptions,
    capacity: number,
    dimHint: number | undefined,
    pool: BufferPool | undefined,
  ) {
    this.#file = file;
    this.#firstRow = firstRow;
    this.#idType = idType;
    this.#fields = fields;
    this.#offsets = new Int32Array(capacity + 1);
    this.#embeddingNull = new Uint8Array(capacity);
    this.#metadata = plan.metadata.map(() => []);
    const perRow = plan.embedding.size ?? dimHint ?? 256;
    this.#pool = pool;
    this.#values = pool ? pool.take(capacity * perRow) : new Float32Array(capacity * perRow);
  }

  #reserve(extra: number): void {
    const need = this.#used + extra;
    if (need <= this.#values.length) return;
    const grown = new Float32Array(Math.max(need, this.#values.length * 2));
    grown.set(this.#values.subarray(0, this.#used));
    this.#pool?.give(this.#values);
    this.#values = grown;
  }

  append(v: ChunkVectors, start: number, end: number): void {
    decodeScalars(v.id, start, end, this.#ids as MetadataValue[], true);
    v.metadata.forEach((m, k) => decodeScalars(m, start, end, this.#metadata[k]!, false));
    const e = v.embedding;
    let row = this.rows;
    if (e.kind === 'array') {
      // Fixed size: every row (null ones too, as in Arrow's layout) holds `size` values.
      const count = (end - start) * e.size;
      this.#reserve(count);
      this.#copyFloats(e, start * e.size, count);
      for (let i = start; i < end; i++, row++) {
        this.#embeddingNull[row] = isValid(e.validity, i) ? 0 : 1;
        this.#offsets[row + 1] = this.#offsets[row]! + e.size;
      }
    } else {
      const w = e.entries!;
      // One copy when the rows' values are contiguous in the child (the usual layout).
      let contiguous = true;
      let total = 0;
      let expect = w[4 * start]!;
      for (let i = start; i < end; i++) {
        const valid = isValid(e.validity, i);
        const len = valid ? w[4 * i + 2]! : 0;
        if (valid && (w[4 * i]! !== expect || w[4 * i + 1]! !== 0 || w[4 * i + 3]! !== 0)) contiguous = false;
        expect += len;
        total += len;
      }
      this.#reserve(total);
      if (contiguous) this.#copyFloats(e, w[4 * start]!, total);
      for (let i = start; i < end; i++, row++) {
        const valid = isValid(e.validity, i);
        const len = valid ? w[4 * i + 2]! : 0;
        if (!contiguous && len > 0) this.#copyFloats(e, w[4 * i]!, len);
        this.#embeddingNull[row] = valid ? 0 : 1;
        this.#offsets[row + 1] = this.#offsets[row]! + len;
      }
    }
    this.rows = row;
  }

  /** Copy child floats [from, from + count) to the end of the values; nulls inside become NaN. */
  #copyFloats(e: EmbeddingColumn, from: number, count: number): void {
    if (count === 0) return;
    const at = this.#used;
    this.#values.set(e.child.subarray(from, from + count), at);
    const cv = e.childValidity;
    if (cv) {
      for (let k = 0; k < count; k++) if (!isValid(cv, from + k)) this.#values[at + k] = Number.NaN;
    }
    this.#used += count;
  }

  build(): RawClipBatch {
    const n = this.rows;
    // Trim the values when the guess for their size was well off, so a batch holds no dead space.
    // Pooled buffers go back whole on release, so no dead space outlives the batch.
    const pool = this.#pool;
    const trim = !pool && this.#used < this.#values.length * 0.75;
    const values = trim ? this.#values.slice(0, this.#used) : this.#values.subarray(0, this.#used);
    const buffer = this.#values;
    let released = false;
    const metadata: Record<string, MetadataValue[]> = {};
    this.#fields.metadataFields.forEach((name, k) => (metadata[name] = this.#metadata[k]!));
    return {
      ids: this.#ids,
      idType: this.#idType,
      values,
      offsets: this.#offsets.length === n + 1 ? this.#offsets : this.#offsets.slice(0, n + 1),
      embeddingNull: this.#embeddingNull.length === n ? this.#embeddingNull : this.#embeddingNull.slice(0, n),
      metadata,
      origin: { file: this.#file, firstRow: this.#firstRow },
      ...(pool
        ? {
            release: () => {
              if (!released) pool.give(buffer);
              released = true;
            },
          }
        : {}),
    };
  }
}

/**
 * As `iterateRawBatches`: the first non-empty embedding fixes the dimension (unless given), and a
 * file whose non-empty embeddings all have another length is refused once it has been read.
 */
class DimensionCheck {
  #dim: number | undefined;
  readonly #field: string;
  readonly #files: readonly string[];
  readonly #perFile = new Map<number, { nonEmpty: number; matching: number; otherLength: number }>();
  #checkedUpTo = 0;

  constructor(dim: number | undefined, field: string, files: readonly string[]) {
    this.#dim = dim;
    this.#field = field;
    this.#files = files;
  }

  get dimHint(): number | undefined {
    return this.#dim;
  }

  count(fileIndex: number, batch: RawClipBatch): void {
    let s = this.#perFile.get(fileIndex);
    if (!s) this.#perFile.set(fileIndex, (s = { nonEmpty: 0, matching: 0, otherLength: 0 }));
    const { offsets, embeddingNull } = batch;
    for (let i = 0; i < embeddingNull.length; i++) {
      const len = offsets[i + 1]! - offsets[i]!;
      if (embeddingNull[i] || len === 0) continue;
      this.#dim ??= len;
      s.nonEmpty++;
      if (len === this.#dim) s.matching++;
      else s.otherLength = len;
    }
  }

  /** Check every file before `fileIndex` (all of them are read). */
  finishUpTo(fileIndex: number): void {
    for (; this.#checkedUpTo < fileIndex; this.#checkedUpTo++) {
      const s = this.#perFile.get(this.#checkedUpTo);
      this.#perFile.delete(this.#checkedUpTo);
      if (!s || s.nonEmpty === 0 || s.matching > 0) continue;
      const file = this.#files[this.#checkedUpTo]!;
      throw new InputError(
        `input file ${file}: all ${s.nonEmpty} non-empty embeddings have a length other than the input's dimension ${this.#dim} (e.g. ${s.otherLength})`,
        { context: { file, field: this.#field } },
      );
    }
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
