import { assignToCentroids, probedCentroid, secondNearestCentroids } from '../assign/index.js';
import type { SimilarityKernel } from '../kernels/types.js';
import { compareRankKeys, rankHash, type RankFields } from '../rank/index.js';
import { invariant } from '../shared/errors.js';
import type { ClipBatch, IdType, MetadataValue, RankSpec } from '../shared/types.js';
import type { SourcePosition, StateStore, StoredMember, StoredProbeEntry } from '../store/state-store.js';
import { ClusterState, MemberChanges, type IncomingClip, type MemberRecord, type SetRaise, type Verdict } from './cluster-state.js';
import { SlotArrayPool, type SlotArraySource } from './slot-array-pool.js';

export interface DedupEngineOptions {
  /** k × dim centroids (NeMo kmeans_centroids.npy). */
  readonly centroids: Float32Array;
  readonly dim: number;
  readonly rankSpec: RankSpec;
  readonly idType: IdType;
  readonly kernel: SimilarityKernel;
  /** Duplicates are clips with score >= 1 - eps; only they are published. */
  readonly eps: number;
  /** A cluster's buffer is flushed through the kernel when it holds this many clips. */
  readonly flushMaxRows: number;
  /** Metadata columns kept for ranking and outputs. */
  readonly metadataFields: readonly string[];
  /**
   * Compared sets per clip: 1 (default) = its own cluster (NeMo); 2 = also its second-nearest
   * centroid's cluster when that centroid is less than `probeMargin` farther (l2), as `run --probe 2`.
   */
  readonly probe?: number;
  /** With probe 2: the l2 margin (see `probedCentroid`); 0 probes nothing. */
  readonly probeMargin?: number;
  /**
   * Resident cluster states (embeddings, rank fields) are kept under this many MiB when there is a
   * store: states are loaded when a cluster gets clips and the least recently used clean ones are
   * evicted (they are in the store). States changed since the last checkpoint cannot be evicted,
   * so between checkpoints the bound is exceeded by at most what one checkpoint interval touches.
   * Default (undefined): unbounded, every state loaded at `create` (as before budgets existed).
   */
  readonly stateMemoryMb?: number;
}

/**
 * The running best of a clip compared in two sets (--probe 2): the fold of both sets' raw maxima,
 * as `ProbedScores` folds them in batch (higher wins; on equal scores the winner ranked first).
 */
interface ProbeFold {
  readonly home: number;
  score: number;
  maxId: string | null;
  maxRank: RankFields | null;
  /** A verdict has been handed out for it (it is published when it is a duplicate). */
  announced: boolean;
}

/** Whether raw max (score, winner) beats the fold so far (`ProbedScores.foldSet`'s rule). */
function beatsFold(fold: ProbeFold, score: number, maxId: string | null, maxRank: RankFields | null, spec: RankSpec, idType: IdType): boolean {
  if (maxId === null || maxRank === null) return false;
  if (fold.maxId === null || fold.maxRank === null) return true;
  if (score > fold.score) return true;
  return score === fold.score && maxId !== fold.maxId && compareRankKeys(maxRank, fold.maxRank, spec, idType) < 0;
}

/** NeMo's rule on a folded raw max: nothing positive before → score 0 and the clip itself. */
function foldVerdict(id: string, fold: ProbeFold): Verdict {
  if (fold.maxId === null || fold.score < 0) return { id, maxId: id, score: 0, centroid: fold.home };
  return { id, maxId: fold.maxId, score: fold.score, centroid: fold.home };
}

const MIB = 1024 * 1024;

/** Most bytes of evicted states' arrays kept for reuse under a budget (see `SlotArrayPool`). */
const POOL_MAX_BYTES = 64 * MIB;

/** A checkpoint cut by `DedupEngine.cutCheckpoint`: its verdicts, and the write that makes it durable. */
export interface PendingCheckpoint {
  /** Duplicate verdicts changed since the previous cut: publish them once `persist` resolved. */
  readonly verdicts: Verdict[];
  /** Write the cut's changed members and positions (one transaction). Call once. */
  persist(): Promise<void>;
}

