/**
 * Identify after the fact: choose or change eps on a finished run without recomputing anything.
 * The run's `semdedup.duckdb` already holds every clip's `cosine_sim_score`, so duplicates at a
 * new eps are one `WHERE` over the `pairwise` table (the same query the batch run uses).
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { writeDuplicates } from '../batch/identify.js';
import type { Logger } from '../runtime/logging.js';
import { InputError, SemdedupError } from '../shared/errors.js';
import { sqlString, Store } from '../store/index.js';

export const RUN_DATABASE = 'semdedup.duckdb';

/**
 * Open a run's database read-only: an in-memory DuckDB with the run's file attached and made
 * current, so unqualified names (`clips`, `pairwise`, `centroids`) resolve to the run's tables and
 * several readers (inspect, identify) can share the file. InputError when `outputDir` is not a
 * semdedup output folder or the tables are missing.
 */
export async function openRunStore(outputDir: string, needTables: readonly string[] = ['clips', 'pairwise']): Promise<Store> {
  const dbPath = assertRunOutput(outputDir);
  const store = await Store.open(':memory:');
  try {
    await store.run(`ATTACH ${sqlString(dbPath)} AS run (READ_ONLY)`);
    await store.run('USE run');
  } catch (cause) {
    store.close();
    throw new InputError(`cannot open it (${(cause as Error).message.split('\n')[0]}); is a run still writing it?`, { cause, context: { file: dbPath } });
  }
  const tables = new Set((await store.rows("SELECT table_name FROM duckdb_tables() WHERE database_name = 'run'")).map((r) => r.table_name as string));
  const missing = needTables.filter((t) => !tables.has(t));
  if (missing.length > 0) {
    store.close();
    throw new InputError(`no table ${missing.join(', ')}; was the run interrupted? (tables: ${[...tables].join(', ') || 'none'})`, { context: { file: dbPath } });
  }
  return store;
}

/** The path of the run's database; InputError when `outputDir` has none. */
export function assertRunOutput(outputDir: string): string {
  const dbPath = join(resolve(outputDir), RUN_DATABASE);
  if (!existsSync(dbPath)) {
    const why = existsSync(outputDir) ? `${outputDir} is not a semdedup output folder (no ${RUN_DATABASE} in it)` : `no such folder ${outputDir}`;
    throw new InputError(`${why}; run \`semdedup run --output ${outputDir} ...\` first`, { context: { file: outputDir } });
  }
  return dbPath;
}

/** Parse and check an eps value given as text; duplicates are scores >= 1 - eps. */
export function parseEps(value: unknown, flag = '--eps'): number {
  const eps = typeof value === 'number' ? value : Number(String(value ?? '').trim());
  if (value === undefined || value === null || String(value).trim() === '' || !Number.isFinite(eps) || eps < 0 || eps > 2) {
    throw new InputError(`${flag} must be a number in [0, 2] (duplicates are clips with cosine_sim_score >= 1 - eps), got ${String(value)}`);
  }
  return eps;
}

export interface IdentifyResult {
  readonly output: string;
  readonly eps: number;
  /** cosine_sim_score threshold: 1 - eps. */
  readonly threshold: number;
  readonly rows: number;
  readonly duplicates: number;
  readonly kept: number;
  /** eps and duplicates recorded before this call (null when the run had no eps). */
  readonly previous: { eps: number | null; duplicates: number | null };
  readonly duplicatesDir: string;
}

/**
 * `semdedup identify`: rewrite `duplicates/` from the `pairwise` table at a new eps and record it
 * in summary.json (`duplicates`, `config.eps`). The new folder is built under a staging name and
 * swapped in by renames; summary.json is replaced atomically afterwards.
 */
export async function identifyFromRun(outputDir: string, eps: number, options: { logger: Logger }): Promise<IdentifyResult> {
  const log = options.logger.child({ step: 'identify' });
  const dir = resolve(outputDir);
  assertRunOutput(outputDir);
  const summaryPath = join(dir, 'summary.json');
  const summary = await readSummary(summaryPath);
  const store = await openRunStore(outputDir);
  const staging = join(dir, `.semdedup-identify-${process.pid}`);
  const old = join(dir, `.semdedup-identify-old-${process.pid}`);
  let duplicates: number;
  let rows: number;
  try {
    await rm(staging, { recursive: true, force: true });
    await mkdir(staging, { recursive: true });
    duplicates = await writeDuplicates(store, eps, join(staging, 'duplicates'));
    const [row] = await store.rows('SELECT count(*)::BIGINT AS n FROM pairwise');
    rows = Number(row!.n);
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    throw err;
  } finally {
    store.close();
  }
  const target = join(dir, 'duplicates');
  try {
    if (existsSync(target)) await rename(target, old);
    await rename(join(staging, 'duplicates'), target);
  } catch (cause) {
    // Put the previous folder back when the swap failed halfway.
    if (!existsSync(target) && existsSync(old)) await rename(old, target).catch(() => undefined);
    throw new SemdedupError(`cannot replace ${target}: ${(cause as Error).message}`, { cause, context: { file: target } });
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
  await rm(old, { recursive: true, force: true });

  const config = (summary.config ?? {}) as Record<string, unknown>;
  const previous = { eps: typeof config.eps === 'number' ? config.eps : null, duplicates: typeof summary.duplicates === 'number' ? summary.duplicates : null };
  const updated = { ...summary, duplicates, config: { ...config, eps } };
  const tmp = join(dir, `.semdedup-summary.json.tmp-${process.pid}`);
  await writeFile(tmp, JSON.stringify(updated, null, 2) + '\n');
  await rename(tmp, summaryPath);
  log.info({ eps, duplicates, kept: rows - duplicates, previous }, 'duplicates rewritten from the pairwise table');
  return { output: outputDir, eps, threshold: 1 - eps, rows, duplicates, kept: rows - duplicates, previous, duplicatesDir: join(outputDir, 'duplicates') };
}

/** A run's summary.json as an object; a missing one means the run did not finish. */
export async function readSummary(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    // A database without summary.json is a run that did not finish: refuse rather than guess.
    throw new InputError('missing: the run in this folder did not finish; run it again', { context: { file: path } });
  }
  try {
    const parsed = JSON.parse(text) as unknown;
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) return parsed as Record<string, unknown>;
  } catch {
    // fall through
  }
  throw new InputError('not a semdedup summary (expected a JSON object)', { context: { file: path } });
}
