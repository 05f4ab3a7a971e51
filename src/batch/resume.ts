/**
 * `run --resume`: the batch topology with its k-means, assign and pairwise steps made resumable.
 * Step ids stay the same (logs, timings); what each wrapper records or reuses:
 *
 * - kmeans: after the step, progress.json records it (kmeans_centroids.npy is already fsynced and
 *   renamed into output/). Resumed: the centroids are loaded from that file, k-means is not fitted.
 * - assign: after the step, the `clips` table is checkpointed into semdedup.duckdb and recorded.
 *   Resumed (k-means reused too): the table is reused as it is, when it holds every row.
 * - pairwise: a cluster is finished when pairwise_results/cluster_K.parquet and
 *   kmeans_results/centroid=K/part-00000.parquet both hold its row count (each file is written
 *   to a temporary name, fsynced and renamed, so the files are the durable record: a list kept
 *   beside them could only disagree with them). Resumed: finished clusters are skipped.
 *
 * Ingest always runs again (it is deterministic; the normalized embeddings are needed and
 * validating the inputs again is cheap next to k-means and pairwise).
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { rankedPairsCompared } from '../pairwise/index.js';
import type { Progress } from '../runtime/progress.js';
import { defineTopology, step, type Topology } from '../runtime/runner.js';
import type { Logger } from '../runtime/logging.js';
import { sqlString } from '../store/index.js';
import type { BatchContext } from './context.js';
import type { PartialRun } from './partial-run.js';

/** What a resumed run reused, for summary.json's `resumed`. */
export interface ResumeStats {
  clusters_skipped: number;
  kmeans_reused: boolean;
  assign_reused: boolean;
}

type StepRun = (ctx: BatchContext, log: Logger) => Promise<void>;

/** `topology` with its kmeans, assign and pairwise steps recording progress and reusing it. */
export function resumableBatchTopology(topology: Topology<BatchContext>, partial: PartialRun, stats: ResumeStats): Topology<BatchContext> {
  const wrappers: Record<string, (inner: StepRun) => StepRun> = {
    kmeans: (inner) => (ctx, log) => kmeansResumable(inner, ctx, log, partial, stats),
    assign: (inner) => (ctx, log) => assignResumable(inner, ctx, log, partial, stats),
    pairwise: (inner) => (ctx, log) => pairwiseResumable(inner, ctx, log, stats),
  };
  return defineTopology(
    topology.name,
    topology.steps.map((s) => (wrappers[s.id] ? step(s.id, wrappers[s.id]!((ctx, log) => s.run(ctx, log))) : s)),
  );
}

async function kmeansResumable(inner: StepRun, ctx: BatchContext, log: Logger, partial: PartialRun, stats: ResumeStats): Promise<void> {
  const saved = partial.resumedFrom?.kmeans;
  if (saved) {
    // The k-means step with the partial run's centroids file as --centroids: loads, checks the
    // dimension, rewrites the same file and the centroids table, fits nothing.
    const view: BatchContext = { ...ctx, config: { ...ctx.config, centroids: join(ctx.stagingDir, 'kmeans_centroids.npy') } };
    try {
      await inner(view, log);
      ctx.centroids = view.centroids;
      ctx.clusters = view.clusters;
      ctx.kmeans = saved.stats;
      stats.kmeans_reused = true;
      log.info({ k: ctx.clusters }, 'k-means reused from the partial run');
      return;
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'the partial run\'s centroids are unusable; fitting k-means again');
    }
  }
  await inner(ctx, log);
  await partial.record({ kmeans: { stats: ctx.kmeans } });
}

async function assignResumable(inner: StepRun, ctx: BatchContext, log: Logger, partial: PartialRun, stats: ResumeStats): Promise<void> {
  if (stats.kmeans_reused && partial.resumedFrom?.assign) {
    const sizes = await clusterSizesOfClips(ctx);
    if (sizes) {
      ctx.clusterSizes = sizes;
      stats.assign_reused = true;
      log.info({ clusters: ctx.clusters, nonEmpty: sizes.filter((n) => n > 0).length }, 'clip assignment reused from the partial run');
      return;
    }
    log.warn('the partial run\'s clips table is unusable; assigning again');
  }
  // Files written from an earlier assignment do not count any more.
  await rm(join(ctx.stagingDir, 'pairwise_results'), { recursive: true, force: true });
  await rm(join(ctx.stagingDir, 'kmeans_results'), { recursive: true, force: true });
  await inner(ctx, log);
  await ctx.store!.run('CHECKPOINT');
  await partial.record({ assign: { rows: ctx.rows } });
}

