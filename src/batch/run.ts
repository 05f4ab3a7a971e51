import { mkdir, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { batchTopology } from '../../topologies/batch.js';
import { createKernel } from '../kernels/index.js';
import type { Logger } from '../runtime/logging.js';
import { createProgress, type Progress } from '../runtime/progress.js';
import { runTopology } from '../runtime/runner.js';
import { onTerminate } from '../runtime/shutdown.js';
import type { RunConfig } from '../shared/config.js';
import { InputError } from '../shared/errors.js';
import { Store } from '../store/index.js';
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
  recall?: unknown;
}

/** Names semdedup writes into an output folder; only these are cleared or published. */
export const OUTPUT_ENTRIES = ['kmeans_results', 'kmeans_centroids.npy', 'pairwise_results', 'duplicates', 'rejected', 'semdedup.duckdb', 'summary.json'];

export async function prepareOutputDir(outputDir: string, clear: boolean, log: Logger): Promise<void> {
  await mkdir(outputDir, { recursive: true });
  const existing = (await readdir(outputDir)).filter((e) => OUTPUT_ENTRIES.includes(e) || e.startsWith('.semdedup-'));
  if (existing.length === 0) return;
  if (!clear) throw new InputError(`output folder already holds results (${existing.join(', ')}); pass --clear-output to replace them`, { context: { file: outputDir } });
  log.info({ outputDir, removed: existing }, 'clearing previous output');
  await Promise.all(existing.map((e) => rm(join(outputDir, e), { recursive: true, force: true })));
}

/** Move every finished output from staging into place; summary.json goes last (it marks completion). */
export async function publish(stagingDir: string, outputDir: string, summary: object): Promise<void> {
  for (const entry of await readdir(stagingDir)) await rename(join(stagingDir, entry), join(outputDir, entry));
  const tmp = join(outputDir, '.semdedup-summary.json.tmp');
  await writeFile(tmp, JSON.stringify(summary, null, 2) + '\n');
  await rename(tmp, join(outputDir, 'summary.json'));
}

/** `semdedup run`: the batch workflow from inputs to the NeMo output layout. */
export async function runBatch(config: RunConfig, options: { logger: Logger; progress?: Progress }): Promise<RunSummary> {
  const { logger } = options;
  const started = performance.now();
  const outputDir = resolve(config.output);
  await prepareOutputDir(outputDir, config.clearOutput, logger);
  const stagingDir = join(outputDir, `.semdedup-staging-${process.pid}`);
  const workDir = join(outputDir, `.semdedup-work-${process.pid}`);
  await mkdir(stagingDir, { recursive: true });
  await mkdir(workDir, { recursive: true });
  const kernel = await createKernel(config.backend, { warn: (msg) => logger.warn(msg) });
  const releaseSignals = onTerminate(logger, 'run', async () => {
    await rm(workDir, { recursive: true, force: true });
    await rm(stagingDir, { recursive: true, force: true });
  });
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
      config,
      ...(ctx.probe ? { probe: ctx.probe } : {}),
    };
    await publish(stagingDir, outputDir, summary);
    ok = true;
    return summary;
  } finally {
    releaseSignals();
    ctx.store?.close();
    await kernel.close();
    await rm(workDir, { recursive: true, force: true });
    // Published entries were moved out; after a failure this drops the partial outputs.
    await rm(stagingDir, { recursive: true, force: true });
    if (!ok) logger.debug('run failed; partial outputs removed');
  }
}
