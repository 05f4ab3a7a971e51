import * as ort from 'onnxruntime-node';
import { InputError } from '../../shared/errors.js';
import { preferFirstIdentical } from '../first-identical-row.js';
import type { NearestCentroidResult, RankedMaxInput, RankedMaxResult, SimilarityKernel } from '../types.js';
import { nearestCentroidModel, rankedMaxMaskedModel, rankedMaxOpenModel } from './graphs.js';

export interface CpuKernelOptions {
  /** ONNX Runtime intra-op threads (MLAS GEMM and reductions). Default 2. */
  readonly threads?: number;
  /**
   * Largest similarity/distance matrix one ORT call may materialize, in float32 elements
   * (default 16M = 64 MiB). Bigger problems run in column (or row) blocks, so peak memory is set
   * by this, not by the cluster size.
   */
  readonly maxMatrixElements?: number;
}

type GraphName = 'rankedMaxOpen' | 'rankedMaxMasked' | 'nearestCentroid';

const GRAPHS: Record<GraphName, () => Uint8Array> = {
  rankedMaxOpen: rankedMaxOpenModel,
  rankedMaxMasked: rankedMaxMaskedModel,
  nearestCentroid: nearestCentroidModel,
};

/** Smallest column block worth a GEMM call (narrower blocks lose MLAS efficiency). */
const MIN_BLOCK_COLUMNS = 256;

/** First index in the ascending `pos` with pos[i] >= value (binary search). */
function lowerBound(pos: Int32Array, value: number): number {
  let lo = 0;
  let hi = pos.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (pos[mid]! < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * onnxruntime-node backend: fused ONNX graphs (GEMM + rank mask + max + first argmax; GEMM +
 * argmin for assignment) built in code and run on MLAS. One cached session per graph; shapes
 * are dynamic so block sizes can change freely.
 */
export async function createCpuKernel(options: CpuKernelOptions = {}): Promise<SimilarityKernel> {
  const threads = options.threads ?? 2;
  if (!Number.isInteger(threads) || threads < 1) {
    throw new InputError(`threads must be a positive integer, got ${threads}`, { context: { field: 'threads' } });
  }
  const maxMatrixElements = options.maxMatrixElements ?? 16 * 1024 * 1024;
  const sessionOptions: ort.InferenceSession.SessionOptions = {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    logSeverityLevel: 3,
  };
  const sessions = new Map<GraphName, Promise<ort.InferenceSession>>();
  const session = (name: GraphName): Promise<ort.InferenceSession> => {
    let s = sessions.get(name);
    if (!s) {
      s = ort.InferenceSession.create(GRAPHS[name](), sessionOptions);
      sessions.set(name, s);
    }
    return s;
  };
  // Create the rankedMax sessions up front so the first block is not charged for graph setup.
  await Promise.all([session('rankedMaxOpen'), session('rankedMaxMasked')]);

  const f32 = (data: Float32Array, rows: number, cols: number) => new ort.Tensor('float32', data, [rows, cols]);

  /** Fold a block's (score, index) into the running best; ties keep the earlier block (lower index). */
  function foldBlock(best: RankedMaxResult, out: ort.InferenceSession.OnnxValueMapType, offset: number): void {
    const score = out.score!.data as Float32Array;
    const index = out.index!.data as Int32Array;
    for (let q = 0; q < score.length; q++) {
      const s = score[q]!;
      // A row that is -inf here had no candidate ranked before it in this block.
      if (s > best.score[q]!) {
        best.score[q] = s;
        best.index[q] = index[q]! + offset;
      }
    }
  }

  async function rankedMax({ queries, queryPos, candidates, candidatePos, dim }: RankedMaxInput): Promise<RankedMaxResult> {
    const m = queryPos.length;
    const best: RankedMaxResult = { score: new Float32Array(m).fill(-Infinity), index: new Int32Array(m).fill(-1) };
    if (m === 0 || candidatePos.length === 0) return best;
    let minPos = queryPos[0]!;
    let maxPos = queryPos[0]!;
    for (let q = 1; q < m; q++) {
      minPos = Math.min(minPos, queryPos[q]!);
      maxPos = Math.max(maxPos, queryPos[q]!);
    }
    // Candidates before every query need no mask; those at or after the last query are never used.
    const open = lowerBound(candidatePos, minPos);
    const used = lowerBound(candidatePos, maxPos);
    if (used === 0) return best;
    const queryTensor = f32(queries.subarray(0, m * dim), m, dim);
    const blockColumns = Math.max(MIN_BLOCK_COLUMNS, Math.floor(maxMatrixElements / m));
    const queryPosTensor = new ort.Tensor('int32', queryPos, [m]);

    for (let start = 0; start < used; ) {
      // Block boundaries never straddle `open`, so the mask is only paid where it matters.
      const masked = start >= open;
      const end = Math.min(start + blockColumns, masked ? used : open);
      const n = end - start;
      const cand = f32(candidates.subarray(start * dim, end * dim), n, dim);
      const out = masked
        ? await (await session('rankedMaxMasked')).run({
            queries: queryTensor,
            candidates: cand,
            query_pos: queryPosTensor,
            candidate_pos: new ort.Tensor('int32', candidatePos.subarray(start, end), [n]),
          })
        : await (await session('rankedMaxOpen')).run({ queries: queryTensor, candidates: cand });
      foldBlock(best, out, start);
      start = end;
    }
    preferFirstIdentical(best.index, candidates, used, dim);
    return best;
  }

  async function nearestCentroid(x: Float32Array, centroids: Float32Array, dim: number): Promise<NearestCentroidResult> {
    const n = Math.floor(x.length / dim);
    const k = Math.floor(centroids.length / dim);
    const index = new Int32Array(n);
    const dist2 = new Float32Array(n);
    if (n === 0) return { index, dist2 };
    if (k === 0) throw new InputError('nearestCentroid needs at least one centroid', { context: { field: 'centroids' } });
    const s = await session('nearestCentroid');
    const centroidTensor = f32(centroids.subarray(0, k * dim), k, dim);
    const blockRows = Math.max(1, Math.floor(maxMatrixElements / k));
    for (let start = 0; start < n; start += blockRows) {
      const end = Math.min(n, start + blockRows);
      const out = await s.run({ x: f32(x.subarray(start * dim, end * dim), end - start, dim), centroids: centroidTensor });
      index.set(out.index!.data as Int32Array, start);
      dist2.set(out.dist2!.data as Float32Array, start);
    }
    preferFirstIdentical(index, centroids, k, dim);
    return { index, dist2 };
  }

  return {
    name: 'cpu',
    description: `onnxruntime-node ${ort.env.versions.common} (MLAS), ${threads} intra-op thread${threads === 1 ? '' : 's'}`,
    rankedMax,
    nearestCentroid,
    async close() {
      const all = [...sessions.values()];
      sessions.clear();
      await Promise.all(all.map(async (s) => (await s).release()));
    },
  };
}