/** Cluster sizes from an existing `clips` table, or null when it is missing or not this run's. */
async function clusterSizesOfClips(ctx: BatchContext): Promise<number[] | null> {
  try {
    const rows = await ctx.store!.rows('SELECT centroid, count(*)::INTEGER AS n FROM clips GROUP BY centroid');
    const sizes = new Array<number>(ctx.clusters).fill(0);
    let total = 0;
    for (const r of rows) {
      const k = r.centroid as number;
      if (!(k >= 0 && k < ctx.clusters)) return null;
      sizes[k] = r.n as number;
      total += r.n as number;
    }
    return total === ctx.rows ? sizes : null;
  } catch {
    return null;
  }
}

async function pairwiseResumable(inner: StepRun, ctx: BatchContext, log: Logger, stats: ResumeStats): Promise<void> {
  if (!stats.assign_reused) return inner(ctx, log);
  if (ctx.config.probe > 1) {
    // Pass 1 of --probe 2 folds every cluster into shared bests: no cluster is finished alone.
    log.info('--probe 2: pairwise runs again for every cluster');
    return inner(ctx, log);
  }
  const finished = await finishedClusters(ctx, log);
  if (finished.size === 0) return inner(ctx, log);
  const sizes = ctx.clusterSizes;
  // The pairwise step visits non-empty clusters only: finished ones are shown to it as empty.
  ctx.clusterSizes = sizes.map((n, k) => (finished.has(k) ? 0 : n));
  log.info({ skipped: finished.size, remaining: ctx.clusterSizes.filter((n) => n > 0).length }, 'clusters finished by the partial run are skipped');
  try {
    await inner(ctx, log);
  } finally {
    ctx.clusterSizes = sizes;
  }
  for (const k of finished) ctx.pairsCompared += rankedPairsCompared(sizes[k]!, ctx.config.pairwiseBatchSize);
  stats.clusters_skipped = finished.size;
}

/** Clusters whose pairwise_results and kmeans_results files are complete (hold every clip). */
async function finishedClusters(ctx: BatchContext, log: Logger): Promise<Set<number>> {
  const pairwiseGlob = join(ctx.stagingDir, 'pairwise_results', 'cluster_*.parquet');
  const kmeansGlob = join(ctx.stagingDir, 'kmeans_results', 'centroid=*', '*.parquet');
  const counts = async (sql: string): Promise<Map<number, number>> => {
    const rows = await ctx.store!.rows(sql);
    return new Map(rows.map((r) => [Number(r.k), Number(r.n)]));
  };
  let pairwise: Map<number, number>;
  let kmeans: Map<number, number>;
  try {
    pairwise = await counts(
      `SELECT regexp_extract(filename, 'cluster_([0-9]+)\\.parquet$', 1)::INTEGER AS k, count(*) AS n
       FROM read_parquet(${sqlString(pairwiseGlob)}, filename = true) GROUP BY ALL`,
    );
    kmeans = await counts(`SELECT centroid AS k, count(*) AS n FROM read_parquet(${sqlString(kmeansGlob)}, hive_partitioning = false) GROUP BY ALL`);
  } catch (err) {
    // No files yet (an empty glob is an error), or one unreadable: recompute every cluster.
    log.debug({ err: (err as Error).message }, 'no finished clusters found');
    return new Set();
  }
  const out = new Set<number>();
  ctx.clusterSizes.forEach((n, k) => {
    if (n > 0 && pairwise.get(k) === n && kmeans.get(k) === n) out.add(k);
  });
  return out;
}

/**
 * Test hook, honest by construction: `SEMDEDUP_TEST_KILL_AT=clusters:N` SIGKILLs this process once
 * N clusters' pairwise outputs are written (the pairwise step counts one progress increment per
 * finished cluster); `before-publish` / `after-publish` around the publishing rename.
 */
export function killPointsFromEnv(progress: Progress, env: NodeJS.ProcessEnv = process.env): { progress: Progress; at(point: string): void } {
  const spec = env.SEMDEDUP_TEST_KILL_AT ?? '';
  const kill = () => process.kill(process.pid, 'SIGKILL');
  const afterClusters = /^clusters:(\d+)$/.exec(spec);
  if (!afterClusters) return { progress, at: (point) => (point === spec ? kill() : undefined) };
  const limit = Number(afterClusters[1]);
  let phase = '';
  let clusters = 0;
  return {
    progress: {
      start(p, total) {
        phase = p;
        progress.start(p, total);
      },
      increment(by) {
        progress.increment(by);
        if (phase === 'pairwise' && ++clusters >= limit) kill();
      },
      stop: () => progress.stop(),
    },
    at: () => undefined,
  };
}
