/**
 * Per-partition dedup state of a scale-out worker (docs/SCALING.md): each owned partition of
 * the internal by-cluster topic has its own folder `<state>/partition-<p>/` (state.duckdb), its
 * own `DedupEngine` (the full centroid set; only that partition's clusters receive clips) and an
 * id → cluster map that tells a replayed clip from a clashing id.
 *
 * A partition's state is a function of the partition's prefix it has consumed (the position
 * stored with it): records are immutable and processing is deterministic, so any worker's
 * state at position S is the same. That is what makes handing partitions around safe.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../runtime/logging.js';
import { InputError } from '../shared/errors.js';
import type { ClipBatch, MetadataValue } from '../shared/types.js';
import type { DeadLetter } from '../sinks/kafka/index.js';
import { deadLetterForRow } from '../sources/kafka/index.js';
import type { DecodedKafkaBatch, KafkaCommitPosition } from '../sources/kafka/index.js';
import type { Verdict } from '../state/cluster-state.js';
import { DedupEngine } from '../state/dedup-engine.js';
import type { DedupEngineOptions } from '../state/dedup-engine.js';
import { StateStore } from '../store/state-store.js';
import type { StateIdentity } from '../store/state-store.js';
import { ROUTED_COLUMNS } from './internal-records.js';

export interface PartitionState {
  readonly partition: number;
  readonly dir: string;
  readonly store: StateStore;
  readonly engine: DedupEngine;
  /** Cluster of every id in the state or a buffer (from the routed `centroid` column). */
  readonly clusterOf: Map<string, number>;
  /** Verdicts changed by checkpoints but not published yet (ownership could not be confirmed). */
  readonly heldVerdicts: Map<string, Verdict>;
  /** Re-publish every duplicate verdict of the state before anything else (set on gaining it). */
  needsRepublish: boolean;
  /** Next offset to commit once this partition's verdicts are published. */
  pendingCommit: KafkaCommitPosition | null;
  /** Refused rows of this partition waiting for the next checkpoint. */
  pendingDeadLetters: DeadLetter[];
  /** Taken records since the last checkpoint (only those partitions pay a DuckDB commit). */
  dirty: boolean;
  /** The group's offset as this member last saw or set it ('-1': none); another value at a join = someone else moved it. */
  lastCommitted: string;
}

/** Opens (or creates) the state of one partition; refuses a folder of another topic/partition. */
export async function openPartitionState(stateDir: string, topic: string, partition: number, identity: StateIdentity, engineOptions: DedupEngineOptions, storeMemoryMb?: number): Promise<PartitionState> {
  const dir = join(stateDir, `partition-${partition}`);
  await mkdir(dir, { recursive: true });
  const markerPath = join(dir, 'partition.json');
  const marker = JSON.stringify({ topic, partition });
  const existing = await readFile(markerPath, 'utf8').catch(() => null);
  if (existing === null) await writeFile(markerPath, marker + '\n');
  else if (existing.trim() !== marker) {
    throw new InputError(`state folder ${dir} belongs to ${existing.trim()}, not ${marker}; use a new --state folder`, { context: { file: dir, topic, partition } });
  }
  const statePath = join(dir, 'state.duckdb');
  const store = await StateStore.open(statePath, storeMemoryMb === undefined ? {} : { memoryLimitMb: storeMemoryMb });
  try {
    await store.checkIdentity(identity, statePath);
    const engine = await DedupEngine.create(engineOptions, store);
    const clusterOf = new Map<string, number>();
    // From the store (a memory budget may leave states unloaded): every clip's verdict carries its cluster.
    for await (const chunk of engine.storedVerdicts()) for (const v of chunk) clusterOf.set(v.id, v.centroid);
    return { partition, dir, store, engine, clusterOf, heldVerdicts: new Map(), needsRepublish: false, pendingCommit: null, pendingDeadLetters: [], dirty: false, lastCommitted: '-1' };
  } catch (err) {
    store.close();
    throw err;
  }
}

export interface FreshClips {
  readonly clips: ClipBatch;
  /** Routed cluster of each kept clip. */
  readonly clusters: Int32Array;
  readonly replayed: number;
  readonly refused: DeadLetter[];
}

/**
 * Decoded internal records → the clips new to this partition's state. A clip whose id the
 * state (or this batch) already holds in the same cluster is a replay (a router re-sent it after
 * a crash, or records were read again after a rebalance): skipped and counted. Same id in another
 * cluster: a real clash, dead-lettered. Embeddings are already unit length: not normalized again
 * (that could move the last bits and so the ranking against the batch result).
 */
export function freshClips(decoded: DecodedKafkaBatch, state: PartitionState, userMetadata: readonly string[], dim: number, log: Logger): FreshClips {
  const raw = decoded.raw;
  const n = raw.ids.length;
  const centroidCol = raw.metadata[ROUTED_COLUMNS.centroid] ?? [];
  const keep: number[] = [];
  const clusters: number[] = [];
  const refused: DeadLetter[] = [];
  const inBatch = new Map<string, number>();
  let replayed = 0;
  for (let i = 0; i < n; i++) {
    const error = raw.rowErrors?.[i] ?? null;
    const id = raw.ids[i] ?? null;
    const c = centroidCol[i];
    const len = raw.offsets[i + 1]! - raw.offsets[i]!;
    const reason =
      error ??
      (id === null ? 'id is null' : null) ??
      (typeof c !== 'number' || !Number.isInteger(c) ? 'internal record without a centroid' : null) ??
      (raw.embeddingNull[i] || len !== dim ? `wrong dimension: ${len}, expected ${dim}` : null);
    if (reason) {
      refused.push(deadLetterForRow(decoded.rows[i]!, reason));
      continue;
    }
    const before = state.clusterOf.get(id!) ?? inBatch.get(id!);
    if (before !== undefined) {
      if (before === c) replayed++;
      else refused.push(deadLetterForRow(decoded.rows[i]!, `duplicate id ${id} (already in cluster ${before}; this copy is in cluster ${c as number})`));
      continue;
    }
    inBatch.set(id!, c as number);
    keep.push(i);
    clusters.push(c as number);
  }
  if (replayed > 0) log.debug({ partition: state.partition, replayed }, 'replayed clips skipped');
  const embeddings = new Float32Array(keep.length * dim);
  keep.forEach((row, j) => embeddings.set(raw.values.subarray(raw.offsets[row]!, raw.offsets[row]! + dim), j * dim));
  const metadata: Record<string, MetadataValue[]> = {};
  for (const name of userMetadata) {
    const col = raw.metadata[name];
    if (col) metadata[name] = keep.map((row) => col[row] ?? null);
  }
  return {
    clips: { ids: keep.map((row) => raw.ids[row]!), idType: raw.idType, dim, embeddings, metadata, origin: raw.origin },
    clusters: Int32Array.from(clusters),
    replayed,
    refused,
  };
}

/** Add fresh clips to the partition's engine and remember their clusters. */
export async function addToPartition(state: PartitionState, fresh: FreshClips): Promise<void> {
  if (fresh.clips.ids.length === 0) return;
  await state.engine.add(fresh.clips);
  fresh.clips.ids.forEach((id, j) => state.clusterOf.set(id, fresh.clusters[j]!));
}

/** Every duplicate verdict the partition's state holds as of its last checkpoint (what a re-publish sends). */
export async function duplicateVerdicts(state: PartitionState, eps: number): Promise<Verdict[]> {
  const out: Verdict[] = [];
  for await (const chunk of state.engine.storedVerdicts(1 - eps)) out.push(...chunk);
  return out;
}
