import { hashRows } from '../kernels/first-identical-row.js';
import type { SimilarityKernel } from '../kernels/types.js';
import { compareRankKeys, type RankFields } from '../rank/index.js';
import type { IdType, RankSpec } from '../shared/types.js';
import { allocateSlotArrays, type SlotArrays, type SlotArraySource } from './slot-array-pool.js';

/** A clip entering a cluster: unit-length embedding plus the fields that fix its rank. */
export interface IncomingClip {
  readonly rank: RankFields;
  readonly embedding: Float32Array;
  /** The clip's own cluster (default: the state's); another one makes this a probed-in entry. */
  readonly home?: number;
  /** With --probe 2: the second cluster the clip is also compared in (default: none). */
  readonly probe?: number;
}

/**
 * A raw-max change of a member that has entries in two compared sets (--probe 2): its verdict is
 * the fold of both sets' raw maxima, which the engine keeps (`DedupEngine`), not one state.
 */
export interface SetRaise {
  readonly id: string;
  /** The clip's own cluster. */
  readonly home: number;
  /** Raw max over the set's members ranked before it (-Infinity when none). */
  readonly score: number;
  /** The first-ranked member reaching it (null when none) and its rank fields. */
  readonly maxId: string | null;
  readonly maxRank: RankFields | null;
  /** The entry has just joined this set. */
  readonly isNew: boolean;
}

/** A clip's current pairwise result, NeMo rules applied (score 0 / itself when nothing positive). */
export interface Verdict {
  readonly id: string;
  readonly maxId: string;
  readonly score: number;
  readonly centroid: number;
}

const sameVerdict = (a: Verdict, b: Verdict) => a.maxId === b.maxId && a.score === b.score;

/** Persistable form of one member (embedding as little-endian float32 bytes). */
export interface MemberRecord {
  readonly rank: RankFields;
  readonly embedding: Float32Array;
  /** Raw max similarity over members ranked before (-Infinity when none). */
  readonly rawScore: number;
  /** Id of the first-ranked member reaching it (null when none). */
  readonly rawMaxId: string | null;
  /** The clip's own cluster (absent: the cluster holding this record). */
  readonly home?: number;
  /** Its probed second cluster (absent or -1: not probed). */
  readonly probe?: number;
}

/**
 * What changed in the states since the last checkpoint, column-wise, for the store: members not
 * stored yet (written whole) and stored members whose raw max rose (only that is rewritten).
 * Embeddings are views into the cluster matrices: valid until the next flush.
 */
export class MemberChanges {
  readonly newCentroid: number[] = [];
  readonly newHome: number[] = [];
  /** -1: not probed. */
  readonly newProbe: number[] = [];
  readonly newRanks: RankFields[] = [];
  readonly newEmbeddings: Float32Array[] = [];
  readonly newRawScore: number[] = [];
  readonly newRawMaxId: (string | null)[] = [];
  readonly raisedCentroid: number[] = [];
  readonly raisedIds: string[] = [];
  readonly raisedRawScore: number[] = [];
  readonly raisedRawMaxId: (string | null)[] = [];

  get size(): number {
    return this.newRanks.length + this.raisedIds.length;
  }
}

/**
 * Scores this close may be one product computed twice (float32 GEMM sums over 768 terms in
 * another order differ by a few 1e-6 at most): then the rows' bits are compared.
 */
const IDENTICAL_SLACK = 1e-4;

/** Per-member flags. */
const STORED = 1; // in the store: a change only rewrites its raw max
const DIRTY = 2; // changed since the last checkpoint

/** Estimated bytes per member beyond its typed-array rows: the rank fields object and its id. */
const RANK_FIELDS_BYTES = 200;

/** Bytes per slot of the typed arrays besides the embedding (raw score, raw max, flags, link, home, order, row hash). */
const SLOT_BYTES = 8 + 4 + 1 + 4 + 4 + 4 + 4;

/**
 * One cluster's ranked state for incremental dedup ("Why streaming can be exact"): members kept
 * in rank order with their raw max similarity over members ranked before them. Adding clips
 * only adds candidates, so each member's raw max can only rise, and after any arrival order the
 * state equals the batch result on the same clips.
 *
 * Members live in slots, in arrival order, and never move: embeddings, rank fields and raw
 * maxima are per slot (a raw argmax is a slot, so it never needs renumbering), and the rank order
 * is a permutation of slots. A flush appends the new clips' slots and merges them into the
 * permutation in place from the end, so it moves 4 bytes per member rather than its embedding.
 * Arrays keep spare capacity (doubling), so appends copy each row about once on average.
 */
