/**
 * File sources (Parquet and JSONL): resolve input paths, check the input's schema across all
 * files before anything is emitted, and stream RawClipBatches with backpressure.
 *
 * File-level problems (missing or mistyped columns, corrupt files, types or embedding dimensions
 * differing across files, empty input) are thrown as `InputError`s naming the file; row-level
 * problems (null ids, odd embedding lengths, undecodable JSONL lines) travel with the rows, for
 * validation to refuse one by one.
 */
import path from 'node:path';
import { Observable } from 'rxjs';
import type { DuckDBConnection } from '@duckdb/node-api';
import { DataType, Float64, tableFromIPC, type Schema } from 'apache-arrow';
import { InputError } from '../shared/errors.js';
import { isRemotePath, storageFor, type StorageOptions } from '../storage/index.js';
import { compareStrings, hasGlob } from '../storage/glob.js';
import type { IdType, InputSchemaInfo, RawClipBatch } from '../shared/types.js';
import { checkInputColumns, inspectParquetFile, iterateParquetFile } from './parquet/index.js';
import { inspectJsonlFile, iterateJsonlFile } from './jsonl/index.js';
import { iterateDuckDbRawBatches } from './duckdb/index.js';

export {
  rawClipBatchFromArrow,
  decodeEmbeddings,
  metadataValues,
  idTypeOfArrow,
  metadataTypeOfArrow,
} from './parquet/index.js';

/** Which columns (Parquet) or fields (JSONL) hold the id, the embedding and the metadata. */
export interface InputFieldOptions {
  readonly idField: string;
  readonly embeddingField: string;
  readonly metadataFields: readonly string[];
  /** How to reach `s3://` inputs (endpoint, region, keys); unset: the AWS env/config chain. */
  readonly storage?: StorageOptions;
}

/** What `readInputSchema` learns about the whole input. */
export interface InputSchema extends InputSchemaInfo {
  /** Embedding dimension: the first non-empty row's length (or `options.dim`); absent if no row has one. */
  readonly dim?: number;
  /** Total rows, when every file is Parquet (footer counts); absent when JSONL is involved. */
  readonly rows?: number;
}

export interface ReadInputSchemaOptions extends InputFieldOptions {
  /** Expected dimension (e.g. from centroids); replaces the one found in the data. */
  readonly dim?: number;
}

export interface ReadRawBatchesOptions extends ReadInputSchemaOptions {
  /** Rows per emitted batch (default 8192). Parquet batches never span row groups. */
  readonly batchRows?: number;
  /** The result of `readInputSchema` on the same files, to skip checking them again. */
  readonly schema?: InputSchema;
  /**
   * Pull signal for asynchronous consumers: when given, the reader emits `initialDemand`
   * batches (default 1) and then one more per notification. Without it the reader waits only
   * for each `next()` to return, which paces synchronous consumers but not async ones
   * (`concatMap(async ...)` queues). See `readRawBatches`.
   */
  readonly demand?: Observable<unknown>;
  readonly initialDemand?: number;
  /**
   * Parquet decoder: `duckdb` (native, multi-threaded; measured ~1.5× faster on embeddings, see
   * docs/BENCHMARKS.md) or `parquet-wasm`. JSONL inputs always use the JSONL reader; `s3://`
   * Parquet inputs always use parquet-wasm.
   */
  readonly reader?: 'duckdb' | 'parquet-wasm';
  /**
   * Let the DuckDB reader reuse the embedding buffers of batches the consumer `release`d
   * (`RawClipBatch.release`) instead of allocating fresh ones. Other readers ignore it.
   */
  readonly reuseValues?: boolean;
  /**
   * DuckDB reader: run its queries on this connection instead of a private in-memory database
   * (saves opening and closing one). Same conditions as `DuckDbSourceOptions.connection`.
   */
  readonly connection?: DuckDBConnection;
}

/** Per-file facts gathered before reading (internal to sources; exported for the format modules). */
export interface FileInspection {
  readonly file: string;
  readonly format: InputFormat;
  readonly idType: IdType;
  /** False when a JSONL sample held no non-null id, so the id type is unknown. */
  readonly idTypeKnown?: boolean;
  readonly metadataTypes: Readonly<Record<string, DataType>>;
  /** True when the types were inferred from JSON values (int64 may widen to float64). */
  readonly inferredTypes: boolean;
  readonly rows?: number;
  readonly hasRows: boolean;
  /** Fixed-size-list embedding size, when the column has one. */
  readonly fixedSize?: number;
  /** Lengths of the first non-null, non-empty embeddings (a sample). */
  readonly sampleLengths: readonly number[];
}

export type InputFormat = 'parquet' | 'jsonl';