/**
 * The incremental dedup core shared by `stream` and `replay`: assigns arriving clips to fixed
 * centroids, buffers them per cluster, folds each buffer into the cluster's ranked state through
 * the kernel, and at a checkpoint persists touched members with the source positions and hands
 * back the duplicate verdicts that changed. After any arrival order, the verdicts equal the
 * batch workflow's on the same clips and centroids (with --probe 2, `run --probe 2`'s).
 *
 * With a store, cluster states live in it and are resident only while used (see `stateMemoryMb`);
 * ids, sizes and the --probe 2 folds (no embeddings) stay in memory.
 */
export class DedupEngine {
  readonly options: DedupEngineOptions;
  /** Every id in state or in a buffer; a repeated id is refused by validation. */
  readonly knownIds = new Set<string>();
  readonly #store: StateStore | null;
  readonly #k: number;
  /** Resident states by centroid (null: not loaded, or evicted — its members are in the store). */
  readonly #states: (ClusterState | null)[];
  /** Centroids of resident states, least recently used first. */
  readonly #lru = new Set<number>();
  /** Per cluster: own clips flushed into its state, and entries (own + probed-in). */
  readonly #ownSize: number[];
  readonly #entries: number[];
  readonly #buffers: IncomingClip[][];
  /** Per probed clip (--probe 2): the fold of its two sets. */
  readonly #folds = new Map<string, ProbeFold>();
  readonly #budgetBytes: number;
  #buffered = 0;
  readonly #pendingVerdicts = new Map<string, Verdict>();
  readonly #positions = new Map<string, SourcePosition>();
  /**
   * Resolves once the write of every checkpoint cut so far has settled (or was abandoned): reads
   * of the store and a spilling cut wait for it.
   */
  #writesSettled: Promise<void> = Promise.resolve();
  /** Releases of cut checkpoints whose write has not settled (see `abandonPendingCheckpoints`). */
  readonly #unsettledCuts = new Set<() => void>();
  /**
   * Under a budget: arrays of evicted and grown-out states, reused by the states loaded next (a
   * reload otherwise allocated a new matrix while the evicted ones waited for the GC).
   */
  readonly #pool: SlotArrayPool | null;
  readonly #arraySources: (SlotArraySource | null)[];
  /** Checkpoints cut so far, and the last one whose write settled (writes settle in cut order). */
  #epoch = 0;
  #settledEpoch = 0;
  /**
   * Per cluster: the last cut whose write, still to run, holds views of the state's rows (0:
   * none). Its arrays are reused only after that write settled.
   */
  readonly #pinEpoch: number[];
  /** Checkpoints were abandoned: their epochs never settle, so nothing pooled is reused. */
  #abandoned = false;
  /** Flush latency of the last kernel passes, for metrics. */
  lastFlushMs = 0;
  clipsAdded = 0;
  /** Cluster states loaded from the store / evicted to it since start (for tests and logs). */
  statesLoaded = 0;
  statesEvicted = 0;
  /** Checkpoints that wrote changes early to stay under the budget (more than one append). */
  checkpointSpills = 0;
  /** Most resident state bytes seen right after a checkpoint's evictions. */
  peakResidentBytesAfterCheckpoint = 0;

  private constructor(options: DedupEngineOptions, store: StateStore | null) {
    this.options = options;
    this.#store = store;
    this.#k = options.centroids.length / options.dim;
    this.#states = new Array<ClusterState | null>(this.#k).fill(null);
    this.#ownSize = new Array<number>(this.#k).fill(0);
    this.#entries = new Array<number>(this.#k).fill(0);
    this.#buffers = Array.from({ length: this.#k }, () => []);
    const mb = options.stateMemoryMb;
    this.#budgetBytes = store && mb !== undefined && Number.isFinite(mb) ? mb * MIB : Infinity;
    this.#pool = this.#budgetBytes === Infinity ? null : new SlotArrayPool(Math.min(POOL_MAX_BYTES, this.#budgetBytes / 4));
    this.#pinEpoch = new Array<number>(this.#k).fill(0);
    this.#arraySources = Array.from({ length: this.#k }, (_, c) => this.#arraySourceOf(c));
  }

