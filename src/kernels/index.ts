import { InputError } from '../shared/errors.js';
import { createJsKernel, similarityPairsAboveJs } from './js/index.js';
import type { BackendName, PairsAboveResult, RankedMaxResult, SimilarityKernel } from './types.js';

export type * from './types.js';
export { createJsKernel } from './js/index.js';

/** Create the kernel for a backend name. `cpu` and `gpu` load lazily so `js` needs neither. */
export async function createKernel(backend: BackendName, options: { threads?: number; warn?: (msg: string) => void } = {}): Promise<SimilarityKernel> {
  switch (backend) {
    case 'js':
      return createJsKernel();
    case 'cpu': {
      const { createCpuKernel } = await import('./cpu/index.js');
      return withCpuPairsAbove(await createCpuKernel({ threads: options.threads }), options.threads);
    }
    case 'gpu': {
      const { createGpuKernel } = await import('./gpu/index.js');
      return withCpuPairsAbove(await createGpuKernel({ threads: options.threads, warn: options.warn }), options.threads);
    }
    default:
      throw new InputError(`unknown backend "${String(backend)}" (expected cpu, gpu or js)`, { context: { field: 'backend' } });
  }
}

/** Attach the cpu backend's `similarityPairsAbove` (ORT GEMM + JS scan) to a kernel without one. */
async function withCpuPairsAbove(kernel: SimilarityKernel, threads: number | undefined): Promise<SimilarityKernel> {
  if (kernel.similarityPairsAbove) return kernel;
  const { createCpuPairsAbove } = await import('./cpu/index.js');
  const pairs = createCpuPairsAbove({ threads });
  return {
    ...kernel,
    similarityPairsAbove: pairs.similarityPairsAbove,
    async close() {
      await pairs.close();
      await kernel.close();
    },
  };
}

/**
 * Run the calls a stream makes (assignment; the flush's one-product path) once on the first
 * centroids, so their engine sessions are built and warm before the first clip is timed or kept
 * waiting: a backend builds a session on first use (tens of milliseconds on the cpu backend).
 */
export async function warmUpStreamKernel(kernel: SimilarityKernel, centroids: Float32Array, dim: number): Promise<void> {
  const rows = centroids.subarray(0, Math.min(2, Math.floor(centroids.length / dim)) * dim);
  if (rows.length === 0) return;
  await kernel.nearestCentroid(rows, centroids, dim);
  const n = rows.length / dim;
  const pos = Int32Array.from({ length: n }, (_, i) => i);
  await kernel.crossRankedMax?.({ queries: rows, queryPos: pos, rows, rowPos: pos, rowOrder: pos, dim });
}

/**
 * Ranked pairwise for columns [colStart, colEnd) of a cluster whose rows (n × dim) are already in
 * rank order: only rows before colEnd are candidates, so no work is spent on the masked half.
 */
export async function pairwiseRankedBlock(
  kernel: SimilarityKernel,
  ranked: Float32Array,
  dim: number,
  colStart: number,
  colEnd: number,
): Promise<RankedMaxResult> {
  const queries = ranked.subarray(colStart * dim, colEnd * dim);
  const candidates = ranked.subarray(0, Math.max(colEnd - 1, 0) * dim);
  const queryPos = new Int32Array(colEnd - colStart);
  for (let i = 0; i < queryPos.length; i++) queryPos[i] = colStart + i;
  const candidatePos = new Int32Array(Math.max(colEnd - 1, 0));
  for (let i = 0; i < candidatePos.length; i++) candidatePos[i] = i;
  return kernel.rankedMax({ queries, queryPos, candidates, candidatePos, dim });
}

/**
 * NeMo's rule after the max: a clip with nothing ranked before it, or only negative
 * similarities, gets score 0 and max_id = itself (NeMo zero-masks the triangle before its max,
 * so an exact 0 from an earlier clip still wins over the clip itself).
 */
export function applyNothingBeforeRule(score: number, index: number): { score: number; index: number } {
  if (index < 0 || score < 0) return { score: 0, index: -1 };
  return { score, index };
}

/** Query rows per js fallback call in `similarityPairsAbove`, so signals get a turn in between. */
const JS_PAIRS_BLOCK_ROWS = 64;

/**
 * Every (query, candidate) with similarity >= threshold, sorted by (query, candidate), with the
 * kernel's own implementation when it has one, else the js reference in blocks of query rows.
 */
export async function similarityPairsAbove(
  kernel: SimilarityKernel,
  queries: Float32Array,
  candidates: Float32Array,
  dim: number,
  threshold: number,
): Promise<PairsAboveResult> {
  if (kernel.similarityPairsAbove) return kernel.similarityPairsAbove(queries, candidates, dim, threshold);
  const m = Math.floor(queries.length / dim);
  const parts: PairsAboveResult[] = [];
  for (let r0 = 0; r0 < m; r0 += JS_PAIRS_BLOCK_ROWS) {
    const r1 = Math.min(m, r0 + JS_PAIRS_BLOCK_ROWS);
    await new Promise<void>((resolve) => setImmediate(resolve));
    const part = similarityPairsAboveJs(queries.subarray(r0 * dim, r1 * dim), candidates, dim, threshold);
    parts.push({ ...part, query: part.query.map((q) => q + r0) });
  }
  const total = parts.reduce((s, p) => s + p.query.length, 0);
  const out = { query: new Int32Array(total), candidate: new Int32Array(total), score: new Float32Array(total) };
  let at = 0;
  for (const p of parts) {
    out.query.set(p.query, at);
    out.candidate.set(p.candidate, at);
    out.score.set(p.score, at);
    at += p.query.length;
  }
  return out;
}
