/**
 * File sources (Parquet and JSONL): resolve input paths, check the input's schema across all
 * files before anything is emitted, and stream RawClipBatches with backpressure.
 *
 * File-level problems (missing or mistyped columns, corrupt files, types or embedding dimensions
 * differing across files, empty input) are thrown as `InputError`s naming the file; row-level
 * problems (null ids, odd embedding lengths, undecodable JSONL lines) travel with the rows, for
 * validation to refuse one by one.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { Observable } from 'rxjs';
import { DataType, Float64 } from 'apache-arrow';
import { InputError } from '../shared/errors.js';
import type { IdType, InputSchemaInfo, RawClipBatch } from '../shared/types.js';
import { inspectParquetFile, iterateParquetFile } from './parquet/index.js';
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
   * docs/BENCHMARKS.md) or `parquet-wasm`. JSONL inputs always use the JSONL reader.
   */
  readonly reader?: 'duckdb' | 'parquet-wasm';
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
 * globs, as Spark and pyarrow datasets do.
 */
export async function resolveInputFiles(paths: readonly string[]): Promise<string[]> {
  if (paths.length === 0) throw new InputError('no input files: no input path given', { context: { field: 'input' } });
  const out: string[] = [];
  const seen = new Set<string>();
  const add = (f: string): void => {
    const key = path.resolve(f);
    if (!seen.has(key)) {
      seen.add(key);
      out.push(f);
    }
  };
  for (const p of paths) {
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(p)) {
      throw new InputError(`input path ${p}: only local paths are supported by the file sources`, { context: { file: p } });
    }
    if (hasGlob(p)) {
      const matches = await expandGlob(p);
      if (matches.length === 0) throw new InputError(`no input files match ${p}`, { context: { file: p } });
      matches.forEach(add);
      continue;
    }
    let st;
    try {
      st = await fsp.stat(p);
    } catch {
      throw new InputError(`input path ${p} does not exist`, { context: { file: p } });
    }
    if (st.isFile()) add(p);
    else if (st.isDirectory()) {
      const files = (await walk(p, Number.POSITIVE_INFINITY)).filter((f) =>
        FOLDER_EXTENSIONS.includes(path.extname(f).toLowerCase()),
      );
      if (files.length === 0) {
        throw new InputError(`no input files (${FOLDER_EXTENSIONS.join(', ')}) in folder ${p}`, { context: { file: p } });
      }
      files.sort(compareStrings).forEach(add);
    } else {
      throw new InputError(`input path ${p} is neither a file nor a folder`, { context: { file: p } });
    }
  }
  return out;
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function hasGlob(p: string): boolean {
  return /[*?[]/.test(p);
}

/** Files under `dir` (recursive up to `depth` levels), skipping `.`/`_` entries; sorted. */
async function walk(dir: string, depth: number): Promise<string[]> {
  const out: string[] = [];
  const visit = async (d: string, level: number): Promise<void> => {
    let entries;
    try {
      entries = await fsp.readdir(d, { withFileTypes: true });
    } catch (cause) {
      throw new InputError(`cannot list folder ${d}: ${(cause as Error).message}`, { cause, context: { file: d } });
    }
    entries.sort((a, b) => compareStrings(a.name, b.name));
    for (const e of entries) {
      if (e.name.startsWith('.') || e.name.startsWith('_')) continue;
      const full = path.join(d, e.name);
      let isDir = e.isDirectory();
      let isFile = e.isFile();
      if (e.isSymbolicLink()) {
        const st = await fsp.stat(full).catch(() => undefined);
        isDir = st?.isDirectory() ?? false;
        isFile = st?.isFile() ?? false;
      }
      if (isFile) out.push(full);
      else if (isDir && level < depth) await visit(full, level + 1);
    }
  };
  await visit(dir, 1);
  return out;
}

/**
 * A small glob matcher (Node 20 has no `fs.promises.glob`): `*` and `?` within one path segment,
 * `**` across segments, `[...]` character classes.
 */
async function expandGlob(pattern: string): Promise<string[]> {
  const norm = pattern.split(path.sep).join('/');
  const segs = norm.split('/');
  const first = segs.findIndex(hasGlob);
  const baseSegs = segs.slice(0, first);
  const base = baseSegs.length === 0 ? '.' : baseSegs.join('/') === '' ? '/' : baseSegs.join('/');
  const rest = segs.slice(first);
  const re = globToRegExp(rest.join('/'));
  const depth = rest.includes('**') || rest.some((s) => s.includes('**')) ? Number.POSITIVE_INFINITY : rest.length;
  let st;
  try {
    st = await fsp.stat(base);
  } catch {
    return [];
  }
  if (!st.isDirectory()) return [];
  const files = await walk(base, depth);
  return files
    .filter((f) => re.test(path.relative(base, f).split(path.sep).join('/')))
    .sort(compareStrings);
}

function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') {
      if (glob[i + 1] === '*') {
        const atSegStart = i === 0 || glob[i - 1] === '/';
        if (atSegStart && glob[i + 2] === '/') {
          re += '(?:[^/]+/)*';
          i += 2;
        } else {
          re += '.*';
          i += 1;
        }
      } else {
        re += '[^/]*';
      }
    } else if (c === '?') {
      re += '[^/]';
    } else if (c === '[') {
      const close = glob.indexOf(']', i + 2);
      if (close < 0) re += '\\[';
      else {
        let cls = glob.slice(i + 1, close).replace(/\\/g, '\\\\');
        if (cls.startsWith('!')) cls = `^${cls.slice(1)}`;
        re += `[${cls}]`;
        i = close;
      }
    } else {
      re += c.replace(/[.+^${}()|\\\]]/g, '\\$&');
    }
  }
  return new RegExp(`^${re}$`);
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
    const allParquet = files.every((f) => inputFormatOf(f) === 'parquet');
    const iterator = options.reader === 'duckdb' && allParquet ? iterateDuckDbRawBatches(files, options, options.schema) : iterateRawBatches(files, options);
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