  /** Cluster c's way to the pool: arrays it gives back wait for the write that may still read them. */
  #arraySourceOf(c: number): SlotArraySource | null {
    const pool = this.#pool;
    if (!pool) return null;
    return {
      take: (capacity) => (this.#abandoned ? null : pool.take(capacity, this.#settledEpoch)),
      release: (arrays) => {
        if (!this.#abandoned) pool.release(arrays, this.#pinEpoch[c]!);
      },
      growTo: (needed, current) => this.#growTo(needed, current),
    };
  }

  /**
   * A state's next capacity: doubled while that still fits the budget (appends copy each row about
   * once), else an eighth more than needed — a doubled matrix near the budget evicted other states
   * for slack, and came back as arrays too big for the states loaded next.
   */
  #growTo(needed: number, current: number): number {
    const doubled = Math.max(needed, current * 2);
    if (this.residentBytes + (doubled - current) * this.options.dim * 4 <= this.#budgetBytes) return doubled;
    return needed + Math.max(64, needed >> 3);
  }

  /** Reuse of evicted states' arrays (tests and logs): reused / released / dropped, and bytes held. */
  get arrayPool(): { reused: number; released: number; dropped: number; bytes: number } {
    const p = this.#pool;
    return { reused: p?.reused ?? 0, released: p?.released ?? 0, dropped: p?.dropped ?? 0, bytes: p?.bytes ?? 0 };
  }

  /**
   * A new engine, continuing from `store` when it holds state: ids, cluster sizes, the --probe 2
   * folds and positions are read now; with a budget, cluster states when their clusters get clips
   * (without one, all of them now).
   */
  static async create(options: DedupEngineOptions, store: StateStore | null = null): Promise<DedupEngine> {
    const engine = new DedupEngine(options, store);
    if (store) {
      for (const [c, n] of await store.clusterSizes()) {
        invariant(c >= 0 && c < engine.#k, `state has cluster ${c}, the centroids ${engine.#k}`);
        engine.#ownSize[c] = n.own;
        engine.#entries[c] = n.entries;
      }
      if (engine.#budgetBytes === Infinity) {
        // No budget: every state resident from the start (`allVerdicts` and `clusters` see all).
        const byCluster = new Map<number, StoredMember[]>();
        for (const m of await store.loadMembers()) {
          let list = byCluster.get(m.centroid);
          if (!list) byCluster.set(m.centroid, (list = []));
          list.push(m);
          if (m.home === m.centroid) engine.knownIds.add(m.rank.id);
        }
        for (const [c, list] of [...byCluster].sort((a, b) => a[0] - b[0])) {
          engine.#states[c] = ClusterState.restore(c, options.dim, options.rankSpec, options.idType, list);
          engine.#lru.add(c);
        }
      } else {
        for (const id of await store.loadIds()) engine.knownIds.add(id);
      }
      for (const e of await store.loadProbeEntries()) engine.#restoreFold(e);
      for (const p of await store.loadPositions()) engine.#positions.set(`${p.source}\u0000${p.partition}`, p);
    }
    return engine;
  }

  #restoreFold(e: StoredProbeEntry): void {
    let fold = this.#folds.get(e.id);
    if (!fold) this.#folds.set(e.id, (fold = { home: e.home, score: -Infinity, maxId: null, maxRank: null, announced: true }));
    if (beatsFold(fold, e.rawScore, e.rawMaxId, e.maxRank, this.options.rankSpec, this.options.idType)) {
      fold.score = e.rawScore;
      fold.maxId = e.rawMaxId;
      fold.maxRank = e.maxRank;
    }
  }

  /** Resident cluster states, by ascending centroid (the others are in the store). */
  get clusters(): ClusterState[] {
    return this.#states.filter((s): s is ClusterState => s !== null);
  }

  get bufferedRows(): number {
    return this.#buffered;
  }

  /** Bytes the resident cluster states hold (see `ClusterState.residentBytes`). */
  get residentBytes(): number {
    let n = 0;
    for (const c of this.#lru) n += this.#states[c]!.residentBytes;
    return n;
  }

  /** The position a source should resume from (null when this state has none). */
  position(source: string, partition: number): string | null {
    return this.#positions.get(`${source}\u0000${partition}`)?.nextOffset ?? null;
  }

  /** Clips have been consumed up to `nextOffset` (exclusive); recorded at the next checkpoint. */
  advance(source: string, partition: number, nextOffset: string): void {
    this.#positions.set(`${source}\u0000${partition}`, { source, partition, nextOffset });
  }

  /** Add validated, unit-length clips: assign, buffer (with --probe 2 in both sets), flush full clusters. */
  async add(batch: ClipBatch): Promise<void> {
    const n = batch.ids.length;
    if (n === 0) return;
    const { dim, kernel } = this.options;
    const a = await assignToCentroids(batch.embeddings, this.options.centroids, dim, kernel);
    const margin = this.options.probeMargin ?? 0;
    const probing = (this.options.probe ?? 1) > 1 && margin > 0;
    const second = probing ? await secondNearestCentroids(batch.embeddings, this.options.centroids, dim, a.centroid, kernel) : null;
    const metaNames = this.options.metadataFields.filter((f) => f in batch.metadata);
    const full = new Set<number>();
    for (let i = 0; i < n; i++) {
      const id = batch.ids[i]!;
      const metadata: Record<string, MetadataValue> = {};
      for (const name of metaNames) metadata[name] = batch.metadata[name]![i] ?? null;
      const rank: RankFields = {
        id,
        cosineDistToCent: a.cosineDistToCent[i]!,
        l2DistToCent: a.l2DistToCent[i]!,
        hash: rankHash(id, this.options.rankSpec.seed),
        metadata,
      };
      const c = a.centroid[i]!;
      const p = second ? probedCentroid(second.centroid[i]!, second.l2DistToCent[i]!, a.l2DistToCent[i]!, margin) : -1;
      // A view: the batch's array is not reused, and the flush copies rows into the cluster.
      const embedding = batch.embeddings.subarray(i * dim, (i + 1) * dim);
      this.#buffers[c]!.push({ rank, embedding, home: c, probe: p });
      if (this.#buffers[c]!.length >= this.options.flushMaxRows) full.add(c);
      if (p >= 0) {
        // Its second entry: ranked in that set by its own rank fields (the global order).
        this.#buffers[p]!.push({ rank, embedding, home: c, probe: p });
        if (this.#buffers[p]!.length >= this.options.flushMaxRows) full.add(p);
        this.#folds.set(id, { home: c, score: -Infinity, maxId: null, maxRank: null, announced: false });
      }
      this.knownIds.add(id);
    }
    this.#buffered += n;
    this.clipsAdded += n;
    for (const c of full) await this.#flushCluster(c);
  }

  /** The resident state of cluster c, loaded from the store when it has members there. */
  async #stateOf(c: number): Promise<ClusterState> {
    let state = this.#states[c];
    if (state) {
      this.#lru.delete(c);
      this.#lru.add(c);
      return state;
    }
    const { dim, rankSpec, idType } = this.options;
    if (this.#store && this.#entries[c]! > 0) {
      // A write in flight or still to come may hold its members (and uses the store's connection).
      await this.#writesSettled;
      // Room first: the arrays of the states evicted for it are then there to be reused.
      this.#evictOverBudget(false, ClusterState.restoredBytes(this.#entries[c]!, dim));
      state = ClusterState.restore(c, dim, rankSpec, idType, await this.#store.loadMembers(c), this.#arraySources[c]);
      invariant(state.size === this.#entries[c], `cluster ${c}: the store holds ${state.size} members, the engine counted ${this.#entries[c]}`);
      this.statesLoaded++;
    } else {
      state = new ClusterState(c, dim, rankSpec, idType, this.#arraySources[c]);
    }
    this.#states[c] = state;
    this.#lru.add(c);
    this.#evictOverBudget();
    return state;
  }

  /**
   * Evict least recently used states until the resident ones fit the budget (with `room` bytes to
   * spare). Only states whose members are all in the store (nothing changed since the last
   * checkpoint) can go; while clips are added the most recently used one stays (it is being
   * worked on).
   */
  #evictOverBudget(keepMostRecent = true, room = 0): void {
    if (this.#budgetBytes === Infinity) return;
    const limit = this.#budgetBytes - room;
    let bytes = this.residentBytes;
    if (bytes <= limit) return;
    let left = this.#lru.size;
    for (const c of [...this.#lru]) {
      if (bytes <= limit || (keepMostRecent && --left === 0)) break;
      const state = this.#states[c]!;
      if (state.dirtyCount > 0) continue;
      bytes -= state.residentBytes;
      state.releaseArrays();
      this.#states[c] = null;
      this.#lru.delete(c);
      this.statesEvicted++;
    }
  }

  async #flushCluster(c: number): Promise<void> {
    const clips = this.#buffers[c]!;
    if (clips.length === 0) return;
    this.#buffers[c] = [];
    let own = 0;
    for (const clip of clips) if (clip.home === c) own++;
    this.#buffered -= own;
    const state = await this.#stateOf(c);
    const started = performance.now();
    const { changed, raised } = await state.addClips(clips, this.options.kernel);
    this.lastFlushMs = performance.now() - started;
    this.#ownSize[c]! += own;
    this.#entries[c]! += clips.length;
    const threshold = 1 - this.options.eps;
    for (const v of changed) if (v.score >= threshold) this.#pendingVerdicts.set(v.id, v);
    for (const r of raised) this.#foldRaise(r, threshold);
  }

  /** A probed clip's raw max rose in one of its sets: its verdict changes when the fold does. */
  #foldRaise(r: SetRaise, threshold: number): void {
    const fold = this.#folds.get(r.id);
    invariant(fold !== undefined, `no probe fold for clip ${r.id}`);
    const beats = beatsFold(fold, r.score, r.maxId, r.maxRank, this.options.rankSpec, this.options.idType);
    if (beats) {
      fold.score = r.score;
      fold.maxId = r.maxId;
      fold.maxRank = r.maxRank;
    }
    if (!beats && fold.announced) return;
    fold.announced = true;
    const v = foldVerdict(r.id, fold);
    if (v.score >= threshold) this.#pendingVerdicts.set(v.id, v);
  }

  /** Flush every buffer through the kernel. */
  async flushAll(): Promise<void> {
    for (let c = 0; c < this.#buffers.length; c++) await this.#flushCluster(c);
  }

  /**
   * Flush everything, persist changed members and positions in one transaction, and return the
   * duplicate verdicts that changed since the last checkpoint (publish them, then commit offsets).
   * Then resident states beyond the memory budget are evicted (they are in the store now).
   */
  async checkpoint(): Promise<Verdict[]> {
    const cut = await this.cutCheckpoint();
    await cut.persist();
    this.#evictOverBudget(false);
    this.peakResidentBytesAfterCheckpoint = Math.max(this.peakResidentBytesAfterCheckpoint, this.residentBytes);
    return cut.verdicts;
  }

  /**
   * The first half of `checkpoint`, for callers that overlap the write with consuming more clips:
   * flush every buffer and set aside the changed members, the positions so far and the changed
   * duplicate verdicts. `persist()` then writes them in one transaction (publish the verdicts after
   * it, then commit offsets). Meanwhile clips may be added (and full buffers flushed), and more
   * checkpoints cut; their `persist` calls must come in cut order, each after the previous one
   * settled. A state to be read from the store waits for every write cut before.
   */
  async cutCheckpoint(): Promise<PendingCheckpoint> {
    // States clean since they were cut may go before the flush loads others (a state evicted
    // before its write is durable is read back only after that write).
    this.#evictOverBudget(false);
    const store = this.#store;
    const epoch = ++this.#epoch;
    let write: () => Promise<void> = async () => {};
    if (!store) {
      await this.flushAll();
    } else if (this.#budgetBytes === Infinity) {
      await this.flushAll();
      // Changed members are marked stored as they are taken; if the write fails the process stops
      // and the next run restores from what the store holds.
      const changes = new MemberChanges();
      for (const c of this.#lru) this.#states[c]!.takeChanges(changes);
      const positions = [...this.#positions.values()];
      write = () => store.checkpoint(changes, positions);
    } else {
      write = await this.#cutWithinBudget(store, epoch);
    }
    const verdicts = [...this.#pendingVerdicts.values()];
    this.#pendingVerdicts.clear();
    let release!: () => void;
    const settled = new Promise<void>((resolve) => (release = resolve));
    this.#unsettledCuts.add(release);
    const before = this.#writesSettled;
    this.#writesSettled = Promise.all([before, settled]).then(() => undefined);
    let started = false;
    return {
      verdicts,
      persist: () => {
        invariant(!started, 'a checkpoint persisted twice');
        started = true;
        const done = write();
        const settle = () => {
          this.#unsettledCuts.delete(release);
          this.#settledEpoch = Math.max(this.#settledEpoch, epoch);
          release();
        };
        done.then(settle, settle);
        return done;
      },
    };
  }

  /**
   * The caller will not persist the checkpoints cut so far (a durable step before them failed; it
   * is stopping): store reads stop waiting for their writes.
   */
  abandonPendingCheckpoints(): void {
    for (const release of this.#unsettledCuts) release();
    this.#unsettledCuts.clear();
    this.#abandoned = true;
    this.#pool?.clear();
  }

  /**
   * A checkpoint under a memory budget: cluster by cluster, flush and take the changes; whenever
   * the resident states exceed the budget, append the changes so far to an open transaction (the
   * states are then clean) and evict, so a checkpoint that touches every cluster never holds them
   * all. One transaction still, with the positions at its commit. Returns the write still to do:
   * all of it when nothing spilled, else the commit of the open transaction. It never commits
   * here: the caller makes other things durable first (dead letters) — until then the open
   * transaction holds the store, and reads wait for it (`#writesSettled`).
   */
  async #cutWithinBudget(store: StateStore, epoch: number): Promise<() => Promise<void>> {
    let changes = new MemberChanges();
    /** Clusters whose rows `changes` holds views of. */
    let taken: number[] = [];
    let begun = false;
    // Append what was taken to the open transaction (opened on the first spill). Once the rows are
    // written out, the arrays they were views of may be reused: every earlier cut's write settled
    // before this transaction began.
    const spill = async () => {
      if (!begun) {
        // The store's connection is free once the writes cut before this one are done.
        await this.#writesSettled;
        await store.beginCheckpoint();
        this.checkpointSpills++;
        begun = true;
      }
      await store.appendChanges(changes);
      await store.embeddingsWritten();
      for (const t of taken) this.#pinEpoch[t] = 0;
      changes = new MemberChanges();
      taken = [];
    };
    try {
      for (let c = 0; c < this.#k; c++) {
        // Loading it will evict states: spill first, so that their arrays are free for it.
        const loads = this.#states[c] === null && this.#buffers[c]!.length > 0 && this.#entries[c]! > 0;
        if (loads && taken.length > 0 && this.residentBytes + ClusterState.restoredBytes(this.#entries[c]!, this.options.dim) > this.#budgetBytes) await spill();
        await this.#flushCluster(c);
        const state = this.#states[c];
        if (!state || state.dirtyCount === 0) continue;
        state.takeChanges(changes);
        taken.push(c);
        this.#pinEpoch[c] = epoch;
        if (this.residentBytes <= this.#budgetBytes) continue;
        await spill();
        this.#evictOverBudget(false);
      }
      const positions = [...this.#positions.values()];
      if (!begun) return () => store.checkpoint(changes, positions);
      await spill();
      return async () => {
        try {
          await store.commitCheckpoint(positions);
        } catch (err) {
          await store.abortCheckpoint();
          throw err;
        }
      };
    } catch (err) {
      if (begun) await store.abortCheckpoint();
      throw err;
    }
  }

  /** A member's published verdict: the fold of its sets when probed, else its own set's. */
  #verdictAt(state: ClusterState, p: number): Verdict {
    const v = state.verdictAt(p);
    if (!state.linkedAt(p)) return v;
    const fold = this.#folds.get(v.id);
    invariant(fold !== undefined, `no probe fold for clip ${v.id}`);
    return foldVerdict(v.id, fold);
  }

  /** Own members of a state in rank order, with their verdicts. */
  #ownResults(state: ClusterState): { members: MemberRecord[]; verdicts: Verdict[] } {
    const verdicts: Verdict[] = [];
    for (let p = 0; p < state.size; p++) if (state.ownAt(p)) verdicts.push(this.#verdictAt(state, p));
    return { members: state.ownMembers(), verdicts };
  }

  /**
   * Current verdict of every clip (flushed clips only), cluster by cluster in rank order. Needs
   * every non-empty state resident (an engine without a store, or an unbounded one that has
   * touched every cluster); `storedVerdicts` and `forEachCluster` read from the store instead.
   */
  allVerdicts(): Verdict[] {
    const out: Verdict[] = [];
    for (let c = 0; c < this.#k; c++) {
      const state = this.#states[c];
      if (!state) {
        invariant(this.#entries[c] === 0, `allVerdicts: cluster ${c} is not resident; use storedVerdicts()`);
        continue;
      }
      for (let p = 0; p < state.size; p++) if (state.ownAt(p)) out.push(this.#verdictAt(state, p));
    }
    return out;
  }

  /**
   * Verdicts with score >= `minScore` of every clip in the store, as of the last checkpoint, in
   * chunks (no cluster state loaded: raw maxima are read without embeddings). Without a store,
   * those of the resident states.
   */
  async *storedVerdicts(minScore = -Infinity): AsyncGenerator<Verdict[]> {
    if (!this.#store) {
      yield this.allVerdicts().filter((v) => v.score >= minScore);
      return;
    }
    for await (const rows of this.#store.verdictRows()) {
      const out: Verdict[] = [];
      for (const r of rows) {
        let v: Verdict;
        if (r.probe >= 0) {
          const fold = this.#folds.get(r.id);
          invariant(fold !== undefined, `no probe fold for clip ${r.id}`);
          v = foldVerdict(r.id, fold);
        } else if (r.rawMaxId === null || r.rawScore < 0) {
          v = { id: r.id, maxId: r.id, score: 0, centroid: r.centroid };
        } else {
          v = { id: r.id, maxId: r.rawMaxId, score: r.rawScore, centroid: r.centroid };
        }
        if (v.score >= minScore) out.push(v);
      }
      if (out.length > 0) yield out;
    }
  }

  /**
   * Each non-empty cluster in centroid order: its own clips in rank order (embeddings included)
   * and their verdicts. Call after a checkpoint. States not resident are read from the store one
   * at a time and dropped after `fn` (the resident set is left as it is).
   */
  async forEachCluster(fn: (centroid: number, members: MemberRecord[], verdicts: Verdict[]) => Promise<void>): Promise<void> {
    const { dim, rankSpec, idType } = this.options;
    for (let c = 0; c < this.#k; c++) {
      if (this.#ownSize[c] === 0) continue;
      let state = this.#states[c];
      if (!state) {
        invariant(this.#store !== null, `cluster ${c} has members but no state`);
        state = ClusterState.restore(c, dim, rankSpec, idType, await this.#store.loadMembers(c));
      }
      const { members, verdicts } = this.#ownResults(state);
      await fn(c, members, verdicts);
    }
  }

  /** Clips in state (flushed; each once, however many sets it is compared in). */
  get size(): number {
    let n = 0;
    for (const s of this.#ownSize) n += s;
    return n;
  }
}
