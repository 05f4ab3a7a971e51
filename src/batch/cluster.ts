import { join } from 'node:path';
import { assignToCentroids, fitKMeans, probedCentroid, secondNearestCentroids } from '../assign/index.js';
import { readCentroids } from '../assign/centroids.js';
import { writeNpy } from '../assign/npy.js';
import type { Logger } from '../runtime/logging.js';
import { InputError } from '../shared/errors.js';
import { writeParquetFast } from '../sinks/plain-parquet.js';
import { rankOrderBySql } from '../rank/index.js';
import { sqlString } from '../store/index.js';
import type { BatchContext } from './context.js';

/** Work files DuckDB reads once in this run: no fsync (removed with the work folder, even after a crash). */
const SCRATCH = { durable: false } as const;

/** Load `--centroids` (NeMo's kmeans_centroids.npy) or fit k-means on the spilled embeddings. */
export async function fitOrLoadCentroids(ctx: BatchContext, log: Logger): Promise<void> {
  const { config } = ctx;
  if (config.centroids) {
    const { centroids, k, path } = await readCentroids(config.centroids, ctx.dim, config.storageOptions);
    if (config.nClusters !== undefined && config.nClusters !== k) {
      throw new InputError(`--n-clusters ${config.nClusters} disagrees with the ${k} centroids in the file`, { context: { file: path, field: 'n-clusters' } });
    }
    ctx.centroids = centroids;
    ctx.clusters = k;
    log.info({ k, file: config.centroids }, 'centroids loaded; k-means skipped');
  } else {
    if (config.nClusters === undefined) throw new InputError('--n-clusters is required (or give --centroids)', { context: { field: 'n-clusters' } });
    const source = ctx.embeddings!;
    ctx.progress.start('k-means', config.maxIter * config.nInit);
    const fit = await fitKMeans(source, {
      k: config.nClusters,
      init: config.init,
      maxIter: config.maxIter,
      tol: config.tol,
      seed: config.seed,
      nInit: config.nInit,
      fitFraction: config.fitFraction,
      kernel: ctx.kernel,
      onProgress: (iter: number, shift: number, inertia: number) => {
        ctx.progress.increment();
        log.debug({ iter, shift, inertia }, 'k-means iteration');
      },
    });
    ctx.progress.stop();
    ctx.centroids = fit.centroids;
    ctx.clusters = config.nClusters;
    ctx.kmeans = { iterations: fit.iterations, inertia: fit.inertia, converged: fit.converged };
    log.info({ k: ctx.clusters, iterations: fit.iterations, inertia: fit.inertia, converged: fit.converged }, 'k-means fitted');
  }
  await writeNpy(join(ctx.stagingDir, 'kmeans_centroids.npy'), ctx.centroids, [ctx.clusters, ctx.dim]);
  const centroidsParquet = join(ctx.workDir, 'centroids.parquet');
  await writeParquetFast(centroidsParquet, [
    { name: 'centroid', type: 'int32', values: Int32Array.from({ length: ctx.clusters }, (_, i) => i) },
    { name: 'embedding', type: 'fixed-list-float32', values: ctx.centroids, listSize: ctx.dim },
  ], SCRATCH);
  await ctx.store!.run(`CREATE OR REPLACE TABLE centroids AS SELECT * FROM read_parquet(${sqlString(centroidsParquet)})`);
}

/**
 * Assign every clip to its nearest centroid with its distances, then materialize the `clips`
 * table in DuckDB (ids, metadata, rank hash, centroid, distances) from the Parquet parts.
 */
export async function assignClips(ctx: BatchContext, log: Logger): Promise<void> {
  const source = ctx.embeddings!;
  const centroid = new Int32Array(ctx.rows);
  const l2 = new Float32Array(ctx.rows);
  const cos = new Float32Array(ctx.rows);
  // -1: not probed (every clip with --probe 1). See `probedCentroid` for the rule.
  const probe = new Int32Array(ctx.rows).fill(-1);
  const probing = ctx.config.probe > 1;
  ctx.progress.start('assign', ctx.rows);
  await source.forEachChunk(async (chunk, firstRow) => {
    const a = await assignToCentroids(chunk, ctx.centroids!, ctx.dim, ctx.kernel);
    centroid.set(a.centroid, firstRow);
    l2.set(a.l2DistToCent, firstRow);
    cos.set(a.cosineDistToCent, firstRow);
    if (probing) {
      const second = await secondNearestCentroids(chunk, ctx.centroids!, ctx.dim, a.centroid, ctx.kernel);
      for (let r = 0; r < second.centroid.length; r++) {
        probe[firstRow + r] = probedCentroid(second.centroid[r]!, second.l2DistToCent[r]!, a.l2DistToCent[r]!, ctx.config.probeMargin);
      }
    }
    ctx.progress.increment(a.centroid.length);
  });
  ctx.progress.stop();
  const assignPath = join(ctx.workDir, 'assign.parquet');
  await writeParquetFast(assignPath, [
    { name: 'row', type: 'int32', values: Int32Array.from({ length: ctx.rows }, (_, i) => i) },
    { name: 'centroid', type: 'int32', values: centroid },
    { name: 'l2_dist_to_cent', type: 'float32', values: l2 },
    { name: 'cosine_dist_to_cent', type: 'float32', values: cos },
    { name: 'probe_centroid', type: 'int32', values: probe },
  ], SCRATCH);
  for (const { column } of ctx.rankSpec.ranking) {
    if (!(column in ctx.metadataTypes)) {
      throw new InputError(`ranking column "${column}" is not among the metadata fields (${Object.keys(ctx.metadataTypes).join(', ') || 'none'}); add it to --metadata-fields`, { context: { field: 'ranking' } });
    }
  }
  // Ranking is an ORDER BY: rank_pos is each clip's position in its cluster, and the table is
  // stored in (centroid, rank_pos) order so reading one cluster is a contiguous scan. global_pos
  // is the same ORDER BY over all clips: multi-probe ranks a cluster's own and probed-in clips
  // together by it (within one cluster it orders clips exactly as rank_pos does).
  const orderBy = rankOrderBySql(ctx.rankSpec);
  const rowsGlob = join(ctx.workDir, 'rows', '*.parquet');
  await ctx.store!.run(
    `CREATE OR REPLACE TABLE clips AS
       SELECT r.*, a.centroid, a.l2_dist_to_cent, a.cosine_dist_to_cent,
              (row_number() OVER (PARTITION BY a.centroid ORDER BY ${orderBy}) - 1)::INTEGER AS rank_pos,
              (row_number() OVER (ORDER BY ${orderBy}) - 1)::INTEGER AS global_pos,
              nullif(a.probe_centroid, -1) AS probe_centroid
       FROM read_parquet(${sqlString(rowsGlob)}) r JOIN read_parquet(${sqlString(assignPath)}) a USING (row)
       ORDER BY a.centroid, rank_pos`,
  );
  const sizes = await ctx.store!.rows('SELECT centroid, count(*)::INTEGER AS n FROM clips GROUP BY centroid');
  ctx.clusterSizes = new Array<number>(ctx.clusters).fill(0);
  for (const s of sizes) ctx.clusterSizes[s.centroid as number] = s.n as number;
  const nonEmpty = ctx.clusterSizes.filter((n) => n > 0).length;
  log.info({ clusters: ctx.clusters, nonEmpty, largest: Math.max(...ctx.clusterSizes) }, 'clips assigned');
}

