/**
 * Export the deduplicated data set: the input minus the clips listed in `duplicates/`, with the
 * input's columns and types, as Parquet files of at most `rowsPerFile` rows.
 *
 * DuckDB does the set logic (which listed ids are absent from the input, which rows to drop: an
 * anti-join, streamed in input order), and our Parquet sink writes the rows with the input's
 * Arrow schema. Why not `COPY ... TO` alone: DuckDB reads a fixed_size_list<float>[N] column as
 * FLOAT[] and writes a plain list back, and drops the Arrow schema, so types would change; here
 * every column is written with the type the input file declares (fixed_size_list stays
 * fixed_size_list, int64 stays int64, string stays string), and the result is checked.
 *
 * Files are built in a staging folder inside the output and renamed into place when complete.
 *
 * `s3://` paths: DuckDB here reads local files only (no httpfs extension offline), and export
 * reads every byte of the input anyway, so remote inputs and duplicate lists are first streamed
 * into a local temp folder (after their footers were checked with ranged reads); a remote output
 * is built in that temp folder and uploaded, then the previous export's extra parts are deleted.
 */
import { mkdir, mkdtemp, readdir, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
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
  Utf8,
} from 'apache-arrow';
import type { Schema } from 'apache-arrow';
import { DuckDBListVector, JSDuckDBValueConverter, type DuckDBDataChunk, type DuckDBVector } from '@duckdb/node-api';
import type { Logger } from '../runtime/logging.js';
import { InputError, InvariantError } from '../shared/errors.js';
import { inputFormatOf, resolveInputFiles } from '../sources/index.js';
import { openParquetFile, parquetArrowSchema } from '../sources/parquet/index.js';
import { openParquetWriter, type ColumnSpec, type ParquetWriter } from '../sinks/parquet/index.js';
import { isInside, isRemotePath, joinPath, storageFor, type StorageOptions } from '../storage/index.js';
import { sqlIdent, sqlString, Store } from '../store/index.js';

export const DEFAULT_ROWS_PER_FILE = 1_000_000;

export interface ExportOptions {
  /** Input files, folders or globs (Parquet, or JSONL). */
  readonly input: readonly string[];
  /** The run's duplicates/ folder (or Parquet files / a glob) with an `id` column. */
  readonly duplicates: string;
  /** Output folder for part-00000.parquet, part-00001.parquet, ... */
  readonly output: string;
  readonly rowsPerFile?: number;
  readonly idField?: string;
  /** JSONL only: this field is written as list<float32> (as `run` reads it). */
  readonly embeddingField?: string;
  /** Export even when the duplicate list names ids the input does not have. */
  readonly allowMissing?: boolean;
  /** How to reach `s3://` paths; unset: the AWS env/config chain. */
  readonly storage?: StorageOptions;
  readonly logger: Logger;
}

export interface ExportResult {
  readonly output: string;
  readonly input_files: number;
  readonly input_rows: number;
  /** Distinct non-null ids in the duplicate list. */
  readonly duplicates_listed: number;
  /** Input rows dropped because their id is listed. */
  readonly removed: number;
  readonly kept: number;
  /** Listed ids that are not in the input (only non-zero with allowMissing). */
  readonly missing: number;
  readonly missing_examples: readonly string[];
  readonly rows_per_file: number;
  readonly files: readonly { readonly path: string; readonly rows: number }[];
  /** Output columns as `name: Arrow type`. */
  readonly schema: readonly string[];
}

/** How one output column is read from DuckDB and written. */
interface ColumnPlan {
  readonly name: string;
  /** SQL expression selecting it from the input relation. */
  readonly sql: string;
  readonly type: DataType;
  readonly kind: 'utf8' | 'int64' | 'int32' | 'float32' | 'float64' | 'bool' | 'fixed-list-float32' | 'list-float32' | 'generic';
  /** Index of an extra boolean column telling null rows apart (list columns). */
  nullColumn?: number;
}

const PART_RE = /^part-\d{5,}\.parquet$/;

export function partFileName(index: number): string {
  return `part-${String(index).padStart(5, '0')}.parquet`;
}

