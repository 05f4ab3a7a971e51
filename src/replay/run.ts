import { join } from 'node:path';
import { replayTopology } from '../../topologies/replay.js';
import { configForSummary, publish, startOutputJob } from '../batch/run.js';
import type { Logger } from '../runtime/logging.js';
import { createProgress, type Progress } from '../runtime/progress.js';
import { runTopology } from '../runtime/runner.js';
import type { ReplayConfig } from '../shared/config.js';
import { Store } from '../store/index.js';
import type { ReplayContext } from './context.js';

export interface ReplaySummary {
  mode: 'replay';
  rows: number;
  clips_in_state: number;
  clusters: number;
  duplicates: number | null;
  rejected_rows: number;
  verdicts_published: number;
  /** Cluster states read from / evicted to the state's DuckDB file under --state-memory-mb. */
  state_loads: number;
  state_evictions: number;
  backend: string;
  backend_description: string;
  input_files: number;
  timings: Record<string, number>;
  config: ReplayConfig;
}

/** `semdedup replay`: Parquet history through the streaming core, NeMo layout out. */
export async function runReplay(config: ReplayConfig, options: { logger: Logger; progress?: Progress }): Promise<ReplaySummary> {
  const { logger } = options;
  const started = performance.now();
  const { outputDir, staging, kernel, releaseSignals } = await startOutputJob(config, logger, 'replay');
  const { stagingDir, workDir } = staging;
  const ctx: ReplayContext = {
    config,
    kernel,
    progress: options.progress ?? createProgress(),
    outputDir,
    stagingDir,
    workDir,
    centroids: null,
    clusters: 0,
    dim: 0,
    engine: null,
    stateStore: null,
    store: null,
    sink: null,
    files: [],
    idType: 'string',
    metadataTypes: {},
    rows: 0,
    rejectedRows: 0,
    verdictsPublished: 0,
    duplicates: null,
    timings: {},
  };
  try {
    ctx.store = await Store.open(join(stagingDir, 'semdedup.duckdb'));
    await runTopology(replayTopology, ctx, logger);
    ctx.store.close();
    ctx.store = null;
    ctx.timings.total = Math.round(performance.now() - started) / 1000;
    const summary: ReplaySummary = {
      mode: 'replay',
      rows: ctx.rows,
      clips_in_state: ctx.engine!.size,
      clusters: ctx.clusters,
      duplicates: ctx.duplicates,
      rejected_rows: ctx.rejectedRows,
      verdicts_published: ctx.verdictsPublished,
      state_loads: ctx.engine!.statesLoaded,
      state_evictions: ctx.engine!.statesEvicted,
      backend: kernel.name,
      backend_description: kernel.description,
      input_files: ctx.files.length,
      timings: ctx.timings,
      config: configForSummary(config),
    };
    await publish(stagingDir, outputDir, summary, config.storageOptions);
    return summary;
  } finally {
    releaseSignals();
    ctx.store?.close();
    ctx.stateStore?.close();
    await ctx.sink?.close();
    await kernel.close();
    await staging.remove();
  }
}
