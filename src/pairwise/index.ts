import { applyNothingBeforeRule, pairwiseRankedBlock } from '../kernels/index.js';
import type { RankedMaxResult, SimilarityKernel } from '../kernels/types.js';

export { ProbedScores } from './probe.js';

export interface ClusterScores {
  /** Per clip in rank order: max cosine similarity to a clip ranked before it (NeMo rules). */
  readonly score: Float32Array;
  /** Per clip: rank position of that clip (itself when nothing ranked before is positive). */
  readonly maxIndex: Int32Array;
  /** Pairs actually compared (the triangle, not the square). */
  readonly pairs: number;
}

export interface RankedSetMax extends RankedMaxResult {
  /** Pairs actually compared (the triangle, not the square). */
  readonly pairs: number;
}

/** Pairs `rankedSetMax` compares for a set of `n` clips in blocks of `batchSize`. */
export function rankedPairsCompared(n: number, batchSize: number): number {
  let pairs = 0;
  for (let c0 = 0; c0 < n; c0 += batchSize) {
    const c1 = Math.min(n, c0 + batchSize);
    pairs += (c1 - c0) * Math.max(c1 - 1, 0);
  }
  return pairs;
}

/**
 * Raw ranked max over a set of unit-length embeddings (n × dim) in rank order, in column blocks
 * of `batchSize`: per clip, the max similarity to a clip before it and the first such clip
 * (-Infinity and -1 for the first clip). NeMo's nothing-before rule is not applied yet, so results
 * of several sets can still be combined (multi-probe).
 */
export async function rankedSetMax(kernel: SimilarityKernel, ranked: Float32Array, dim: number, batchSize: number): Promise<RankedSetMax> {
  const n = ranked.length / dim;
  const score = new Float32Array(n);
  const index = new Int32Array(n);
  for (let c0 = 0; c0 < n; c0 += batchSize) {
    const c1 = Math.min(n, c0 + batchSize);
    const block = await pairwiseRankedBlock(kernel, ranked, dim, c0, c1);
    score.set(block.score, c0);
    index.set(block.index, c0);
  }
  return { score, index, pairs: rankedPairsCompared(n, batchSize) };
}

/**
 * NeMo's pairwise for one cluster whose unit-length embeddings (n × dim) are in rank order,
 * in column blocks of `batchSize`: each block is compared only with the rows before its end.
 */
export async function pairwiseClusterScores(kernel: SimilarityKernel, ranked: Float32Array, dim: number, batchSize: number): Promise<ClusterScores> {
  const raw = await rankedSetMax(kernel, ranked, dim, batchSize);
  const n = raw.score.length;
  const score = new Float32Array(n);
  const maxIndex = new Int32Array(n);
  for (let j = 0; j < n; j++) {
    const r = applyNothingBeforeRule(raw.score[j]!, raw.index[j]!);
    score[j] = r.score;
    maxIndex[j] = r.index < 0 ? j : r.index;
  }
  return { score, maxIndex, pairs: raw.pairs };
}