/** `semdedup export`: write the input minus the duplicates to `options.output`. */
export async function exportDeduplicated(options: ExportOptions): Promise<ExportResult> {
  const log = options.logger.child({ step: 'export' });
  const rowsPerFile = options.rowsPerFile ?? DEFAULT_ROWS_PER_FILE;
  if (!Number.isSafeInteger(rowsPerFile) || rowsPerFile < 1) {
    throw new InputError(`--rows-per-file must be a positive integer, got ${rowsPerFile}`, { context: { field: 'rows-per-file' } });
  }
  const idField = options.idField ?? 'id';
  const { storage } = options;
  const inputFiles = await resolveInputFiles(options.input, storage);
  const duplicateFiles = await resolveDuplicateFiles(options.duplicates, storage);
  const remoteOutput = isRemotePath(options.output);
  const outputDir = remoteOutput ? options.output.replace(/\/+$/, '') : path.resolve(options.output);
  for (const f of [...inputFiles, ...duplicateFiles]) {
    if (isInside(f, outputDir)) {
      throw new InputError(`the output folder ${options.output} holds ${f}, which export reads; export to another folder`, { context: { field: 'output' } });
    }
  }
  const formats = new Set(inputFiles.map(inputFormatOf));
  if (formats.size > 1) throw new InputError('mixed Parquet and JSONL inputs: export one format at a time', { context: { field: 'input' } });
  const format = [...formats][0]!;

  const needsTemp = remoteOutput || [...inputFiles, ...duplicateFiles].some(isRemotePath);
  const tempRoot = needsTemp ? await mkdtemp(path.join(tmpdir(), 'semdedup-export-')) : undefined;
  const staging = remoteOutput ? path.join(tempRoot!, 'staging') : path.join(outputDir, `.semdedup-export-${process.pid}`);
  // One thread: the anti-join then streams the input in its order (DuckDB only guarantees
  // order for single-table scans), and the JS writer is the bottleneck anyway.
  const store = await Store.open(':memory:', { threads: 1 });
  let published = false;
  try {
    // Footers first (ranged reads for s3://): a schema mismatch fails before any download.
    const parquetInputPlans = format === 'parquet' ? await parquetPlans(inputFiles, idField, storage) : undefined;
    const localInputs = await localCopies(inputFiles, tempRoot, 'input', storage);
    const localDuplicates = await localCopies(duplicateFiles, tempRoot, 'duplicates', storage);
    const relation =
      format === 'parquet'
        ? `read_parquet([${localInputs.map((f) => sqlString(f)).join(', ')}], hive_partitioning = false)`
        : `read_json([${localInputs.map((f) => sqlString(f)).join(', ')}], format = 'newline_delimited')`;
    const plans = parquetInputPlans ?? (await jsonlPlans(store, relation, idField, options.embeddingField ?? 'embedding'));

    const dupIdColumn = await duplicateIdColumn(store, localDuplicates, idField, duplicateFiles[0]!);
    await store.run(
      `CREATE TEMP TABLE dup_ids AS SELECT DISTINCT ${sqlIdent(dupIdColumn)}::VARCHAR AS id
         FROM read_parquet([${localDuplicates.map((f) => sqlString(f)).join(', ')}]) WHERE ${sqlIdent(dupIdColumn)} IS NOT NULL`,
    );
    await store.run(`CREATE TEMP VIEW input_rows AS SELECT * FROM ${relation}`);
    const idSql = `i.${sqlIdent(idField)}::VARCHAR`;
    const [counts] = await store.rows(
      `SELECT (SELECT count(*) FROM input_rows)::BIGINT AS input_rows,
              (SELECT count(*) FROM dup_ids)::BIGINT AS listed,
              (SELECT count(*) FROM input_rows i WHERE ${idSql} IN (SELECT id FROM dup_ids))::BIGINT AS removed,
              (SELECT count(*) FROM dup_ids d WHERE d.id NOT IN (SELECT ${idSql} FROM input_rows i WHERE i.${sqlIdent(idField)} IS NOT NULL))::BIGINT AS missing`,
    );
    const inputRows = Number(counts!.input_rows);
    const listed = Number(counts!.listed);
    const removed = Number(counts!.removed);
    const missing = Number(counts!.missing);
    let missingExamples: string[] = [];
    if (missing > 0) {
      missingExamples = (
        await store.rows(`SELECT d.id FROM dup_ids d WHERE d.id NOT IN (SELECT ${idSql} FROM input_rows i WHERE i.${sqlIdent(idField)} IS NOT NULL) ORDER BY d.id LIMIT 5`)
      ).map((r) => String(r.id));
      const what = `${missing} of the ${listed} duplicate ids are not in the input (e.g. ${missingExamples.join(', ')})`;
      if (!options.allowMissing) {
        throw new InputError(`${what}: is --duplicates from a run on this --input? Pass --allow-missing to export anyway`);
      }
      log.warn({ missing, examples: missingExamples }, `${what}; exporting anyway (--allow-missing)`);
    }

    // Checks passed: only now touch the output folder.
    if (!remoteOutput) await mkdir(outputDir, { recursive: true });
    await rm(staging, { recursive: true, force: true });
    await mkdir(staging, { recursive: true });
    await store.run(`SET temp_directory = ${sqlString(path.join(staging, 'duckdb-tmp'))}`);
    const files = await writeKeptRows(store, plans, idSql, staging, rowsPerFile);
    const kept = files.reduce((s, f) => s + f.rows, 0);
    if (kept + removed !== inputRows) throw new InvariantError(`export wrote ${kept} rows and removed ${removed}, but the input has ${inputRows}`);
    const expected = plans.map((p) => `${p.name}: ${String(p.type)}`);
    for (const f of files) await checkWrittenSchema(f.path, expected);

    const publishedFiles = files.map((f) => ({ path: joinPath(options.output, path.basename(f.path)), rows: f.rows }));
    if (remoteOutput) await uploadParts(files, outputDir, storage);
    else {
      // Publish: drop the previous export's parts, move the new ones in.
      for (const entry of await readdir(outputDir)) if (PART_RE.test(entry)) await rm(path.join(outputDir, entry), { force: true });
      for (const f of files) await rename(f.path, path.join(outputDir, path.basename(f.path)));
    }
    published = true;
    log.info({ input_rows: inputRows, removed, kept, files: files.length }, 'deduplicated data set exported');
    return {
      output: options.output,
      input_files: inputFiles.length,
      input_rows: inputRows,
      duplicates_listed: listed,
      removed,
      kept,
      missing,
      missing_examples: missingExamples,
      rows_per_file: rowsPerFile,
      files: publishedFiles,
      schema: expected,
    };
  } finally {
    store.close();
    await rm(staging, { recursive: true, force: true });
    if (tempRoot) await rm(tempRoot, { recursive: true, force: true });
    if (!published) log.debug('export did not complete; staging removed');
  }
}

