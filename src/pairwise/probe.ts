import { applyNothingBeforeRule } from '../kernels/index.js';
import type { RankedMaxResult } from '../kernels/types.js';

/**
 * Multi-probe pairwise (`--probe 2`), per clip: the best over every compared set it belongs to.
 *
 * Semantics. Clips have one global rank order: the cluster ranking's ORDER BY without PARTITION
 * BY (`global_pos`). The compared set of cluster c is its own clips plus the clips probed into c,
 * ordered by global_pos. In each set a clip gets the max similarity to the clips before it; its
 * score is the max over its sets (its own cluster's and, when probed, its second cluster's), and
 * max_id the clip reaching it, the globally first-ranked among equal scores. Nothing ranked before
 * it with a similarity >= 0 in any set: score 0 and itself (NeMo's rule). Within one cluster
 * global_pos orders clips as rank_pos does, so with nothing probed this is exactly NeMo's result.
 *
 * Sets are processed one at a time, in any order; this keeps each clip's running best, keyed by
 * the clip's row (input order), as a global position so a winner from any set can be compared.
 */
export class ProbedScores {
  readonly #score: Float32Array;
  readonly #pos: Int32Array;

  constructor(rows: number) {
    this.#score = new Float32Array(rows).fill(-Infinity);
    this.#pos = new Int32Array(rows).fill(-1);
  }

  /**
   * Fold one set's raw ranked max (`rankedSetMax`: -1 where nothing was before) into the running
   * best. `rows[i]` and `globalPos[i]` describe the set's i-th clip. Calls `onImproved(i, w)`
   * when member i's best now comes from member w of this set.
   */
  foldSet(rows: Int32Array, globalPos: Int32Array, raw: RankedMaxResult, onImproved?: (member: number, winner: number) => void): void {
    for (let i = 0; i < rows.length; i++) {
      const w = raw.index[i]!;
      if (w < 0) continue;
      const row = rows[i]!;
      const s = raw.score[i]!;
      const p = globalPos[w]!;
      const best = this.#score[row]!;
      if (s > best || (s === best && p < this.#pos[row]!)) {
        this.#score[row] = s;
        this.#pos[row] = p;
        onImproved?.(i, w);
      }
    }
  }

  /** Final score and the global position of max_id (-1: the clip itself), NeMo's rule applied. */
  verdict(row: number): { score: number; pos: number } {
    const r = applyNothingBeforeRule(this.#score[row]!, this.#pos[row]!);
    return { score: r.score, pos: r.index };
  }
}
