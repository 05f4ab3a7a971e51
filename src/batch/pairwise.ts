import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { pairwiseClusterScores } from '../pairwise/index.js';
import type { Logger } from '../runtime/logging.js';
import type { MetadataValue } from '../shared/types.js';
import { writeKmeansResults, writePairwiseResults } from '../sinks/nemo-layout.js';
import type { BatchContext } from './context.js';

/**
 * For each cluster in rank order: write kmeans_results/centroid=K (the clips with their
 * normalized embeddings and distances) and pairwise_results/cluster_K.parquet (max similarity to
 * any clip ranked before, NeMo semantics), one cluster in memory at a time.
 */
export async function pairwiseAllClusters(ctx: BatchContext, log: Logger): Promise<void> {
  const source = ctx.embeddings!;
  const metaNames = Object.keys(ctx.metadataTypes);
  const types = { idType: ctx.idType, metadataTypes: ctx.metadataTypes };
  await mkdir(join(ctx.stagingDir, 'pairwise_results'), { recursive: true });
  ctx.progress.start('pairwise', ctx.rows);
  for (let k = 0; k < ctx.clusters; k++) {
    if (ctx.clusterSizes[k] === 0) continue;
    const cols = await ctx.store!.columns(`SELECT * FROM clips WHERE centroid = ${k} ORDER BY rank_pos`);
    const rows = Int32Array.from(cols.row as number[]);
    const ids = (cols.id as unknown[]).map((v) => String(v));
    const embeddings = await source.readRows(rows);
    const metadata: Record<string, MetadataValue[]> = {};
    for (const name of metaNames) metadata[name] = cols[name] as MetadataValue[];
    await writeKmeansResults(ctx.stagingDir, {
      centroid: k,
      ids,
      embeddings,
      dim: ctx.dim,
      metadata,
      l2DistToCent: Float32Array.from(cols.l2_dist_to_cent as number[]),
      cosineDistToCent: Float32Array.from(cols.cosine_dist_to_cent as number[]),
    }, types);
    const { score, maxIndex, pairs } = await pairwiseClusterScores(ctx.kernel, embeddings, ctx.dim, ctx.config.pairwiseBatchSize);
    ctx.pairsCompared += pairs;
    await writePairwiseResults(ctx.stagingDir, k, ids, Array.from(maxIndex, (i) => ids[i]!), score, types);
    ctx.progress.increment(rows.length);
  }
  ctx.progress.stop();
  log.info({ clusters: ctx.clusterSizes.filter((n) => n > 0).length, pairs: ctx.pairsCompared, backend: ctx.kernel.name }, 'pairwise done');
}