/**
 * Upload the new parts (each replaces the part of the same name), then delete the previous
 * export's parts beyond them: the prefix is never without a complete set of names.
 */
async function uploadParts(files: readonly { path: string }[], outputDir: string, storage: StorageOptions | undefined): Promise<void> {
  const store = storageFor(outputDir, storage);
  const names = new Set(files.map((f) => path.basename(f.path)));
  for (const f of files) await store.upload(f.path, joinPath(outputDir, path.basename(f.path)));
  for (const entry of await store.listNames(outputDir)) if (PART_RE.test(entry) && !names.has(entry)) await store.remove(joinPath(outputDir, entry));
}

/** Local paths DuckDB can read: local files as they are, `s3://` objects streamed into `tempRoot/what/`. */
async function localCopies(files: readonly string[], tempRoot: string | undefined, what: string, storage: StorageOptions | undefined): Promise<string[]> {
  if (!files.some(isRemotePath)) return [...files];
  const dir = path.join(tempRoot!, what);
  await mkdir(dir, { recursive: true });
  const out: string[] = [];
  for (const [i, f] of files.entries()) {
    if (!isRemotePath(f)) {
      out.push(f);
      continue;
    }
    // Numbered: two prefixes may hold the same file name; the extension keeps the format.
    const local = path.join(dir, `${String(i).padStart(5, '0')}-${path.posix.basename(f)}`);
    await storageFor(f, storage).download(f, local);
    out.push(local);
  }
  return out;
}

