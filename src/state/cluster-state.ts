import type { SimilarityKernel } from '../kernels/types.js';
import { compareRankKeys, type RankFields } from '../rank/index.js';
import type { IdType, RankSpec } from '../shared/types.js';

/** A clip entering a cluster: unit-length embedding plus the fields that fix its rank. */
export interface IncomingClip {
  readonly rank: RankFields;
  readonly embedding: Float32Array;
}

/** A clip's current pairwise result, NeMo rules applied (score 0 / itself when nothing positive). */
export interface Verdict {
  readonly id: string;
  readonly maxId: string;
  readonly score: number;
  readonly centroid: number;
}

/** Persistable form of one member (embedding as little-endian float32 bytes). */
const sameVerdict = (a: Verdict, b: Verdict) => a.maxId === b.maxId && a.score === b.score;

export interface MemberRecord {
  readonly rank: RankFields;
  readonly embedding: Float32Array;
  /** Raw max similarity over members ranked before (-Infinity when none). */
  readonly rawScore: number;
  /** Id of the first-ranked member reaching it (null when none). */
  readonly rawMaxId: string | null;
}

/**
 * One cluster's ranked state for incremental dedup ("Why streaming can be exact"): members kept
 * in rank order with their raw max similarity over members ranked before them. Adding clips
 * only adds candidates, so each member's raw max can only rise, and after any arrival order the
 * state equals the batch result on the same clips.
 */
export class ClusterState {
  readonly centroid: number;
  readonly dim: number;
  #spec: RankSpec;
  #idType: IdType;
  #ranks: RankFields[] = [];
  #emb: Float32Array;
  #rawScore = new Float64Array(0);
  /** Position (index into the rank order) of the raw argmax, -1 when none. */
  #rawMax = new Int32Array(0);

  constructor(centroid: number, dim: number, spec: RankSpec, idType: IdType) {
    this.centroid = centroid;
    this.dim = dim;
    this.#spec = spec;
    this.#idType = idType;
    this.#emb = new Float32Array(0);
  }

  get size(): number {
    return this.#ranks.length;
  }

