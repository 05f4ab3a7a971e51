import { lstat, mkdir, readdir, rename } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { batchTopology } from '../../topologies/batch.js';
import { createKernel } from '../kernels/index.js';
import type { BackendName, SimilarityKernel } from '../kernels/types.js';
import type { Logger } from '../runtime/logging.js';
import { createProgress, type Progress } from '../runtime/progress.js';
import { runTopology } from '../runtime/runner.js';
import { onTerminate } from '../runtime/shutdown.js';
import type { RunConfig } from '../shared/config.js';
import { InputError } from '../shared/errors.js';
import { isInside, isRemotePath, joinPath, redactStorageOptions, storageFor, type StorageOptions } from '../storage/index.js';
import { syncDir } from '../sinks/parquet/index.js';
import { resolveInputFiles } from '../sources/index.js';
import { Store } from '../store/index.js';
import type { RecallResult } from '../recall/index.js';
import type { BatchContext, ProbeStats } from './context.js';
import { openPartialRun, PARTIAL_IN_OUTPUT, runIdentity, writeFileDurably, type PartialRun } from './partial-run.js';
import { killPointsFromEnv, resumableBatchTopology, type ResumeStats } from './resume.js';

export interface RunSummary {
  rows: number;
  clusters: number;
  duplicates: number | null;
  rejected_rows: number;
  backend: string;
  backend_description: string;
  pairs_compared: number;
  kmeans: BatchContext['kmeans'];
  input_files: number;
  timings: Record<string, number>;
  config: RunConfig;
  /** Only with --probe 2: probed clips, extra pairs and the pairwise time (see ProbeStats). */
  probe?: ProbeStats;
  /** Written by `semdedup recall` (see src/recall). */
  recall?: RecallResult;
  /** Only with --resume when a partial run was continued: what it did not have to redo. */
  resumed?: ResumeStats;
}

/** Names semdedup writes into an output folder; only these are cleared or published. */
export const OUTPUT_ENTRIES = ['kmeans_results', 'kmeans_centroids.npy', 'pairwise_results', 'duplicates', 'rejected', 'semdedup.duckdb', 'summary.json'];

/**
 * Check (and with `clear`, empty) the output folder or `s3://` prefix: semdedup's previous
 * entries are removed; anything else there is left alone (so is a partial run kept inside it).
 */
export async function prepareOutputDir(outputDir: string, clear: boolean, log: Logger, storage?: StorageOptions): Promise<void> {
  if (!isRemotePath(outputDir)) await mkdir(outputDir, { recursive: true });
  const store = storageFor(outputDir, storage);
  const existing = (await store.listNames(outputDir)).filter((e) => (OUTPUT_ENTRIES.includes(e) || e.startsWith('.semdedup-')) && e !== PARTIAL_IN_OUTPUT);
  if (existing.length === 0) return;
  if (!clear) throw new InputError(`output folder already holds results (${existing.join(', ')}); pass --clear-output to replace them`, { context: { file: outputDir } });
  log.info({ outputDir, removed: existing }, 'clearing previous output');
  await Promise.all(existing.map((e) => store.remove(joinPath(outputDir, e))));
}

/** Local folders where a run builds its outputs (`staging`) and keeps scratch files (`work`). */
export interface StagingDirs {
  readonly stagingDir: string;
  readonly workDir: string;
  /** Remove both (what was published is gone from staging already). */
  remove(): Promise<void>;
}

/**
 * The partial-run folder of `outputDir` (src/batch/partial-run.ts), fresh: a leftover one is
 * discarded. `run` uses `openPartialRun` itself to resume.
 */
export async function createStagingDirs(outputDir: string, log: Logger): Promise<StagingDirs> {
  const partial = await openPartialRun(outputDir, { resume: false, identity: null, logger: log });
  return { stagingDir: partial.stagingDir, workDir: partial.workDir, remove: () => partial.remove() };
}

/**
 * Publish the finished output; summary.json marks completion. Local: summary.json is written
 * into staging, then, when the output folder is empty (the usual case: new, or cleared), the
 * staging folder is renamed onto it — one rename, so a reader (or a crash) sees nothing or
 * everything. When the output folder holds other files, or staging is inside it, entries are
 * moved one by one and summary.json last. For an `s3://` output every entry is uploaded, then
 * summary.json: a reader that waits for summary.json never sees a partial result.
 * `beforeRename` runs just before the first change to the output (a test kill point).
 */
export async function publish(stagingDir: string, outputDir: string, summary: object, storage?: StorageOptions, beforeRename?: () => void): Promise<void> {
  const text = JSON.stringify(summary, null, 2) + '\n';
  const summaryFile = join(stagingDir, 'summary.json');
  await writeFileDurably(summaryFile, text);
  beforeRename?.();
  if (isRemotePath(outputDir)) {
    const store = storageFor(outputDir, storage);
    for (const entry of await readdir(stagingDir)) if (entry !== 'summary.json') await store.upload(join(stagingDir, entry), joinPath(outputDir, entry));
    await store.upload(summaryFile, joinPath(outputDir, 'summary.json'));
    return;
  }
  if (await renameOntoEmptyFolder(stagingDir, outputDir)) return;
  for (const entry of await readdir(stagingDir)) if (entry !== 'summary.json') await rename(join(stagingDir, entry), join(outputDir, entry));
  await syncDir(outputDir);
  await rename(summaryFile, join(outputDir, 'summary.json'));
  await syncDir(outputDir);
}