async function resolveDuplicateFiles(duplicates: string, storage: StorageOptions | undefined): Promise<string[]> {
  const files = await resolveInputFiles([duplicates], storage).catch((err: unknown) => {
    if (err instanceof InputError) throw new InputError(`--duplicates: ${err.message}`, { cause: err, context: { ...err.context, field: 'duplicates' } });
    throw err;
  });
  const notParquet = files.filter((f) => inputFormatOf(f) !== 'parquet');
  if (notParquet.length > 0) throw new InputError(`--duplicates must be Parquet (semdedup's duplicates/ folder), got ${notParquet[0]}`, { context: { file: notParquet[0], field: 'duplicates' } });
  return files;
}

/** The id column of the duplicate list: `id` (semdedup, NeMo), else the input's id field. `shownAs` names the list in errors. */
async function duplicateIdColumn(store: Store, files: readonly string[], idField: string, shownAs: string): Promise<string> {
  const columns = (await store.rows(`DESCRIBE SELECT * FROM read_parquet([${files.map((f) => sqlString(f)).join(', ')}])`)).map((r) => r.column_name as string);
  if (columns.includes('id')) return 'id';
  if (columns.includes(idField)) return idField;
  throw new InputError(`duplicate list ${shownAs} has no id column (columns: ${columns.join(', ')})`, { context: { file: shownAs, field: 'duplicates' } });
}

// ---------------------------------------------------------------------------------------------
// Column plans: what each output column is and how it is read

/** Every Parquet input must declare the same Arrow schema; it is the output's schema. */
async function parquetPlans(files: readonly string[], idField: string, storage: StorageOptions | undefined): Promise<ColumnPlan[]> {
  let schema: Schema | undefined;
  let schemaText = '';
  for (const file of files) {
    const pf = await openParquetFile(file, storage);
    let s: Schema;
    try {
      s = parquetArrowSchema(file, pf);
    } finally {
      pf.free();
    }
    const text = describeSchema(s).join(', ');
    if (!schema) {
      schema = s;
      schemaText = text;
    } else if (text !== schemaText) {
      throw new InputError(`input file ${file} has columns (${text}) but ${files[0]} has (${schemaText}); all files must agree`, { context: { file } });
    }
  }
  const fields = schema!.fields;
  if (!fields.some((f) => f.name === idField)) {
    throw new InputError(`input file ${files[0]} has no id column "${idField}" (columns: ${fields.map((f) => f.name).join(', ')})`, { context: { file: files[0], field: idField } });
  }
  return fields.map((f) => planFor(f.name, sqlIdent(f.name), f.type));
}

/** JSONL: types as DuckDB infers them; the embedding as list<float32>; anything nested as JSON text. */
async function jsonlPlans(store: Store, relation: string, idField: string, embeddingField: string): Promise<ColumnPlan[]> {
  const described = await store.rows(`DESCRIBE SELECT * FROM ${relation}`);
  if (!described.some((r) => r.column_name === idField)) {
    throw new InputError(`the JSONL input has no id field "${idField}" (fields: ${described.map((r) => String(r.column_name)).join(', ')})`, { context: { field: idField } });
  }
  return described.map((r) => {
    const name = r.column_name as string;
    const col = sqlIdent(name);
    if (name === embeddingField) return planFor(name, `${col}::FLOAT[]`, new List(new Field('item', new Float32(), true)));
    const simple: Record<string, DataType> = {
      VARCHAR: new Utf8(),
      BIGINT: new Int64(),
      INTEGER: new Int32(),
      DOUBLE: new Float64(),
      FLOAT: new Float32(),
      BOOLEAN: new Bool(),
      'FLOAT[]': new List(new Field('item', new Float32(), true)),
      'DOUBLE[]': new List(new Field('item', new Float64(), true)),
      'BIGINT[]': new List(new Field('item', new Int64(), true)),
      'VARCHAR[]': new List(new Field('item', new Utf8(), true)),
    };
    const t = simple[r.column_type as string];
    return t ? planFor(name, col, t) : planFor(name, `to_json(${col})::VARCHAR`, new Utf8());
  });
}

