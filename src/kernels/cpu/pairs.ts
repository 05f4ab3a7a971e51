/**
 * `similarityPairsAbove` for the cpu backend: ORT computes the similarity block (one Gemm, the
 * [m, d] × [d, n] product with the candidates transposed in place by `transB`), and JS scans the
 * block for scores >= threshold. The threshold stays out of the graph on purpose: a scan is cheap
 * next to the GEMM, and the result size is unknown until it is done. Blocks are sized so that one
 * similarity block holds at most `maxMatrixElements` floats, whatever m and n.
 *
 * Kept apart from index.ts (its own lazily created session), so kernels that never measure recall
 * pay nothing for it.
 */
import * as ort from 'onnxruntime-node';
import { PairCollector } from '../pair-collector.js';
import type { PairsAboveResult } from '../types.js';
import { OnnxType, attr, encodeModel } from './onnx-model.js';

export interface CpuPairsOptions {
  /** ONNX Runtime intra-op threads. Default 2. */
  readonly threads?: number;
  /** Largest similarity block one ORT call materializes, in float32 elements (default 16M = 64 MiB). */
  readonly maxMatrixElements?: number;
}

export interface CpuPairsAbove {
  similarityPairsAbove(queries: Float32Array, candidates: Float32Array, dim: number, threshold: number): Promise<PairsAboveResult>;
  close(): Promise<void>;
}

/** sim = Q · Cᵀ, nothing else: the scan happens in JS. */
export function similarityBlockModel(): Uint8Array {
  return encodeModel({
    name: 'similarity_block',
    initializers: [],
    inputs: [
      { name: 'queries', elemType: OnnxType.FLOAT, dims: ['m', 'd'] },
      { name: 'candidates', elemType: OnnxType.FLOAT, dims: ['n', 'd'] },
    ],
    outputs: [{ name: 'sim', elemType: OnnxType.FLOAT, dims: ['m', 'n'] }],
    nodes: [{ op: 'Gemm', inputs: ['queries', 'candidates'], outputs: ['sim'], attributes: { transB: attr.int(1) } }],
  });
}

/** Fewest query rows per block, so a very wide candidate set still gets GEMM-sized calls. */
const MIN_BLOCK_ROWS = 64;

export function createCpuPairsAbove(options: CpuPairsOptions = {}): CpuPairsAbove {
  const threads = options.threads ?? 2;
  const maxMatrixElements = options.maxMatrixElements ?? 16 * 1024 * 1024;
  let session: Promise<ort.InferenceSession> | null = null;
  const open = () =>
    (session ??= ort.InferenceSession.create(similarityBlockModel(), {
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
      logSeverityLevel: 3,
      // As index.ts: spinning threads steal the 2 shared cores from the JS scan.
      extra: { session: { intra_op: { allow_spinning: '0' } } },
    }));

  async function similarityPairsAbove(queries: Float32Array, candidates: Float32Array, dim: number, threshold: number): Promise<PairsAboveResult> {
    const m = Math.floor(queries.length / dim);
    const n = Math.floor(candidates.length / dim);
    const out = new PairCollector();
    if (m === 0 || n === 0) return out.finish(true);
    const s = await open();
    const blockRows = Math.min(m, Math.max(MIN_BLOCK_ROWS, Math.floor(maxMatrixElements / n)));
    const blockColumns = Math.min(n, Math.max(1, Math.floor(maxMatrixElements / blockRows)));
    for (let r0 = 0; r0 < m; r0 += blockRows) {
      const r1 = Math.min(m, r0 + blockRows);
      const q = new ort.Tensor('float32', queries.subarray(r0 * dim, r1 * dim), [r1 - r0, dim]);
      for (let c0 = 0; c0 < n; c0 += blockColumns) {
        const c1 = Math.min(n, c0 + blockColumns);
        const result = await s.run({ queries: q, candidates: new ort.Tensor('float32', candidates.subarray(c0 * dim, c1 * dim), [c1 - c0, dim]) });
        const sim = result.sim!.data as Float32Array;
        const width = c1 - c0;
        for (let i = 0; i < r1 - r0; i++) {
          const row = sim.subarray(i * width, (i + 1) * width);
          for (let j = 0; j < width; j++) if (row[j]! >= threshold) out.push(r0 + i, c0 + j, row[j]!);
        }
        result.sim!.dispose();
      }
    }
    // One column block per row block pushes pairs in (query, candidate) order already.
    return out.finish(blockColumns === n);
  }

  return {
    similarityPairsAbove,
    async close() {
      const s = session;
      session = null;
      if (s) await (await s).release();
    },
  };
}
