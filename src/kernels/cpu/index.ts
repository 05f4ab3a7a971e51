import * as ort from 'onnxruntime-node';
import { InputError } from '../../shared/errors.js';
import { preferFirstIdentical } from '../first-identical-row.js';
import { createCpuCrossRankedMax } from './cross.js';
import type { NearestCentroidResult, NearestCentroidSumsResult, RankedMaxInput, RankedMaxResult, SimilarityKernel } from '../types.js';
import { OPEN_BLOCK, nearestCentroidModel, nearestCentroidSumsModel, rankedMaxMaskedModel, rankedMaxOpenModel, rowDotsModel, scatterAddRowsModel } from './graphs.js';

export interface CpuKernelOptions {
  /** ONNX Runtime intra-op threads (MLAS GEMM and reductions). Default 2. */
  readonly threads?: number;
  /**
   * Largest similarity/distance matrix one ORT call may materialize, in float32 elements
   * (default 16M = 64 MiB). Bigger problems run in column (or row) blocks, so peak memory is set
   * by this, not by the cluster size.
   */
  readonly maxMatrixElements?: number;
  /**
   * Queries are sorted by rank and handled in groups of this many rows. Each group needs the rank
   * mask only over the candidates between its first and last query, so the masked (and wasted)
   * part of a triangle block shrinks with the group; smaller groups mean smaller GEMMs. Default
   * 256 rows at more than 512 dimensions, 512 rows at 512 or fewer: a group's GEMM needs about as
   * many rows × dims to run at full speed (measured, `npx tsx bench/kernels.ts`: pairwise 4000 ×
   * 512 at 256 rows 154–162 GFLOP/s, at 512 rows 172–176, same wall time or less; 4000 × 768 at
   * 512 rows 5 % slower than at 256).
   */
  readonly groupRows?: number;
  /**
   * Let ORT's intra-op threads spin-wait for work between operators. Default false: on the small
   * shared machines this runs on (2 cores, next to Kafka, DuckDB and the JS thread) spinning
   * threads steal the cores the GEMM needs; measured under load it doubled a pairwise run's time.
   */
  readonly spinThreads?: boolean;
  /**
   * Largest distance matrix one assignment call materializes, in float32 elements (default 4M =
   * 16 MiB, at most `maxMatrixElements`); bigger inputs go in row blocks of about equal size.
   * A 10000 × 1000 matrix (40 MB) in one call ran at 0.94–0.96× NumPy in the kernel benchmark,
   * where pairwise calls before it leave the session's memory in other shapes, and 1.1× in row
   * blocks: the blocks are reused from call to call, and are still in cache for the ArgMin and
   * ReduceMin after the GEMM.
   */
  readonly assignMatrixElements?: number;
  /** Called with (rows, columns, dim) of every GEMM the kernel runs: for benchmarks' FLOP counts. */
  readonly onGemm?: (rows: number, columns: number, dim: number) => void;
}

type GraphName = 'rankedMaxOpen' | 'rankedMaxMasked' | 'nearestCentroid' | 'nearestCentroidSums' | 'scatterAddRows' | 'rowDots';