function planFor(name: string, sql: string, type: DataType): ColumnPlan {
  const child = (type.children?.[0] as Field | undefined)?.type;
  const kind: ColumnPlan['kind'] = DataType.isUtf8(type)
    ? 'utf8'
    : DataType.isInt(type) && type.bitWidth === 64 && type.isSigned
      ? 'int64'
      : DataType.isInt(type) && type.bitWidth === 32 && type.isSigned
        ? 'int32'
        : DataType.isFloat(type) && type.precision === Precision.SINGLE
          ? 'float32'
          : DataType.isFloat(type) && type.precision === Precision.DOUBLE
            ? 'float64'
            : DataType.isBool(type)
              ? 'bool'
              : DataType.isFixedSizeList(type) && child && DataType.isFloat(child) && child.precision === Precision.SINGLE
                ? 'fixed-list-float32'
                : DataType.isList(type) && child && DataType.isFloat(child) && child.precision === Precision.SINGLE
                  ? 'list-float32'
                  : 'generic';
  return { name, sql, type, kind };
}

export function describeSchema(schema: Schema): string[] {
  return schema.fields.map((f) => `${f.name}: ${String(f.type)}`);
}

// ---------------------------------------------------------------------------------------------
// Writing

async function writeKeptRows(store: Store, plans: ColumnPlan[], idSql: string, dir: string, rowsPerFile: number): Promise<{ path: string; rows: number }[]> {
  const selects = plans.map((p) => `${p.sql} AS ${sqlIdent(p.name)}`);
  plans.forEach((p) => {
    if (p.kind === 'fixed-list-float32' || p.kind === 'list-float32') {
      p.nullColumn = selects.length;
      selects.push(`(${p.sql}) IS NULL`);
    }
  });
  const result = await store.connection.stream(
    `SELECT ${selects.join(', ')} FROM input_rows i WHERE NOT EXISTS (SELECT 1 FROM dup_ids d WHERE d.id = ${idSql})`,
  );
  const files: { path: string; rows: number }[] = [];
  let writer: ParquetWriter | undefined;
  const openNext = async () => openParquetWriter(path.join(dir, partFileName(files.length)));
  const closeCurrent = async () => {
    const done = await writer!.close();
    files.push({ path: done.path, rows: done.rows });
    writer = undefined;
  };
  try {
    for (;;) {
      const chunk = await result.fetchChunk();
      if (!chunk || chunk.rowCount === 0) break;
      for (let start = 0; start < chunk.rowCount; ) {
        writer ??= await openNext();
        const end = Math.min(chunk.rowCount, start + rowsPerFile - writer.rowsWritten);
        await writer.write(plans.map((p, i) => columnSpec(p, chunk, i, start, end)));
        start = end;
        if (writer.rowsWritten >= rowsPerFile) await closeCurrent();
      }
    }
    if (writer) await closeCurrent();
    // Nothing kept: still one (empty) file carrying the schema.
    if (files.length === 0) {
      writer = await openNext();
      await writer.write(plans.map((p) => emptySpec(p)));
      await closeCurrent();
    }
    return files;
  } catch (err) {
    await writer?.abort();
    throw err;
  }
}

/** Rows [start, end) of one DuckDB column as a sink ColumnSpec of the planned type. */
function columnSpec(plan: ColumnPlan, chunk: DuckDBDataChunk, column: number, start: number, end: number): ColumnSpec {
  const n = end - start;
  const { name } = plan;
  const vector = chunk.getColumnVector(column);
  switch (plan.kind) {
    case 'int64':
    case 'int32':
    case 'float32':
    case 'float64': {
      const values =
        plan.kind === 'int64' ? new BigInt64Array(n) : plan.kind === 'int32' ? new Int32Array(n) : plan.kind === 'float32' ? new Float32Array(n) : new Float64Array(n);
      let nulls: Uint8Array | undefined;
      for (let i = 0; i < n; i++) {
        const v = vector.getItem(start + i) as number | bigint | null;
        if (v === null) (nulls ??= new Uint8Array(n))[i] = 1;
        else (values as unknown as (number | bigint)[])[i] = plan.kind === 'int64' ? BigInt(v) : Number(v);
      }
      return { name, type: plan.kind, values, nulls };
    }
    case 'fixed-list-float32':
    case 'list-float32':
      return floatListSpec(plan, vector, chunk.getColumnVector(plan.nullColumn!), start, end);
    case 'utf8': {
      const values = new Array<string | null>(n);
      for (let i = 0; i < n; i++) {
        const v = vector.getItem(start + i);
        values[i] = v === null ? null : String(v);
      }
      return { name, type: 'utf8', values };
    }
    default: {
      const all = chunk.convertColumnValues(column, JSDuckDBValueConverter).slice(start, end);
      const values = all.map((v) => (v instanceof Date ? v.getTime() : v));
      return { name, type: plan.kind === 'bool' ? 'bool' : { arrow: plan.type }, values };
    }
  }
}

