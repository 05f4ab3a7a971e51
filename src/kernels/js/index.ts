import { PairCollector } from '../pair-collector.js';
import type { NearestCentroidResult, PairsAboveResult, RankedMaxInput, RankedMaxResult, SimilarityKernel } from '../types.js';

/** Let signals and I/O run between kernel calls (a synchronous backend would starve them). */
const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Plain TypeScript reference backend: readable, exact float32 products summed in float64. */
export function createJsKernel(): SimilarityKernel {
  return {
    name: 'js',
    description: 'plain TypeScript reference',
    async rankedMax(input) {
      await yieldToEventLoop();
      return rankedMaxJs(input);
    },
    async nearestCentroid(x, centroids, dim) {
      await yieldToEventLoop();
      return nearestCentroidJs(x, centroids, dim);
    },
    async similarityPairsAbove(queries, candidates, dim, threshold) {
      await yieldToEventLoop();
      return similarityPairsAboveJs(queries, candidates, dim, threshold);
    },
    async close() {},
  };
}

export function rankedMaxJs({ queries, queryPos, candidates, candidatePos, dim }: RankedMaxInput): RankedMaxResult {
  const m = queryPos.length;
  const n = candidatePos.length;
  const score = new Float32Array(m).fill(-Infinity);
  const index = new Int32Array(m).fill(-1);
  for (let q = 0; q < m; q++) {
    const qo = q * dim;
    const limit = queryPos[q]!;
    let best = -Infinity;
    let bestIdx = -1;
    // Candidates are sorted by position, so stop at the first one not ranked before the query.
    for (let c = 0; c < n && candidatePos[c]! < limit; c++) {
      const co = c * dim;
      let dot = 0;
      for (let k = 0; k < dim; k++) dot += queries[qo + k]! * candidates[co + k]!;
      const s = Math.fround(dot);
      if (s > best) {
        best = s;
        bestIdx = c;
      }
    }
    score[q] = best;
    index[q] = bestIdx;
  }
  return { score, index };
}

export function nearestCentroidJs(x: Float32Array, centroids: Float32Array, dim: number): NearestCentroidResult {
  const n = x.length / dim;
  const k = centroids.length / dim;
  const index = new Int32Array(n);
  const dist2 = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const xo = i * dim;
    let best = Infinity;
    let bestIdx = 0;
    for (let c = 0; c < k; c++) {
      const co = c * dim;
      let d2 = 0;
      for (let j = 0; j < dim; j++) {
        const diff = x[xo + j]! - centroids[co + j]!;
        d2 += diff * diff;
      }
      if (d2 < best) {
        best = d2;
        bestIdx = c;
      }
    }
    index[i] = bestIdx;
    dist2[i] = best;
  }
  return { index, dist2 };
}

/** Every (query, candidate) with fround(q·c) >= threshold, in (query, candidate) order. */
export function similarityPairsAboveJs(queries: Float32Array, candidates: Float32Array, dim: number, threshold: number): PairsAboveResult {
  const m = Math.floor(queries.length / dim);
  const n = Math.floor(candidates.length / dim);
  const out = new PairCollector();
  for (let q = 0; q < m; q++) {
    const qo = q * dim;
    for (let c = 0; c < n; c++) {
      const co = c * dim;
      let dot = 0;
      for (let k = 0; k < dim; k++) dot += queries[qo + k]! * candidates[co + k]!;
      const s = Math.fround(dot);
      if (s >= threshold) out.push(q, c, s);
    }
  }
  return out.finish(true);
}