const GRAPHS: Record<GraphName, () => Uint8Array> = {
  rankedMaxOpen: rankedMaxOpenModel,
  rankedMaxMasked: rankedMaxMaskedModel,
  nearestCentroid: nearestCentroidModel,
  nearestCentroidSums: nearestCentroidSumsModel,
  scatterAddRows: scatterAddRowsModel,
  rowDots: rowDotsModel,
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
 *
 * rankedMax splits each call so that little work is wasted: queries go in rank-sorted groups,
 * candidates ranked before a whole group go through the unmasked graph (blocked reduction, see
 * graphs.ts), and only the band between the group's first and last query pays for the mask.
 * Note: onnxruntime-node runs a session synchronously on the JS thread (after a setImmediate),
 * so a call blocks the event loop for its duration; callers size blocks with that in mind.
 */
export async function createCpuKernel(options: CpuKernelOptions = {}): Promise<SimilarityKernel> {
  const threads = options.threads ?? 2;
  if (!Number.isInteger(threads) || threads < 1) {
    throw new InputError(`threads must be a positive integer, got ${threads}`, { context: { field: 'threads' } });
  }
  const maxMatrixElements = options.maxMatrixElements ?? 16 * 1024 * 1024;
  const assignMatrixElements = Math.min(maxMatrixElements, options.assignMatrixElements ?? 4 * 1024 * 1024);
  /** Bounds of row blocks of about equal size whose [rows, k] matrix fits assignMatrixElements. */
  const assignBlocks = (n: number, k: number): number[] => {
    const count = Math.ceil(n / Math.max(1, Math.floor(assignMatrixElements / k)));
    return Array.from({ length: count + 1 }, (_, i) => Math.round((i * n) / count));
  };
  const sessionOptions: ort.InferenceSession.SessionOptions = {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    logSeverityLevel: 3,
    extra: { session: { intra_op: { allow_spinning: options.spinThreads ? '1' : '0' } } },
  };
  // ScatterND add races with more than one intra-op thread (graphs.ts, scatterAddRowsModel).
  const singleThreaded: ReadonlySet<GraphName> = new Set(['scatterAddRows']);
  const sessions = new Map<GraphName, Promise<ort.InferenceSession>>();
  const session = (name: GraphName): Promise<ort.InferenceSession> => {
    let s = sessions.get(name);
    if (!s) {
      s = ort.InferenceSession.create(GRAPHS[name](), singleThreaded.has(name) ? { ...sessionOptions, intraOpNumThreads: 1 } : sessionOptions);
      sessions.set(name, s);
    }
    return s;
  };
  // Create the rankedMax sessions up front so the first block is not charged for graph setup.
  await Promise.all([session('rankedMaxOpen'), session('rankedMaxMasked')]);

  // Tensors wrap the caller's typed arrays (subarrays included): no copy on our side.
  const f32 = (data: Float32Array, rows: number, cols: number) => new ort.Tensor('float32', data, [rows, cols]);
  const groupRowsFor = (dim: number) => options.groupRows ?? (dim <= 512 ? 512 : 256);
  const onGemm = options.onGemm ?? (() => {});

  /**
   * Fold one ORT call's (score, index) for queries [g0, g0 + count) of the sorted order into the
   * running best. Calls run in candidate order, so ties keep the earlier call (lower index).
   */
  function fold(best: RankedMaxResult, out: ort.InferenceSession.OnnxValueMapType, order: Int32Array | null, g0: number, offset: number): void {
    const score = out.score!.data as Float32Array;
    const index = out.index!.data as Int32Array;
    for (let i = 0; i < score.length; i++) {
      const q = order ? order[g0 + i]! : g0 + i;
      const s = score[i]!;
      // -inf: no candidate ranked before this query in the block (ArgMax then says 0; ignore it).
      if (s > best.score[q]!) {
        best.score[q] = s;
        best.index[q] = index[i]! + offset;
      }
    }
  }

  async function rankedMax({ queries, queryPos, candidates, candidatePos, dim }: RankedMaxInput): Promise<RankedMaxResult> {
    const m = queryPos.length;
    const best: RankedMaxResult = { score: new Float32Array(m).fill(-Infinity), index: new Int32Array(m).fill(-1) };
    if (m === 0 || candidatePos.length === 0) return best;

    // Sort queries by rank (usually they already are: a block of a ranked cluster).
    let sorted = true;
    for (let q = 1; q < m && sorted; q++) sorted = queryPos[q - 1]! <= queryPos[q]!;
    let order: Int32Array | null = null;
    let rows = queries;
    let pos = queryPos;
    if (!sorted) {
      order = Int32Array.from({ length: m }, (_, q) => q).sort((a, b) => queryPos[a]! - queryPos[b]!);
      rows = new Float32Array(m * dim);
      pos = new Int32Array(m);
      for (let i = 0; i < m; i++) {
        rows.set(queries.subarray(order[i]! * dim, (order[i]! + 1) * dim), i * dim);
        pos[i] = queryPos[order[i]!]!;
      }
    }

    const openSession = await session('rankedMaxOpen');
    const maskedSession = await session('rankedMaxMasked');
    const alignDown = (columns: number) => columns - (columns % OPEN_BLOCK);

    /** Unmasked columns [from, to) (whole OPEN_BLOCKs) for sorted queries [g0, g1). */
    const runOpen = async (g0: number, g1: number, queryTensor: ort.Tensor, from: number, to: number) => {
      const blockColumns = Math.max(OPEN_BLOCK, alignDown(Math.floor(maxMatrixElements / (g1 - g0))));
      for (let start = from; start < to; start += blockColumns) {
        const end = Math.min(to, start + blockColumns);
        const out = await openSession.run({ queries: queryTensor, candidates: f32(candidates.subarray(start * dim, end * dim), end - start, dim) });
        onGemm(g1 - g0, end - start, dim);
        fold(best, out, order, g0, start);
      }
    };

    // Candidates ranked before every query: one big unmasked GEMM for all queries together.
    const sharedOpen = alignDown(lowerBound(candidatePos, pos[0]!));
    if (sharedOpen > 0) await runOpen(0, m, f32(rows.subarray(0, m * dim), m, dim), 0, sharedOpen);

    // The band after it, per group of rank-sorted queries: unmasked up to the group's first
    // query, masked only between its first and last query; nothing at or after its last query.
    let usedOverall = 0;
    const groupRows = groupRowsFor(dim);
    for (let g0 = 0; g0 < m; g0 += groupRows) {
      const g1 = Math.min(m, g0 + groupRows);
      const count = g1 - g0;
      const used = lowerBound(candidatePos, pos[g1 - 1]!);
      usedOverall = Math.max(usedOverall, used);
      if (used <= sharedOpen) continue;
      const queryTensor = f32(rows.subarray(g0 * dim, g1 * dim), count, dim);
      const groupOpen = Math.max(sharedOpen, alignDown(lowerBound(candidatePos, pos[g0]!)));
      await runOpen(g0, g1, queryTensor, sharedOpen, groupOpen);
      const blockColumns = Math.max(MIN_BLOCK_COLUMNS, Math.floor(maxMatrixElements / count));
      const queryPosTensor = new ort.Tensor('int32', pos.subarray(g0, g1), [count]);
      for (let start = groupOpen; start < used; start += blockColumns) {
        const end = Math.min(used, start + blockColumns);
        const out = await maskedSession.run({
          queries: queryTensor,
          candidates: f32(candidates.subarray(start * dim, end * dim), end - start, dim),
          query_pos: queryPosTensor,
          candidate_pos: new ort.Tensor('int32', candidatePos.subarray(start, end), [end - start]),
        });
        onGemm(count, end - start, dim);
        fold(best, out, order, g0, start);
      }
    }
    preferFirstIdentical(best.index, candidates, usedOverall, dim);
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
    const bounds = assignBlocks(n, k);
    for (let b = 1; b < bounds.length; b++) {
      const [start, end] = [bounds[b - 1]!, bounds[b]!];
      const out = await s.run({ x: f32(x.subarray(start * dim, end * dim), end - start, dim), centroids: centroidTensor });
      onGemm(end - start, k, dim);
      index.set(out.index!.data as Int32Array, start);
      dist2.set(out.dist2!.data as Float32Array, start);
    }
    preferFirstIdentical(index, centroids, k, dim);
    return { index, dist2 };
  }

  async function nearestCentroidSums(x: Float32Array, centroids: Float32Array, dim: number, rowNorm2: Float32Array): Promise<NearestCentroidSumsResult> {
    const n = Math.floor(x.length / dim);
    const k = Math.floor(centroids.length / dim);
    if (k === 0) throw new InputError('nearestCentroidSums needs at least one centroid', { context: { field: 'centroids' } });
    const index = new Int32Array(n);
    const dist2 = new Float32Array(n);
    const sums = new Float32Array(k * dim);
    if (n === 0) return { index, dist2, sums };
    const s = await session('nearestCentroidSums');
    const scatter = await session('scatterAddRows');
    const centroidTensor = f32(centroids.subarray(0, k * dim), k, dim);
    const zeros = f32(new Float32Array(k * dim), k, dim);
    const bounds = assignBlocks(n, k);
    for (let b = 1; b < bounds.length; b++) {
      const [start, end] = [bounds[b - 1]!, bounds[b]!];
      const xTensor = f32(x.subarray(start * dim, end * dim), end - start, dim);
      const out = await s.run({
        x: xTensor,
        centroids: centroidTensor,
        x_norm2: new ort.Tensor('float32', rowNorm2.subarray(start, end), [end - start]),
      });
      onGemm(end - start, k, dim);
      const blockIndex = out.index!.data as Int32Array;
      index.set(blockIndex, start);
      dist2.set(out.dist2!.data as Float32Array, start);
      const { sums: partSums } = await scatter.run({ zeros, index: new ort.Tensor('int32', blockIndex, [end - start]), x: xTensor });
      const part = partSums!.data as Float32Array;
      if (start === 0) sums.set(part);
      else for (let i = 0; i < part.length; i++) sums[i] = Math.fround(sums[i]! + part[i]!);
    }
    // Identical centroids: the first one takes the row (as in nearestCentroid); move its sum along.
    const before = Int32Array.from(index);
    preferFirstIdentical(index, centroids, k, dim);
    for (let r = 0; r < n; r++) {
      const from = before[r]!;
      const to = index[r]!;
      if (from === to) continue;
      for (let j = 0; j < dim; j++) {
        sums[from * dim + j] = Math.fround(sums[from * dim + j]! - x[r * dim + j]!);
        sums[to * dim + j] = Math.fround(sums[to * dim + j]! + x[r * dim + j]!);
      }
    }
    return { index, dist2, sums };
  }

  async function rowDots(x: Float32Array, v: Float32Array, dim: number): Promise<Float32Array> {
    const n = Math.floor(x.length / dim);
    const dots = new Float32Array(n);
    if (n === 0) return dots;
    const s = await session('rowDots');
    const vTensor = new ort.Tensor('float32', v.subarray(0, dim), [dim, 1]);
    const blockRows = Math.max(1, Math.floor(maxMatrixElements / dim));
    for (let start = 0; start < n; start += blockRows) {
      const end = Math.min(n, start + blockRows);
      const out = await s.run({ x: f32(x.subarray(start * dim, end * dim), end - start, dim), v: vTensor });
      onGemm(end - start, 1, dim);
      dots.set(out.dots!.data as Float32Array, start);
    }
    return dots;
  }

  // The streaming flush's one-product path (cross.ts); its session is created on first use.
  const cross = createCpuCrossRankedMax({ sessionOptions, maxMatrixElements, onGemm });

  return {
    name: 'cpu',
    description: `onnxruntime-node ${ort.env.versions.common} (MLAS), ${threads} intra-op thread${threads === 1 ? '' : 's'}`,
    rankedMax,
    crossRankedMax: cross.crossRankedMax,
    nearestCentroid,
    nearestCentroidSums,
    rowDots,
    async close() {
      const all = [...sessions.values()];
      sessions.clear();
      await Promise.all([...all.map(async (s) => (await s).release()), cross.close()]);
    },
  };
}

export { createCpuPairsAbove } from './pairs.js'; // recall's pairs-above-threshold (src/kernels/cpu/pairs.ts)