/** Float32 list rows, read straight from DuckDB's flat child vector (no per-row arrays). */
function floatListSpec(plan: ColumnPlan, vector: DuckDBVector, nullVector: DuckDBVector, start: number, end: number): ColumnSpec {
  const n = end - start;
  let nulls: Uint8Array | undefined;
  for (let i = 0; i < n; i++) if (nullVector.getItem(start + i) === true) (nulls ??= new Uint8Array(n))[i] = 1;
  const lengthOf = (row: number): number => (vector instanceof DuckDBListVector ? vector.getEntryLength(row) : ((vector.getItem(row) as { items?: unknown[] } | null)?.items?.length ?? 0));
  const offsets = new Int32Array(n + 1);
  for (let i = 0; i < n; i++) offsets[i + 1] = offsets[i]! + (nulls?.[i] ? 0 : lengthOf(start + i));
  const listSize = DataType.isFixedSizeList(plan.type) ? (plan.type as FixedSizeList).listSize : undefined;
  const values = new Float32Array(listSize !== undefined ? n * listSize : offsets[n]!);
  for (let i = 0; i < n; i++) {
    if (nulls?.[i]) continue;
    const row = start + i;
    const len = offsets[i + 1]! - offsets[i]!;
    if (listSize !== undefined && len !== listSize) {
      throw new InputError(`column ${plan.name}: a row has ${len} values but the column is fixed_size_list[${listSize}]`, { context: { field: plan.name } });
    }
    const at = listSize !== undefined ? i * listSize : offsets[i]!;
    if (vector instanceof DuckDBListVector) {
      const child = vector.childVector;
      const from = vector.getEntryOffset(row);
      for (let k = 0; k < len; k++) values[at + k] = (child.getItem(from + k) as number | null) ?? Number.NaN;
    } else {
      const items = (vector.getItem(row) as { items: (number | null)[] }).items;
      for (let k = 0; k < len; k++) values[at + k] = items[k] ?? Number.NaN;
    }
  }
  return listSize !== undefined
    ? { name: plan.name, type: 'fixed-list-float32', values, listSize, nulls }
    : { name: plan.name, type: 'list-float32', values, offsets, nulls };
}

function emptySpec(plan: ColumnPlan): ColumnSpec {
  switch (plan.kind) {
    case 'int64':
      return { name: plan.name, type: 'int64', values: new BigInt64Array(0) };
    case 'int32':
      return { name: plan.name, type: 'int32', values: new Int32Array(0) };
    case 'float32':
      return { name: plan.name, type: 'float32', values: new Float32Array(0) };
    case 'float64':
      return { name: plan.name, type: 'float64', values: new Float64Array(0) };
    case 'fixed-list-float32':
      return { name: plan.name, type: 'fixed-list-float32', values: new Float32Array(0), listSize: (plan.type as FixedSizeList).listSize };
    case 'list-float32':
      return { name: plan.name, type: 'list-float32', values: new Float32Array(0), offsets: new Int32Array(1) };
    case 'utf8':
      return { name: plan.name, type: 'utf8', values: [] };
    case 'bool':
      return { name: plan.name, type: 'bool', values: [] };
    default:
      return { name: plan.name, type: { arrow: plan.type }, values: [] };
  }
}

/** The written file must declare exactly the planned columns and types. */
async function checkWrittenSchema(file: string, expected: readonly string[]): Promise<void> {
  const pf = await openParquetFile(file);
  try {
    const got = describeSchema(parquetArrowSchema(file, pf));
    if (got.join(', ') !== expected.join(', ')) {
      throw new InvariantError(`exported ${file} has columns (${got.join(', ')}) instead of (${expected.join(', ')})`);
    }
  } finally {
    pf.free();
  }
}