const JSONL_EXTENSIONS = ['.jsonl', '.ndjson', '.json'];
const FOLDER_EXTENSIONS = ['.parquet', '.jsonl', '.ndjson'];

/** `jsonl` for .jsonl/.ndjson/.json files, else `parquet` (checked by its magic when opened). */
export function inputFormatOf(file: string): InputFormat {
  return JSONL_EXTENSIONS.includes(path.extname(file).toLowerCase()) ? 'jsonl' : 'parquet';
}

// ---------------------------------------------------------------------------------------------
// Input paths

/**
 * Expand input paths into a list of files, in argument order, each folder or glob sorted,
 * without duplicates. A path may be a file (any extension), a folder (searched recursively for
 * *.parquet, *.jsonl, *.ndjson) or a glob with `*`, `?`, `**` and `[...]`. Entries whose
 * name starts with `.` or `_` (`_SUCCESS`, `.crc`, `_temporary/`) are skipped in folders and
 * globs, as Spark and pyarrow datasets do. Paths may be local or `s3://bucket/key` (an object,
 * a prefix read as a folder, or a glob over keys); `storage` says how to reach S3.
 */
export async function resolveInputFiles(paths: readonly string[], storage?: StorageOptions): Promise<string[]> {
  if (paths.length === 0) throw new InputError('no input files: no input path given', { context: { field: 'input' } });
  const out: string[] = [];
  const seen = new Set<string>();
  const add = (f: string): void => {
    const key = isRemotePath(f) ? f : path.resolve(f);
    if (!seen.has(key)) {
      seen.add(key);
      out.push(f);
    }
  };
  for (const p of paths) {
    const store = storageFor(p, storage);
    if (hasGlob(p)) {
      const matches = await store.list(p);
      if (matches.length === 0) throw new InputError(`no input files match ${p}`, { context: { file: p } });
      matches.forEach((m) => add(m.path));
      continue;
    }
    const st = await store.stat(p);
    if (!st) throw new InputError(`input path ${p} does not exist`, { context: { file: p } });
    if (st.kind === 'file') add(p);
    else {
      const files = (await store.list(p)).map((m) => m.path).filter((f) => FOLDER_EXTENSIONS.includes(path.extname(f).toLowerCase()));
      if (files.length === 0) {
        throw new InputError(`no input files (${FOLDER_EXTENSIONS.join(', ')}) in folder ${p}`, { context: { file: p } });
      }
      files.sort(compareStrings).forEach(add);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Schema

function typeKey(t: DataType): string {
  return DataType.isLargeUtf8(t) ? 'Utf8' : String(t);
}

async function inspectFile(file: string, fields: InputFieldOptions): Promise<FileInspection> {
  return inputFormatOf(file) === 'jsonl' ? inspectJsonlFile(file, fields) : inspectParquetFile(file, fields);
}

/**
 * Check every file's columns and types (Parquet: footer plus the first rows of the embedding
 * column; JSONL: the first records) and agree on one id type, one set of metadata types and one
 * embedding dimension. Throws an InputError naming the file for any file-level problem.
 */
export async function readInputSchema(files: readonly string[], options: ReadInputSchemaOptions): Promise<InputSchema> {
  if (files.length === 0) throw new InputError('no input files', { context: { field: 'input' } });
  const inspections: FileInspection[] = [];
  for (const file of files) inspections.push(await inspectFile(file, options));

  // Id type: fixed by the first file that shows one.
  const idFrom = inspections.find((f) => f.idTypeKnown !== false) ?? inspections[0]!;
  for (const f of inspections) {
    if (f.idTypeKnown === false || f.idType === idFrom.idType) continue;
    throw new InputError(
      `input file ${f.file} has ${f.idType} ids but ${idFrom.file} has ${idFrom.idType} ids; all files must agree`,
      { context: { file: f.file, field: options.idField } },
    );
  }

  // Metadata types: fixed by the first file; JSON-inferred int64 widens to float64.
  const metadataTypes: Record<string, DataType> = {};
  for (const name of options.metadataFields) {
    let chosen = inspections[0]!.metadataTypes[name]!;
    let chosenFrom = inspections[0]!;
    for (const f of inspections.slice(1)) {
      const t = f.metadataTypes[name]!;
      if (typeKey(t) === typeKey(chosen)) continue;
      const numeric = (x: DataType): boolean => DataType.isInt(x) || DataType.isFloat(x);
      if (f.inferredTypes && chosenFrom.inferredTypes && numeric(t) && numeric(chosen)) {
        chosen = new Float64();
        continue;
      }
      throw new InputError(
        `input file ${f.file}: metadata column "${name}" has type ${String(t)} but ${chosenFrom.file} has ${String(chosen)}; all files must agree`,
        { context: { file: f.file, field: name } },
      );
    }
    metadataTypes[name] = chosen;
  }

  if (!inspections.some((f) => f.hasRows)) {
    throw new InputError(
      `empty input: no rows in ${files.length === 1 ? `input file ${files[0]}` : `any of ${files.length} input files (${files[0]}, ...)`}`,
      { context: { file: files[0] } },
    );
  }

  // Dimension: the first non-empty row fixes it; a file whose sampled rows all differ is refused.
  let dim = options.dim;
  let dimFrom = options.dim !== undefined ? 'the expected dimension' : '';
  if (dim === undefined) {
    for (const f of inspections) {
      const d = f.fixedSize !== undefined && f.hasRows ? f.fixedSize : f.sampleLengths[0];
      if (d !== undefined) {
        dim = d;
        dimFrom = `input file ${f.file}`;
        break;
      }
    }
  }
  if (dim !== undefined) {
    for (const f of inspections) {
      if (f.fixedSize !== undefined) {
        if (f.hasRows && f.fixedSize !== dim) throw dimensionError(f.file, options.embeddingField, `has fixed-size embeddings of length ${f.fixedSize}`, dim, dimFrom);
      } else if (f.sampleLengths.length > 0 && !f.sampleLengths.includes(dim)) {
        const lengths = [...new Set(f.sampleLengths)].slice(0, 5).join(', ');
        throw dimensionError(f.file, options.embeddingField, `has no embedding of length ${dim} in its first ${f.sampleLengths.length} non-empty rows (lengths: ${lengths})`, dim, dimFrom);
      }
    }
  }
  const rows = inspections.every((f) => f.rows !== undefined)
    ? inspections.reduce((s, f) => s + f.rows!, 0)
    : undefined;
  return {
    idType: idFrom.idType,
    metadataTypes,
    ...(dim !== undefined ? { dim } : {}),
    ...(rows !== undefined ? { rows } : {}),
  };
}

/**
 * `readInputSchema`, asked of DuckDB first when DuckDB will read the input anyway (`reader:
 * 'duckdb'` with a connection, local Parquet files, no expected dimension): the same schema
 * without loading parquet-wasm for the footers. Only for the plain case `footerSchemaWithDuckDb`
 * settles exactly; every other case, problems included, goes to `readInputSchema`.
 */
export async function readInputSchemaFor(
  files: readonly string[],
  options: ReadInputSchemaOptions & Pick<ReadRawBatchesOptions, 'reader' | 'connection'>,
): Promise<InputSchema> {
  const { connection } = options;
  if (
    options.reader === 'duckdb' &&
    connection &&
    options.dim === undefined &&
    files.length > 0 &&
    files.every((f) => inputFormatOf(f) === 'parquet' && !isRemotePath(f))
  ) {
    const schema = await footerSchemaWithDuckDb(files, options, connection);
    if (schema) return schema;
  }
  return readInputSchema(files, options);
}

/**
 * The input schema from the Arrow schema stored in each file's footer (`ARROW:schema`, as
 * pyarrow writes it) and the footer's row count, read by DuckDB, when that settles it exactly as
 * `readInputSchema` would: no metadata columns, and in every file rows, a usable id column of the
 * same id type and a fixed-size-list embedding of the same size (`readInputSchema` then samples
 * no rows either). Undefined otherwise, or on any error.
 */
async function footerSchemaWithDuckDb(files: readonly string[], fields: InputFieldOptions, connection: DuckDBConnection): Promise<InputSchema | undefined> {
  if (fields.metadataFields.length > 0) return undefined;
  let idType: IdType | undefined;
  let dim: number | undefined;
  let rows = 0;
  try {
    for (const file of files) {
      const f = `'${file.replace(/'/g, "''")}'`;
      const reader = await connection.runAndReadAll(
        `SELECT (SELECT num_rows FROM parquet_file_metadata(${f})) AS num_rows, ` +
          `(SELECT decode(value) FROM parquet_kv_metadata(${f}) WHERE decode(key) = 'ARROW:schema' LIMIT 1) AS arrow_schema`,
      );
      const [numRows, encoded] = reader.getRowsJS()[0] ?? [];
      const n = Number(numRows);
      if (!(n > 0) || typeof encoded !== 'string' || encoded.length === 0) return undefined;
      const { idType: fileIdType, layout } = checkInputColumns(file, footerArrowSchema(encoded), fields);
      if (layout.kind !== 'fixed-size-list' || layout.listSize === undefined) return undefined;
      if ((idType !== undefined && fileIdType !== idType) || (dim !== undefined && layout.listSize !== dim)) return undefined;
      idType = fileIdType;
      dim = layout.listSize;
      rows += n;
    }
  } catch {
    return undefined;
  }
  if (idType === undefined || dim === undefined) return undefined;
  return { idType, metadataTypes: {}, dim, rows };
}

/** The Arrow schema of a footer's base64 `ARROW:schema` (one IPC schema message), read as a stream. */
function footerArrowSchema(encoded: string): Schema {
  const message = Buffer.from(encoded, 'base64');
  const stream = new Uint8Array(message.length + 8);
  stream.set(message);
  // End-of-stream marker: continuation token, zero length.
  stream.set([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0], message.length);
  return tableFromIPC(stream).schema;
}

function dimensionError(file: string, field: string, what: string, dim: number, dimFrom: string): InputError {
  return new InputError(`input file ${file} ${what}; the input's embedding dimension is ${dim} (from ${dimFrom})`, {
    context: { file, field },
  });
}

// ---------------------------------------------------------------------------------------------
// Batches

/**
 * Pull-based stream of RawClipBatches over all files, in order: checks the schema first (unless
 * `options.schema` is given), then reads one batch per `next()`. Stops reading (and releases the
 * file) when the consumer stops early. A file whose non-empty embeddings all have a length other
 * than the input's dimension fails with an InputError at its end.
 */
export async function* iterateRawBatches(
  files: readonly string[],
  options: ReadRawBatchesOptions,
): AsyncGenerator<RawClipBatch> {
  const schema = options.schema ?? (await readInputSchema(files, options));
  let dim = options.dim ?? schema.dim;
  for (const file of files) {
    const batches =
      inputFormatOf(file) === 'jsonl'
        ? iterateJsonlFile(file, options, {
            batchRows: options.batchRows,
            idType: schema.idType,
            metadataTypes: schema.metadataTypes,
            dim,
          })
        : iterateParquetFile(file, options, { batchRows: options.batchRows, idType: schema.idType });
    let nonEmpty = 0;
    let matching = 0;
    let otherLength = 0;
    for await (const batch of batches) {
      const { offsets, embeddingNull } = batch;
      for (let i = 0; i < embeddingNull.length; i++) {
        const len = offsets[i + 1]! - offsets[i]!;
        if (embeddingNull[i] || len === 0) continue;
        dim ??= len;
        nonEmpty++;
        if (len === dim) matching++;
        else otherLength = len;
      }
      yield batch;
    }
    if (nonEmpty > 0 && matching === 0) {
      throw new InputError(
        `input file ${file}: all ${nonEmpty} non-empty embeddings have a length other than the input's dimension ${dim} (e.g. ${otherLength})`,
        { context: { file, field: options.embeddingField } },
      );
    }
  }
}

/**
 * RawClipBatches of all files as an Observable. Lazy (nothing is opened before subscription)
 * and paced: the next batch is read only after the previous `next()` returned, and, with
 * `options.demand`, only after the consumer asked for it. Note that RxJS's `from(asyncIterable)`
 * alone does not bound an asynchronous consumer: `concatMap(async ...)` accepts every value at
 * once and queues it, so the reader would run ahead. Pass a demand signal for such consumers:
 *
 * ```ts
 * const demand = new Subject<void>();
 * readRawBatches(files, { ...fields, demand }).pipe(
 *   concatMap(async (batch) => { await store.append(batch); demand.next(); }),
 * );
 * ```
 */
export function readRawBatches(files: readonly string[], options: ReadRawBatchesOptions): Observable<RawClipBatch> {
  return new Observable<RawClipBatch>((subscriber) => {
    // DuckDB reads local files only here (no httpfs extension offline); remote Parquet goes
    // through parquet-wasm over ranged reads.
    const duckdb = options.reader === 'duckdb' && files.every((f) => inputFormatOf(f) === 'parquet' && !isRemotePath(f));
    const iterator = duckdb ? iterateDuckDbRawBatches(files, options, options.schema) : iterateRawBatches(files, options);
    let credits = options.demand ? (options.initialDemand ?? 1) : Number.POSITIVE_INFINITY;
    let wake: (() => void) | undefined;
    let stopped = false;
    const demandSub = options.demand?.subscribe(() => {
      credits++;
      const w = wake;
      wake = undefined;
      w?.();
    });
    const pump = async (): Promise<void> => {
      try {
        while (!stopped) {
          while (credits <= 0 && !stopped) await new Promise<void>((resolve) => (wake = resolve));
          if (stopped) return;
          const r = await iterator.next();
          if (stopped) return;
          if (r.done) {
            subscriber.complete();
            return;
          }
          credits--;
          subscriber.next(r.value);
        }
      } catch (err) {
        if (!stopped) subscriber.error(err);
      }
    };
    void pump();
    return () => {
      stopped = true;
      demandSub?.unsubscribe();
      const w = wake;
      wake = undefined;
      w?.();
      void iterator.return(undefined).catch(() => undefined);
    };
  });
}