  /** Restore from persisted members (any order). */
  static restore(centroid: number, dim: number, spec: RankSpec, idType: IdType, members: readonly MemberRecord[]): ClusterState {
    const state = new ClusterState(centroid, dim, spec, idType);
    const sorted = [...members].sort((a, b) => compareRankKeys(a.rank, b.rank, spec, idType));
    state.#ranks = sorted.map((m) => m.rank);
    state.#emb = new Float32Array(sorted.length * dim);
    sorted.forEach((m, i) => state.#emb.set(m.embedding, i * dim));
    const pos = new Map(sorted.map((m, i) => [m.rank.id, i]));
    state.#rawScore = Float64Array.from(sorted, (m) => m.rawScore);
    state.#rawMax = Int32Array.from(sorted, (m) => (m.rawMaxId === null ? -1 : pos.get(m.rawMaxId) ?? -1));
    return state;
  }

  members(): MemberRecord[] {
    return this.#ranks.map((rank, i) => ({
      rank,
      embedding: this.#emb.slice(i * this.dim, (i + 1) * this.dim),
      rawScore: this.#rawScore[i]!,
      rawMaxId: this.#rawMax[i]! < 0 ? null : this.#ranks[this.#rawMax[i]!]!.id,
    }));
  }

  verdictAt(i: number): Verdict {
    return this.#verdictOf(i, this.#rawScore[i]!, this.#rawMax[i]!);
  }

  /** NeMo's rule on a raw max: nothing positive before → score 0 and the clip itself. */
  #verdictOf(i: number, raw: number, at: number): Verdict {
    const id = this.#ranks[i]!.id;
    if (at < 0 || raw < 0) return { id, maxId: id, score: 0, centroid: this.centroid };
    return { id, maxId: this.#ranks[at]!.id, score: raw, centroid: this.centroid };
  }

  verdicts(): Verdict[] {
    return this.#ranks.map((_, i) => this.verdictAt(i));
  }

  /**
   * Add a block of new clips: score each against every member ranked before it (old and new),
   * and raise the score of old members ranked after some new clip. Returns the verdicts that
   * changed (new clips included) and the members whose stored fields changed.
   */
  async addClips(clips: readonly IncomingClip[], kernel: SimilarityKernel): Promise<{ changed: Verdict[]; touched: MemberRecord[] }> {
    if (clips.length === 0) return { changed: [], touched: [] };
    const { dim } = this;
    const cmp = (a: RankFields, b: RankFields) => compareRankKeys(a, b, this.#spec, this.#idType);
    const incoming = [...clips].sort((a, b) => cmp(a.rank, b.rank));
    const oldN = this.#ranks.length;
    const n = oldN + incoming.length;
    // Merge old members and new clips into one rank order.
    const ranks: RankFields[] = new Array(n);
    const emb = new Float32Array(n * dim);
    const isNew = new Uint8Array(n);
    const oldToNew = new Int32Array(oldN);
    const newPos = new Int32Array(incoming.length);
    for (let i = 0, j = 0, p = 0; p < n; p++) {
      if (j < incoming.length && (i >= oldN || cmp(incoming[j]!.rank, this.#ranks[i]!) < 0)) {
        ranks[p] = incoming[j]!.rank;
        emb.set(incoming[j]!.embedding, p * dim);
        isNew[p] = 1;
        newPos[j++] = p;
      } else {
        ranks[p] = this.#ranks[i]!;
        emb.set(this.#emb.subarray(i * dim, (i + 1) * dim), p * dim);
        oldToNew[i++] = p;
      }
    }
    const rawScore = new Float64Array(n).fill(-Infinity);
    const rawMax = new Int32Array(n).fill(-1);
    for (let i = 0; i < oldN; i++) {
      rawScore[oldToNew[i]!] = this.#rawScore[i]!;
      rawMax[oldToNew[i]!] = this.#rawMax[i]! < 0 ? -1 : oldToNew[this.#rawMax[i]!]!;
    }
    const oldRawScore = rawScore.slice();
    const oldRawMax = rawMax.slice();

    // New clips against everything ranked before them (candidates up to the last new clip).
    const lastNew = newPos[newPos.length - 1]!;
    const queries = new Float32Array(incoming.length * dim);
    incoming.forEach((c, j) => queries.set(c.embedding, j * dim));
    const allPos = new Int32Array(lastNew);
    for (let p = 0; p < lastNew; p++) allPos[p] = p;
    const forNew = await kernel.rankedMax({ queries, queryPos: newPos, candidates: emb.subarray(0, lastNew * dim), candidatePos: allPos, dim });
    for (let j = 0; j < incoming.length; j++) {
      rawScore[newPos[j]!] = forNew.score[j]!;
      rawMax[newPos[j]!] = forNew.index[j]!;
    }
    // Old members ranked after the first new clip may gain a new candidate.
    const firstNew = newPos[0]!;
    const affected: number[] = [];
    for (let p = firstNew + 1; p < n; p++) if (!isNew[p]) affected.push(p);
    if (affected.length > 0) {
      const q = new Float32Array(affected.length * dim);
      affected.forEach((p, k) => q.set(emb.subarray(p * dim, (p + 1) * dim), k * dim));
      const forOld = await kernel.rankedMax({ queries: q, queryPos: Int32Array.from(affected), candidates: queries, candidatePos: newPos, dim });
      affected.forEach((p, k) => {
        const s = forOld.score[k]!;
        const at = forOld.index[k]! < 0 ? -1 : newPos[forOld.index[k]!]!;
        if (at < 0) return;
        // Higher wins; on an exact tie the first-ranked candidate wins (NeMo's argmax).
        if (s > rawScore[p]! || (s === rawScore[p]! && (rawMax[p]! < 0 || at < rawMax[p]!))) {
          rawScore[p] = s;
          rawMax[p] = at;
        }
      });
    }
    this.#ranks = ranks;
    this.#emb = emb;
    this.#rawScore = rawScore;
    this.#rawMax = rawMax;
    const changed: Verdict[] = [];
    const touched: MemberRecord[] = [];
    for (let p = 0; p < n; p++) {
      // A member's verdict can only change when its raw max did (or when it is new).
      if (!isNew[p] && rawScore[p] === oldRawScore[p] && rawMax[p] === oldRawMax[p]) continue;
      const v = this.verdictAt(p);
      if (isNew[p] || !sameVerdict(v, this.#verdictOf(p, oldRawScore[p]!, oldRawMax[p]!))) changed.push(v);
      // Views, not copies: the store only reads them before the next flush replaces `emb`.
      touched.push({ rank: ranks[p]!, embedding: emb.subarray(p * dim, (p + 1) * dim), rawScore: rawScore[p]!, rawMaxId: rawMax[p]! < 0 ? null : ranks[rawMax[p]!]!.id });
    }
    return { changed, touched };
  }
}
