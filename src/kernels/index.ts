import { InputError } from '../shared/errors.js';
import { createJsKernel } from './js/index.js';
import type { BackendName, RankedMaxResult, SimilarityKernel } from './types.js';

export type * from './types.js';
export { createJsKernel } from './js/index.js';

/** Create the kernel for a backend name. `cpu` and `gpu` load lazily so `js` needs neither. */
export async function createKernel(backend: BackendName, options: { threads?: number; warn?: (msg: string) => void } = {}): Promise<SimilarityKernel> {
  switch (backend) {
    case 'js':
      return createJsKernel();
    case 'cpu': {
      const { createCpuKernel } = await import('./cpu/index.js');
      return createCpuKernel({ threads: options.threads });
    }
    case 'gpu': {
      const { createGpuKernel } = await import('./gpu/index.js');
      return createGpuKernel({ threads: options.threads, warn: options.warn });
    }
    default:
      throw new InputError(`unknown backend "${String(backend)}" (expected cpu, gpu or js)`, { context: { field: 'backend' } });
  }
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
