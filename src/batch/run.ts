import { mkdir, mkdtemp, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { batchTopology } from '../../topologies/batch.js';
import { createKernel } from '../kernels/index.js';
import type { BackendName, SimilarityKernel } from '../kernels/types.js';
import type { Logger } from '../runtime/logging.js';
import { createProgress, type Progress } from '../runtime/progress.js';
import { runTopology } from '../runtime/runner.js';
import { onTerminate } from '../runtime/shutdown.js';
import type { RunConfig } from '../shared/config.js';
import { InputError } from '../shared/errors.js';
import { isRemotePath, joinPath, redactStorageOptions, storageFor, type StorageOptions } from '../storage/index.js';
import { Store } from '../store/index.js';
import type { RecallResult } from '../recall/index.js';
import type { BatchContext, ProbeStats } from './context.js';

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
}

/** Names semdedup writes into an output folder; only these are cleared or published. */
export const OUTPUT_ENTRIES = ['kmeans_results', 'kmeans_centroids.npy', 'pairwise_results', 'duplicates', 'rejected', 'semdedup.duckdb', 'summary.json'];

/**
 * Check (and with `clear`, empty) the output folder or `s3://` prefix: semdedup's previous
 * entries are removed; anything else there is left alone.
 */
export async function prepareOutputDir(outputDir: string, clear: boolean, log: Logger, storage?: StorageOptions): Promise<void> {
  if (!isRemotePath(outputDir)) await mkdir(outputDir, { recursive: true });
  const store = storageFor(outputDir, storage);
  const existing = (await store.listNames(outputDir)).filter((e) => OUTPUT_ENTRIES.includes(e) || e.startsWith('.semdedup-'));
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
 * Inside a local output folder, so publishing is a rename on the same file system; for an
 * `s3://` output, in the OS temp folder, from which `publish` uploads.
 */
export async function createStagingDirs(outputDir: string): Promise<StagingDirs> {
  const root = isRemotePath(outputDir) ? await mkdtemp(join(tmpdir(), 'semdedup-')) : undefined;
  const stagingDir = root ? join(root, 'staging') : join(outputDir, `.semdedup-staging-${process.pid}`);
  const workDir = root ? join(root, 'work') : join(outputDir, `.semdedup-work-${process.pid}`);
  await mkdir(stagingDir, { recursive: true });
  await mkdir(workDir, { recursive: true });
  return {
    stagingDir,
    workDir,
    async remove() {
      await rm(workDir, { recursive: true, force: true });
      await rm(stagingDir, { recursive: true, force: true });
      if (root) await rm(root, { recursive: true, force: true });
    },
  };
}

/**
 * Move every finished output from staging into place; summary.json goes last (it marks
 * completion). For an `s3://` output every entry is uploaded, then summary.json: a reader that
 * waits for summary.json never sees a partial result.
 */
export async function publish(stagingDir: string, outputDir: string, summary: object, storage?: StorageOptions): Promise<void> {
  const text = JSON.stringify(summary, null, 2) + '\n';
  if (isRemotePath(outputDir)) {
    const store = storageFor(outputDir, storage);
    for (const entry of await readdir(stagingDir)) await store.upload(join(stagingDir, entry), joinPath(outputDir, entry));
    const summaryFile = join(stagingDir, 'summary.json');
    await writeFile(summaryFile, text);
    await store.upload(summaryFile, joinPath(outputDir, 'summary.json'));
    return;
  }
  for (const entry of await readdir(stagingDir)) await rename(join(stagingDir, entry), join(outputDir, entry));
  const tmp = join(outputDir, '.semdedup-summary.json.tmp');
  await writeFile(tmp, text);
  await rename(tmp, join(outputDir, 'summary.json'));
}

/** The config as written to summary.json and --json: storage credentials redacted. */
export function configForSummary<C extends { storageOptions?: StorageOptions }>(config: C): C {
  return config.storageOptions ? { ...config, storageOptions: redactStorageOptions(config.storageOptions) } : config;
}

/**
 * What `run` and `replay` do first: clear (or refuse) the output, make the staging folders,
 * create the kernel, and remove partial outputs on SIGTERM/SIGINT.
 */
export async function startOutputJob(
  config: { output: string; clearOutput: boolean; backend: BackendName; storageOptions?: StorageOptions },
  logger: Logger,
  what: string,
): Promise<{ outputDir: string; staging: StagingDirs; kernel: SimilarityKernel; releaseSignals: () => void }> {
  const outputDir = isRemotePath(config.output) ? config.output : resolve(config.output);
  await prepareOutputDir(outputDir, config.clearOutput, logger, config.storageOptions);
  const staging = await createStagingDirs(outputDir);
  const kernel = await createKernel(config.backend, { warn: (msg) => logger.warn(msg) });
  const releaseSignals = onTerminate(logger, what, () => staging.remove());
  return { outputDir, staging, kernel, releaseSignals };
}

/** `semdedup run`: the batch workflow from inputs to the NeMo output layout. */
export async function runBatch(config: RunConfig, options: { logger: Logger; progress?: Progress }): Promise<RunSummary> {
  const { logger } = options;
  const started = performance.now();
  const { outputDir, staging, kernel, releaseSignals } = await startOutputJob(config, logger, 'run');
  const { stagingDir, workDir } = staging;
  const ctx: BatchContext = {
    config,
    kernel,
    progress: options.progress ?? createProgress(),
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
    logger.info({ backend: kernel.name, kernel: kernel.description, output: outputDir }, 'run started');
    await runTopology(batchTopology, ctx, logger);
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
    };
    await publish(stagingDir, outputDir, summary, config.storageOptions);
    ok = true;
    return summary;
  } finally {
    releaseSignals();
    ctx.store?.close();
    await kernel.close();
    // Published entries were moved out; after a failure this drops the partial outputs.
    await staging.remove();
    if (!ok) logger.debug('run failed; partial outputs removed');
  }
}