/** rename(2) replaces an empty folder atomically; false (nothing moved) when that cannot apply. */
async function renameOntoEmptyFolder(stagingDir: string, outputDir: string): Promise<boolean> {
  if (isInside(stagingDir, outputDir)) return false;
  const st = await lstat(outputDir).catch(() => null);
  if (st && (!st.isDirectory() || (await readdir(outputDir)).length > 0)) return false;
  try {
    await rename(stagingDir, outputDir);
  } catch (err) {
    // Something appeared in the output folder meanwhile, or another file system: move entries.
    if (['ENOTEMPTY', 'EEXIST', 'EXDEV', 'EBUSY', 'EPERM'].includes((err as NodeJS.ErrnoException).code ?? '')) return false;
    throw err;
  }
  await syncDir(dirname(outputDir));
  return true;
}

/** The config as written to summary.json and --json: storage credentials redacted. */
export function configForSummary<C extends { storageOptions?: StorageOptions }>(config: C): C {
  return config.storageOptions ? { ...config, storageOptions: redactStorageOptions(config.storageOptions) } : config;
}

/**
 * What `replay` does first: clear (or refuse) the output, make the staging folders,
 * create the kernel, and remove partial outputs on SIGTERM/SIGINT.
 */
export async function startOutputJob(
  config: { output: string; clearOutput: boolean; backend: BackendName; storageOptions?: StorageOptions },
  logger: Logger,
  what: string,
): Promise<{ outputDir: string; staging: StagingDirs; kernel: SimilarityKernel; releaseSignals: () => void }> {
  const outputDir = isRemotePath(config.output) ? config.output : resolve(config.output);
  const staging = await createStagingDirs(outputDir, logger);
  try {
    await prepareOutputDir(outputDir, config.clearOutput, logger, config.storageOptions);
  } catch (err) {
    await staging.remove();
    throw err;
  }
  const kernel = await createKernel(config.backend, { warn: (msg) => logger.warn(msg) });
  const releaseSignals = onTerminate(logger, what, () => staging.remove());
  return { outputDir, staging, kernel, releaseSignals };
}

/** `semdedup run`: the batch workflow from inputs to the NeMo output layout. */
export async function runBatch(config: RunConfig, options: { logger: Logger; progress?: Progress }): Promise<RunSummary> {
  const { logger } = options;
  const started = performance.now();
  const outputDir = isRemotePath(config.output) ? config.output : resolve(config.output);
  // Before the output is cleared: a refused --resume leaves everything as it was.
  const identity = await runIdentity(config, await resolveInputFiles(config.input, config.storageOptions));
  const partial = await openPartialRun(outputDir, { resume: config.resume, identity, logger });
  let kernel: SimilarityKernel;
  try {
    await prepareOutputDir(outputDir, config.clearOutput, logger, config.storageOptions);
    kernel = await createKernel(config.backend, { warn: (msg) => logger.warn(msg) });
  } catch (err) {
    await (partial.resumedFrom ? partial.keep() : partial.remove());
    throw err;
  }
  const releaseSignals = onTerminate(logger, 'run', () => keepOrRemove(partial, logger));
  const { stagingDir, workDir } = partial;
  const killPoints = killPointsFromEnv(options.progress ?? createProgress());
  const resumeStats: ResumeStats = { clusters_skipped: 0, kmeans_reused: false, assign_reused: false };
  const ctx: BatchContext = {
    config,
    kernel,
    progress: killPoints.progress,
    rankSpec: { whichToKeep: config.whichToKeep, distanceMetric: config.distanceMetric, ranking: config.ranking, seed: config.seed },
    outputDir,
    stagingDir,
    workDir,
    store: null,
    files: [],
    idType: 'string',
    metadataTypes: {},
    dim: 0,
    rows: 0,
    rejectedRows: 0,
    embeddings: null,
    centroids: null,
    clusters: 0,
    kmeans: null,
    clusterSizes: [],
    duplicates: null,
    pairsCompared: 0,
    probe: null,
    timings: {},
  };
  let ok = false;
  try {
    ctx.store = await Store.open(join(stagingDir, 'semdedup.duckdb'));
    logger.info({ backend: kernel.name, kernel: kernel.description, output: outputDir, resumed: partial.resumedFrom !== null }, 'run started');
    await runTopology(resumableBatchTopology(batchTopology, partial, resumeStats), ctx, logger);
    ctx.store.close();
    ctx.store = null;
    ctx.timings.total = Math.round(performance.now() - started) / 1000;
    const summary: RunSummary = {
      rows: ctx.rows,
      clusters: ctx.clusters,
      duplicates: ctx.duplicates,
      rejected_rows: ctx.rejectedRows,
      backend: kernel.name,
      backend_description: kernel.description,
      pairs_compared: ctx.pairsCompared,
      kmeans: ctx.kmeans,
      input_files: ctx.files.length,
      timings: ctx.timings,
      config: configForSummary(config),
      ...(ctx.probe ? { probe: ctx.probe } : {}),
      ...(partial.resumedFrom ? { resumed: resumeStats } : {}),
    };
    await publish(stagingDir, outputDir, summary, config.storageOptions, () => killPoints.at('before-publish'));
    killPoints.at('after-publish');
    ok = true;
    return summary;
  } finally {
    releaseSignals();
    ctx.store?.close();
    await kernel.close();
    // Published entries were moved out. After a failure past k-means the partial run is kept
    // for --resume; before, there is nothing worth keeping.
    if (ok) await partial.remove();
    else await keepOrRemove(partial, logger);
  }
}

/** After an interruption or a failure: keep the partial run when it holds finished stages. */
async function keepOrRemove(partial: PartialRun, logger: Logger): Promise<void> {
  if (partial.hasProgress()) {
    await partial.keep();
    logger.info({ partial: partial.root }, 'nothing published; the finished stages are kept: the same command with --resume continues from them');
  } else {
    await partial.remove();
  }
}