export class ClusterState {
  readonly centroid: number;
  readonly dim: number;
  #spec: RankSpec;
  #idType: IdType;
  #size = 0;
  /** Per slot. */
  #ranks: RankFields[] = [];
  #emb: Float32Array;
  #rawScore: Float64Array;
  /** Slot of the raw argmax, -1 when none. */
  #rawMax: Int32Array;
  #flags: Uint8Array;
  /**
   * Per slot: the clip's other compared set (--probe 2), -1 when it has none. For an own clip that
   * is its probe cluster; for a probed-in entry (`#home[s] !== centroid`) its own cluster.
   */
  #link: Int32Array;
  /** Per slot: the clip's own cluster. */
  #home: Int32Array;
  /** Rank position → slot. */
  #order: Int32Array;
  /** Per slot: `hashRows` of its embedding, computed once (the kernel's identical-row check). */
  #rowHash: Int32Array;
  #dirty = 0;
  /** Where growth takes its arrays and gives the old ones (a budgeted engine's pool); null: allocate. */
  readonly #arrays: SlotArraySource | null;

  /** `arrays`: take slot arrays from it and give them back on growth and `releaseArrays` (default: allocate). */
  constructor(centroid: number, dim: number, spec: RankSpec, idType: IdType, arrays: SlotArraySource | null = null) {
    this.centroid = centroid;
    this.dim = dim;
    this.#spec = spec;
    this.#idType = idType;
    this.#arrays = arrays;
    this.#emb = new Float32Array(0);
    this.#rawScore = new Float64Array(0);
    this.#rawMax = new Int32Array(0);
    this.#flags = new Uint8Array(0);
    this.#link = new Int32Array(0);
    this.#home = new Int32Array(0);
    this.#order = new Int32Array(0);
    this.#rowHash = new Int32Array(0);
  }

  get size(): number {
    return this.#size;
  }

  /** Members that are the cluster's own clips (not probed in from another cluster). */
  get ownSize(): number {
    let n = 0;
    for (let s = 0; s < this.#size; s++) if (this.#home[s] === this.centroid) n++;
    return n;
  }

  /** About what `residentBytes` is right after `restore` of `n` members of `dim` floats. */
  static restoredBytes(n: number, dim: number): number {
    return ClusterState.#restoreCapacity(n) * (dim * 4 + SLOT_BYTES) + n * RANK_FIELDS_BYTES;
  }

  /** Room for the clips that made the caller load it, so the next flush does not regrow it at once. */
  static #restoreCapacity(n: number): number {
    return n + Math.max(64, n >> 3);
  }

  /** Memory the state holds (typed arrays at capacity plus an estimate per member's rank fields). */
  get residentBytes(): number {
    const arrays = this.#emb.byteLength + this.#rawScore.byteLength + this.#rawMax.byteLength + this.#flags.byteLength + this.#link.byteLength + this.#home.byteLength + this.#order.byteLength + this.#rowHash.byteLength;
    return arrays + this.#size * RANK_FIELDS_BYTES;
  }

  /** Members changed since the last `takeChanges`. */
  get dirtyCount(): number {
    return this.#dirty;
  }

