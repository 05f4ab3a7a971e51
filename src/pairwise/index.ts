import { applyNothingBeforeRule, pairwiseRankedBlock } from '../kernels/index.js';
import type { SimilarityKernel } from '../kernels/types.js';

export interface ClusterScores {
  /** Per clip in rank order: max cosine similarity to a clip ranked before it (NeMo rules). */
  readonly score: Float32Array;
  /** Per clip: rank position of that clip (itself when nothing ranked before is positive). */
  readonly maxIndex: Int32Array;
  /** Pairs actually compared (the triangle, not the square). */
  readonly pairs: number;
}

/**
 * NeMo's pairwise for one cluster whose unit-length embeddings (n × dim) are in rank order,
 * in column blocks of `batchSize`: each block is compared only with the rows before its end.
 */
export async function pairwiseClusterScores(kernel: SimilarityKernel, ranked: Float32Array, dim: number, batchSize: number): Promise<ClusterScores> {
  const n = ranked.length / dim;
  const score = new Float32Array(n);
  const maxIndex = new Int32Array(n);
  let pairs = 0;
  for (let c0 = 0; c0 < n; c0 += batchSize) {
    const c1 = Math.min(n, c0 + batchSize);
    const block = await pairwiseRankedBlock(kernel, ranked, dim, c0, c1);
    pairs += (c1 - c0) * Math.max(c1 - 1, 0);
    for (let j = c0; j < c1; j++) {
      const r = applyNothingBeforeRule(block.score[j - c0]!, block.index[j - c0]!);
      score[j] = r.score;
      maxIndex[j] = r.index < 0 ? j : r.index;
    }
  }
  return { score, maxIndex, pairs };
}
