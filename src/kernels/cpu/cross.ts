/**
 * `crossRankedMax` for the cpu backend: one ORT GEMM of the new clips against a cluster's rows
 * (the similarity block of pairs.ts), and one JS pass over the block that folds each element into
 * either direction by rank position — into the query's max when the row is ranked before the
 * query, into the row's max when the query is ranked before the row. Rows may come in any order
 * (a cluster keeps embeddings in arrival order so a flush never moves them). Two `rankedMax` calls compute every (new, old) pair
 * twice (each masks away the half the other needs); this computes it once. The pass is a compare
 * per element next to 2·dim flops of GEMM, so it costs a few percent of the product.
 */
import * as ort from 'onnxruntime-node';
import { preferFirstIdentical, preferFirstRankedIdentical } from '../first-identical-row.js';
import type { CrossRankedMaxInput, CrossRankedMaxResult, RankedMaxResult } from '../types.js';
import { similarityBlockModel } from './pairs.js';

export interface CpuCrossOptions {
  readonly sessionOptions: ort.InferenceSession.SessionOptions;
  /** Largest similarity block one ORT call materializes, in float32 elements. */
  readonly maxMatrixElements: number;
  readonly onGemm: (rows: number, columns: number, dim: number) => void;
}

export interface CpuCrossRankedMax {
  crossRankedMax(input: CrossRankedMaxInput): Promise<CrossRankedMaxResult>;
  close(): Promise<void>;
}

export function createCpuCrossRankedMax(options: CpuCrossOptions): CpuCrossRankedMax {
  let session: Promise<ort.InferenceSession> | null = null;
  const open = () => (session ??= ort.InferenceSession.create(similarityBlockModel(), options.sessionOptions));

  async function crossRankedMax({ queries, queryPos, rows, rowPos, rowOrder, rowHash, dim }: CrossRankedMaxInput): Promise<CrossRankedMaxResult> {
    const m = queryPos.length;
    const n = Math.floor(rows.length / dim);
    const forQueries: RankedMaxResult = { score: new Float32Array(m).fill(-Infinity), index: new Int32Array(m).fill(-1) };
    const forRows: RankedMaxResult = { score: new Float32Array(n).fill(-Infinity), index: new Int32Array(n).fill(-1) };
    if (m === 0 || n === 0) return { forQueries, forRows };
    const s = await open();
    const q = new ort.Tensor('float32', queries.subarray(0, m * dim), [m, dim]);
    const blockColumns = Math.max(1, Math.floor(options.maxMatrixElements / m));
    const qScore = forQueries.score;
    const qIndex = forQueries.index;
    const rScore = forRows.score;
    const rIndex = forRows.index;
    for (let c0 = 0; c0 < n; c0 += blockColumns) {
      const c1 = Math.min(n, c0 + blockColumns);
      const width = c1 - c0;
      const out = await s.run({ queries: q, candidates: new ort.Tensor('float32', rows.subarray(c0 * dim, c1 * dim), [width, dim]) });
      options.onGemm(m, width, dim);
      const sim = out.sim!.data as Float32Array;
      if (rowOrder && width === n) {
        foldInRankOrder(sim, m, n, queryPos, rowOrder, forQueries, forRows);
        out.sim!.dispose();
        continue;
      }
      for (let j = 0; j < m; j++) {
        const base = j * width - c0;
        const pos = queryPos[j]!;
        let best = qScore[j]!;
        let at = qIndex[j]!;
        let atPos = at < 0 ? 0x7fffffff : rowPos[at]!;
        for (let r = c0; r < c1; r++) {
          const rp = rowPos[r]!;
          const v = sim[base + r]!;
          if (rp < pos) {
            // Row ranked before query j: the query's max; among equals the first-ranked row.
            if (v > best || (v === best && rp < atPos)) {
              best = v;
              at = r;
              atPos = rp;
            }
          } else if (rp > pos && v > rScore[r]!) {
            // Query j ranked before the row: queries come in rank order, so `>` keeps the first.
            rScore[r] = v;
            rIndex[r] = j;
          }
        }
        qScore[j] = best;
        qIndex[j] = at;
      }
      out.sim!.dispose();
    }
    // Bitwise-identical rows can differ in the GEMM's last bit: the first-ranked identical one wins.
    preferFirstRankedIdentical(qIndex, rows, n, dim, rowPos, rowHash);
    preferFirstIdentical(rIndex, queries, m, dim);
    return { forQueries, forRows };
  }

  return {
    crossRankedMax,
    async close() {
      const s = session;
      session = null;
      if (s) await (await s).release();
    },
  };
}

/**
 * The fold of a whole m × n block when the rows' rank order is known: for query j the rows ranked
 * before it are rowOrder[0, pos) and those after it rowOrder(pos, n), so each is one run with no
 * per-element test of positions (that test is a coin flip for rows stored in arrival order, and
 * its mispredictions cost more than the compares). Walking in rank order, a strict `>` keeps the
 * first-ranked row among equal maxima; queries come in rank order, so `>` keeps the first query
 * for a row, as the general loop does.
 */
function foldInRankOrder(sim: Float32Array, m: number, n: number, queryPos: Int32Array, rowOrder: Int32Array, forQueries: RankedMaxResult, forRows: RankedMaxResult): void {
  const rScore = forRows.score;
  const rIndex = forRows.index;
  for (let j = 0; j < m; j++) {
    const base = j * n;
    const pos = queryPos[j]!;
    let best = -Infinity;
    let at = -1;
    for (let p = 0; p < pos; p++) {
      const r = rowOrder[p]!;
      const v = sim[base + r]!;
      if (v > best) {
        best = v;
        at = r;
      }
    }
    forQueries.score[j] = best;
    forQueries.index[j] = at;
    for (let p = pos + 1; p < n; p++) {
      const r = rowOrder[p]!;
      const v = sim[base + r]!;
      if (v > rScore[r]!) {
        rScore[r] = v;
        rIndex[r] = j;
      }
    }
  }
}