  /** Restore from persisted members (any order); they count as stored. `arrays`: as the constructor's. */
  static restore(centroid: number, dim: number, spec: RankSpec, idType: IdType, members: readonly MemberRecord[], arrays: SlotArraySource | null = null): ClusterState {
    const state = new ClusterState(centroid, dim, spec, idType, arrays);
    const sorted = [...members].sort((a, b) => compareRankKeys(a.rank, b.rank, spec, idType));
    const n = sorted.length;
    state.#reserve(ClusterState.#restoreCapacity(n));
    const slotOf = new Map(sorted.map((m, i) => [m.rank.id, i]));
    sorted.forEach((m, i) => {
      state.#ranks[i] = m.rank;
      state.#emb.set(m.embedding, i * dim);
      state.#rawScore[i] = m.rawScore;
      state.#rawMax[i] = m.rawMaxId === null ? -1 : slotOf.get(m.rawMaxId) ?? -1;
      const home = m.home ?? centroid;
      state.#home[i] = home;
      state.#link[i] = home !== centroid ? home : m.probe ?? -1;
      state.#order[i] = i;
    });
    state.#flags.fill(STORED, 0, n);
    hashRows(state.#emb, 0, n, dim, state.#rowHash);
    state.#size = n;
    return state;
  }

  /** Every member in rank order (embeddings copied), probed-in entries included. */
  members(): MemberRecord[] {
    const out: MemberRecord[] = new Array(this.#size);
    for (let p = 0; p < this.#size; p++) out[p] = this.#record(this.#order[p]!);
    return out;
  }

  /** The cluster's own clips in rank order (embeddings copied): what kmeans_results lists. */
  ownMembers(): MemberRecord[] {
    const out: MemberRecord[] = [];
    for (let p = 0; p < this.#size; p++) {
      const s = this.#order[p]!;
      if (this.#home[s] === this.centroid) out.push(this.#record(s));
    }
    return out;
  }

  #record(s: number): MemberRecord {
    const at = this.#rawMax[s]!;
    const home = this.#home[s]!;
    const link = this.#link[s]!;
    return {
      rank: this.#ranks[s]!,
      embedding: this.#emb.slice(s * this.dim, (s + 1) * this.dim),
      rawScore: this.#rawScore[s]!,
      rawMaxId: at < 0 ? null : this.#ranks[at]!.id,
      home,
      probe: home !== this.centroid ? this.centroid : link,
    };
  }

  /** Whether the member at rank position `p` also has an entry in another compared set. */
  linkedAt(p: number): boolean {
    return this.#link[this.#order[p]!]! >= 0;
  }

  /** Whether the member at rank position `p` is one of the cluster's own clips. */
  ownAt(p: number): boolean {
    return this.#home[this.#order[p]!] === this.centroid;
  }

  /** The verdict of the member at rank position `p`. */
  verdictAt(p: number): Verdict {
    const s = this.#order[p]!;
    return this.#verdictOf(s, this.#rawScore[s]!, this.#rawMax[s]!);
  }

  /** NeMo's rule on a raw max: nothing positive before → score 0 and the clip itself. */
  #verdictOf(slot: number, raw: number, at: number): Verdict {
    const id = this.#ranks[slot]!.id;
    if (at < 0 || raw < 0) return { id, maxId: id, score: 0, centroid: this.#home[slot]! };
    return { id, maxId: this.#ranks[at]!.id, score: raw, centroid: this.#home[slot]! };
  }

  #raiseOf(slot: number, isNew: boolean): SetRaise {
    const at = this.#rawMax[slot]!;
    return {
      id: this.#ranks[slot]!.id,
      home: this.#home[slot]!,
      score: this.#rawScore[slot]!,
      maxId: at < 0 ? null : this.#ranks[at]!.id,
      maxRank: at < 0 ? null : this.#ranks[at]!,
      isNew,
    };
  }

  /**
   * Every member's verdict in this set alone, in rank order (probed-in entries included; a linked
   * member's published verdict is the fold over its sets, see `DedupEngine`).
   */
  verdicts(): Verdict[] {
    const out: Verdict[] = new Array(this.#size);
    for (let p = 0; p < this.#size; p++) out[p] = this.verdictAt(p);
    return out;
  }

  /**
   * Append the members changed since the last call to `out` and mark them clean and stored.
   * Call it only once the caller will persist them (a failed persist ends the process, and the
   * next run restores from the store).
   */
  takeChanges(out: MemberChanges): void {
    if (this.#dirty === 0) return;
    const { dim } = this;
    const flags = this.#flags;
    for (let s = 0; s < this.#size; s++) {
      const f = flags[s]!;
      if (!(f & DIRTY)) continue;
      const at = this.#rawMax[s]!;
      const rawMaxId = at < 0 ? null : this.#ranks[at]!.id;
      if (f & STORED) {
        out.raisedCentroid.push(this.centroid);
        out.raisedIds.push(this.#ranks[s]!.id);
        out.raisedRawScore.push(this.#rawScore[s]!);
        out.raisedRawMaxId.push(rawMaxId);
      } else {
        out.newCentroid.push(this.centroid);
        const home = this.#home[s]!;
        out.newHome.push(home);
        out.newProbe.push(home !== this.centroid ? this.centroid : this.#link[s]!);
        out.newRanks.push(this.#ranks[s]!);
        out.newEmbeddings.push(this.#emb.subarray(s * dim, (s + 1) * dim));
        out.newRawScore.push(this.#rawScore[s]!);
        out.newRawMaxId.push(rawMaxId);
      }
      flags[s] = STORED;
    }
    this.#dirty = 0;
  }

  /** Whether the embeddings in slots `a` and `b` have the same bits. */
  #sameRow(a: number, b: number): boolean {
    const { dim } = this;
    const bits = new Int32Array(this.#emb.buffer, this.#emb.byteOffset, this.#size * dim);
    for (let k = 0; k < dim; k++) if (bits[a * dim + k] !== bits[b * dim + k]) return false;
    return true;
  }

  /** The slot arrays as one value (for the pool). */
  #slotArrays(): SlotArrays {
    return { emb: this.#emb, rawScore: this.#rawScore, rawMax: this.#rawMax, flags: this.#flags, link: this.#link, home: this.#home, order: this.#order, rowHash: this.#rowHash };
  }

  #adopt(a: SlotArrays): void {
    this.#emb = a.emb;
    this.#rawScore = a.rawScore;
    this.#rawMax = a.rawMax;
    this.#flags = a.flags;
    this.#link = a.link;
    this.#home = a.home;
    this.#order = a.order;
    this.#rowHash = a.rowHash;
  }

  /**
   * Room for `n` members: capacity doubles (unless the state's source says otherwise), so appends
   * copy each row about once on average. The new arrays come from the source when it has some
   * (they may be bigger), the old ones go back to it.
   */
  #reserve(n: number): void {
    const cap = this.#rawScore.length;
    if (n <= cap) return;
    const { dim } = this;
    const want = Math.max(n, this.#arrays?.growTo?.(n, cap) ?? cap * 2, 64);
    const next = this.#arrays?.take(want) ?? allocateSlotArrays(want, dim);
    const size = this.#size;
    if (size > 0) {
      next.emb.set(this.#emb.subarray(0, size * dim));
      next.rawScore.set(this.#rawScore.subarray(0, size));
      next.rawMax.set(this.#rawMax.subarray(0, size));
      next.flags.set(this.#flags.subarray(0, size));
      next.link.set(this.#link.subarray(0, size));
      next.home.set(this.#home.subarray(0, size));
      next.order.set(this.#order.subarray(0, size));
      next.rowHash.set(this.#rowHash.subarray(0, size));
    }
    if (cap > 0) this.#arrays?.release(this.#slotArrays());
    this.#adopt(next);
  }

  /**
   * Give the slot arrays back to the state's source (the engine evicts it); the state is then
   * empty and must not be used again.
   */
  releaseArrays(): void {
    if (this.#rawScore.length > 0) this.#arrays?.release(this.#slotArrays());
    this.#adopt(allocateSlotArrays(0, this.dim));
    this.#ranks = [];
    this.#size = 0;
    this.#dirty = 0;
  }

  /**
   * Add a block of new clips: score each against every member ranked before it (old and new),
   * and raise the score of old members ranked after some new clip. Returns the verdicts that
   * changed (new clips included) of members in this set only, and the raw-max changes of members
   * with an entry in another set too (`raised`, new entries included: the caller folds them);
   * changed members are marked for the next `takeChanges`.
   */
  async addClips(clips: readonly IncomingClip[], kernel: SimilarityKernel): Promise<{ changed: Verdict[]; raised: SetRaise[] }> {
    const m = clips.length;
    if (m === 0) return { changed: [], raised: [] };
    const { dim } = this;
    const spec = this.#spec;
    const idType = this.#idType;
    const cmp = (a: RankFields, b: RankFields) => compareRankKeys(a, b, spec, idType);
    const incoming = [...clips].sort((a, b) => cmp(a.rank, b.rank));
    const oldN = this.#size;
    const n = oldN + m;
    this.#reserve(n);
    const ranks = this.#ranks;
    const emb = this.#emb;
    const rawScore = this.#rawScore;
    const rawMax = this.#rawMax;
    const flags = this.#flags;
    const link = this.#link;
    const homeOf = this.#home;
    const order = this.#order;

    // Where each new clip lands: old members ranked before it (binary search; `incoming` is
    // sorted, so the searches only move forward) plus the new clips before it.
    const newPos = new Int32Array(m);
    for (let j = 0, lo = 0; j < m; j++) {
      const key = incoming[j]!.rank;
      let hi = oldN;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (cmp(ranks[order[mid]!]!, key) < 0) lo = mid + 1;
        else hi = mid;
      }
      newPos[j] = lo + j;
    }
    const firstNew = newPos[0]!;
    const lastNew = newPos[m - 1]!;

    // New clips take slots oldN + j (in rank order, so they are the queries as they lie).
    for (let j = 0; j < m; j++) {
      const s = oldN + j;
      const c = incoming[j]!;
      ranks[s] = c.rank;
      emb.set(c.embedding, s * dim);
      rawScore[s] = -Infinity;
      rawMax[s] = -1;
      flags[s] = DIRTY; // new: not stored yet
      const home = c.home ?? this.centroid;
      homeOf[s] = home;
      link[s] = home !== this.centroid ? home : c.probe ?? -1;
    }
    hashRows(emb, oldN, n, dim, this.#rowHash);
    // Merge into the rank order in place from the end: the old run after new clip j moves up by j + 1.
    let end = oldN;
    for (let j = m - 1; j >= 0; j--) {
      const start = newPos[j]! - j;
      if (end > start) order.copyWithin(start + j + 1, start, end);
      order[newPos[j]!] = oldN + j;
      end = start;
    }
    this.#size = n;
    const posOf = new Int32Array(n);
    for (let p = 0; p < n; p++) posOf[order[p]!] = p;

    // New clips against everything ranked before them, and old members ranked after some new clip
    // against the new clips before them (they may gain a candidate).
    const queries = emb.subarray(oldN * dim, n * dim);
    /** Per new clip: max over members ranked before it, and the slot of the first reaching it. */
    let newScore: Float32Array;
    let newAt: Int32Array;
    /** Per slot: max over the new clips ranked before it, and which new clip (-1: none). */
    let rowScore: Float32Array | null = null;
    let rowHit: Int32Array | null = null;
    if (kernel.crossRankedMax) {
      const both = await kernel.crossRankedMax({ queries, queryPos: newPos, rows: emb.subarray(0, n * dim), rowPos: posOf, rowOrder: order.subarray(0, n), rowHash: this.#rowHash.subarray(0, n), dim });
      newScore = both.forQueries.score;
      newAt = both.forQueries.index;
      rowScore = both.forRows.score;
      rowHit = both.forRows.index;
    } else {
      // Two rankedMax calls over the rows gathered in rank order (a copy; backends without the
      // one-product path).
      const ranked = new Float32Array(n * dim);
      for (let p = 0; p < n; p++) ranked.set(emb.subarray(order[p]! * dim, (order[p]! + 1) * dim), p * dim);
      const iota = Int32Array.from({ length: n }, (_, i) => i);
      const forNew = await kernel.rankedMax({ queries, queryPos: newPos, candidates: ranked.subarray(0, lastNew * dim), candidatePos: iota.subarray(0, lastNew), dim });
      newScore = forNew.score;
      newAt = forNew.index.map((p) => (p < 0 ? -1 : order[p]!));
      const from = firstNew + 1;
      if (from < n) {
        const forRows = await kernel.rankedMax({ queries: ranked.subarray(from * dim, n * dim), queryPos: iota.subarray(from, n), candidates: queries, candidatePos: newPos, dim });
        rowScore = new Float32Array(n).fill(-Infinity);
        rowHit = new Int32Array(n).fill(-1);
        for (let p = from; p < n; p++) {
          rowScore[order[p]!] = forRows.score[p - from]!;
          rowHit[order[p]!] = forRows.index[p - from]!;
        }
      }
    }
    const changed: Verdict[] = [];
    const raised: SetRaise[] = [];
    for (let j = 0; j < m; j++) {
      const s = oldN + j;
      rawScore[s] = newScore[j]!;
      rawMax[s] = newAt[j]!;
      if (link[s]! >= 0) raised.push(this.#raiseOf(s, true));
      else changed.push(this.#verdictOf(s, rawScore[s]!, rawMax[s]!));
    }
    if (rowScore && rowHit) {
      for (let s = 0; s < oldN; s++) {
        const hit = rowHit[s]!;
        if (hit < 0) continue;
        let score = rowScore[s]!;
        const at = oldN + hit;
        const oldScore = rawScore[s]!;
        const oldAt = rawMax[s]!;
        if (oldAt >= 0 && Math.abs(score - oldScore) <= IDENTICAL_SLACK && this.#sameRow(at, oldAt)) {
          // A copy of the current argmax: the products are equal, only the GEMM's last bit may
          // differ between this flush and the one that found it. The first-ranked copy wins.
          if (posOf[at]! > posOf[oldAt]!) continue;
          score = oldScore;
        } else if (!(score > oldScore || (score === oldScore && (oldAt < 0 || posOf[at]! < posOf[oldAt]!)))) {
          // Higher wins; on an exact tie the first-ranked candidate wins (NeMo's argmax).
          continue;
        }
        const before = this.#verdictOf(s, oldScore, oldAt);
        rawScore[s] = score;
        rawMax[s] = at;
        if (!(flags[s]! & DIRTY)) {
          flags[s] = flags[s]! | DIRTY;
          this.#dirty++;
        }
        if (link[s]! >= 0) {
          raised.push(this.#raiseOf(s, false));
          continue;
        }
        const v = this.#verdictOf(s, score, at);
        if (!sameVerdict(v, before)) changed.push(v);
      }
    }
    this.#dirty += m;
    return { changed, raised };
  }
}
