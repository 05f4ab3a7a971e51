import { assignToCentroids } from '../assign/index.js';
import type { SimilarityKernel } from '../kernels/types.js';
import { rankHash, type RankFields } from '../rank/index.js';
import type { ClipBatch, IdType, MetadataValue, RankSpec } from '../shared/types.js';
import type { SourcePosition, StateStore, StoredMember } from '../store/state-store.js';
import { ClusterState, MemberChanges, type IncomingClip, type Verdict } from './cluster-state.js';

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
}

/**
 * The incremental dedup core shared by `stream` and `replay`: assigns arriving clips to fixed
 * centroids, buffers them per cluster, folds each buffer into the cluster's ranked state through
 * the kernel, and at a checkpoint persists touched members with the source positions and hands
 * back the duplicate verdicts that changed. After any arrival order, the verdicts equal the
 * batch workflow's on the same clips and centroids.
 */
export class DedupEngine {
  readonly options: DedupEngineOptions;
  readonly clusters: ClusterState[];
  /** Every id in state or in a buffer; a repeated id is refused by validation. */
  readonly knownIds = new Set<string>();
  readonly #store: StateStore | null;
  readonly #buffers: IncomingClip[][];
  #buffered = 0;
  readonly #pendingVerdicts = new Map<string, Verdict>();
  readonly #positions = new Map<string, SourcePosition>();
  /** Flush latency of the last kernel passes, for metrics. */
  lastFlushMs = 0;
  clipsAdded = 0;

  private constructor(options: DedupEngineOptions, store: StateStore | null) {
    this.options = options;
    this.#store = store;
    const k = options.centroids.length / options.dim;
    this.clusters = Array.from({ length: k }, (_, c) => new ClusterState(c, options.dim, options.rankSpec, options.idType));
    this.#buffers = Array.from({ length: k }, () => []);
  }

  /** A new engine, restored from `store` when it holds state. */
  static async create(options: DedupEngineOptions, store: StateStore | null = null): Promise<DedupEngine> {
    const engine = new DedupEngine(options, store);
    if (store) {
      const members = await store.loadMembers();
      const byCluster = new Map<number, StoredMember[]>();
      for (const m of members) {
        if (!byCluster.has(m.centroid)) byCluster.set(m.centroid, []);
        byCluster.get(m.centroid)!.push(m);
        engine.knownIds.add(m.rank.id);
      }
      for (const [c, list] of byCluster) engine.clusters[c] = ClusterState.restore(c, options.dim, options.rankSpec, options.idType, list);
      for (const p of await store.loadPositions()) engine.#positions.set(`${p.source}\u0000${p.partition}`, p);
    }
    return engine;
  }

  get bufferedRows(): number {
    return this.#buffered;
  }

  /** The position a source should resume from (null when this state has none). */
  position(source: string, partition: number): string | null {
    return this.#positions.get(`${source}\u0000${partition}`)?.nextOffset ?? null;
  }

  /** Clips have been consumed up to `nextOffset` (exclusive); recorded at the next checkpoint. */
  advance(source: string, partition: number, nextOffset: string): void {
    this.#positions.set(`${source}\u0000${partition}`, { source, partition, nextOffset });
  }

  /** Add validated, unit-length clips: assign, buffer, flush full clusters. */
  async add(batch: ClipBatch): Promise<void> {
    const n = batch.ids.length;
    if (n === 0) return;
    const { dim } = this.options;
    const a = await assignToCentroids(batch.embeddings, this.options.centroids, dim, this.options.kernel);
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
      // A view: the batch's array is not reused, and the flush copies rows into the cluster.
      this.#buffers[c]!.push({ rank, embedding: batch.embeddings.subarray(i * dim, (i + 1) * dim) });
      this.knownIds.add(id);
      if (this.#buffers[c]!.length >= this.options.flushMaxRows) full.add(c);
    }
    this.#buffered += n;
    this.clipsAdded += n;
    for (const c of full) await this.#flushCluster(c);
  }

  async #flushCluster(c: number): Promise<void> {
    const clips = this.#buffers[c]!;
    if (clips.length === 0) return;
    this.#buffers[c] = [];
    this.#buffered -= clips.length;
    const started = performance.now();
    const { changed } = await this.clusters[c]!.addClips(clips, this.options.kernel);
    this.lastFlushMs = performance.now() - started;
    const threshold = 1 - this.options.eps;
    for (const v of changed) if (v.score >= threshold) this.#pendingVerdicts.set(v.id, v);
  }

  /** Flush every buffer through the kernel. */
  async flushAll(): Promise<void> {
    for (let c = 0; c < this.#buffers.length; c++) await this.#flushCluster(c);
  }

  /**
   * Flush everything, persist changed members and positions in one transaction, and return the
   * duplicate verdicts that changed since the last checkpoint (publish them, then commit offsets).
   */
  async checkpoint(): Promise<Verdict[]> {
    await this.flushAll();
    // Changed members are marked stored as they are taken; if the write fails the process stops
    // and the next run restores from what the store holds.
    const changes = new MemberChanges();
    for (const state of this.clusters) state.takeChanges(changes);
    if (this.#store) await this.#store.checkpoint(changes, [...this.#positions.values()]);
    const verdicts = [...this.#pendingVerdicts.values()];
    this.#pendingVerdicts.clear();
    return verdicts;
  }

  /** Current verdict of every clip in state (flushed clips only), cluster by cluster in rank order. */
  allVerdicts(): Verdict[] {
    return this.clusters.flatMap((s) => s.verdicts());
  }

  get size(): number {
    return this.clusters.reduce((n, s) => n + s.size, 0);
  }
}
