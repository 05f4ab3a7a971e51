/**
 * The worker's steps (topologies/worker.ts) driven by hand with fakes for the Kafka side (real
 * engine, state store and decoding): verdicts of a partition whose ownership cannot be confirmed
 * are held and its offsets not committed; they go out once it can; a lost partition's batches
 * are dropped and nothing more is published for it; a regained partition whose state matches the
 * group's offset is reused and re-publishes every duplicate.
 */
import { describe, expect, it } from 'vitest';
import { assignToCentroids } from '../../src/assign/index.js';
import { createJsKernel } from '../../src/kernels/index.js';
import { silentLogger } from '../../src/runtime/logging.js';
import { streamConfigSchema } from '../../src/shared/stream-config.js';
import type { ClipBatch, RankSpec } from '../../src/shared/types.js';
import type { KafkaOutMessage } from '../../src/sinks/kafka/index.js';
import type { KafkaClient, KafkaCommitPosition, KafkaRecord } from '../../src/sources/kafka/index.js';
import type { GroupKafkaSource, GroupSourceItem, OwnedBatch } from '../../src/sources/kafka/group-source.js';
import { stateIdentity } from '../../src/store/state-store.js';
import { routedClipMessages, routedDecodeOptions } from '../../src/stream/internal-records.js';
import { duplicateVerdicts } from '../../src/stream/worker-partitions.js';
import {
  addFreshClips,
  checkpointPartitions,
  commitOwnedOffsets,
  createWorkerMetrics,
  decodeRouted,
  initialWorkerRunState,
  publishOwnedVerdicts,
  skipCheckpointed,
  trackAssignment,
  writeWorkerDeadLetters,
} from '../../src/stream/worker.js';
import type { WorkerContext } from '../../src/stream/worker.js';
import { makeRows, tempDir } from '../helpers/fixtures.js';

const TOPIC = 'clips.by-cluster';
const dim = 8;
const spec: RankSpec = { whichToKeep: 'hard', distanceMetric: 'cosine', ranking: [], seed: 42 };

/** Internal records of partition 0 (one partition: every cluster), as the router writes them. */
async function internalRecords(): Promise<{ records: KafkaRecord[]; centroids: Float32Array }> {
  const { rows, centers } = makeRows({ n: 80, dim, centers: 2, seed: 5 });
  const centroids = Float32Array.from(centers.flat());
  const embeddings = Float32Array.from(rows.flatMap((r) => r.embedding));
  for (let i = 0; i < rows.length; i++) {
    const v = embeddings.subarray(i * dim, (i + 1) * dim);
    const n = Math.hypot(...v);
    for (let j = 0; j < dim; j++) v[j]! /= n;
  }
  const records: KafkaRecord[] = [];
  for (let start = 0; start < rows.length; start += 20) {
    const clips: ClipBatch = { ids: rows.slice(start, start + 20).map((r) => r.id), idType: 'string', dim, embeddings: embeddings.slice(start * dim, (start + 20) * dim), metadata: {}, origin: {} };
    const a = await assignToCentroids(clips.embeddings, centroids, dim, createJsKernel());
    for (const m of routedClipMessages(clips, a, { partitions: 1 })) {
      records.push({ topic: TOPIC, partition: 0, offset: String(records.length), key: Buffer.from(String(m.key)), value: m.value as Buffer, headers: { 'content-type': Buffer.from('application/vnd.apache.arrow.stream') }, timestamp: '0' });
    }
  }
  return { records, centroids };
}

function fakes(committed: Map<number, string>) {
  const sent: KafkaOutMessage[] = [];
  const commits: KafkaCommitPosition[][] = [];
  let owned = true;
  let generation = 0;
  const source = {
    topic: TOPIC,
    groupId: 'g',
    get generation() {
      return generation;
    },
    owns: () => owned,
    commit: async (positions: Iterable<KafkaCommitPosition>) => {
      const list = [...positions];
      commits.push(list);
      for (const p of list) committed.set(p.partition, p.offset);
      return true;
    },
  } as unknown as GroupKafkaSource;
  const admin = {
    fetchCommittedOffsets: async () => new Map(committed),
    fetchTopicOffsets: async () => [{ partition: 0, low: '0', high: '1000' }],
    close: async () => {},
  };
  const client = { connectAdmin: async () => admin } as unknown as KafkaClient;
  const sink = { send: async (_topic: string, messages: readonly KafkaOutMessage[]) => (sent.push(...messages), []), close: async () => {} };
  return { sent, commits, source, client, sink, setOwned: (v: boolean) => (owned = v), join: () => ++generation };
}

async function feed(ctx: WorkerContext, item: GroupSourceItem): Promise<void> {
  const log = silentLogger();
  const owned = await trackAssignment(item, ctx, log);
  if (!owned) return;
  const fresh = skipCheckpointed(owned, ctx);
  if (!fresh) return;
  await addFreshClips(decodeRouted(fresh, ctx), ctx, log);
}

async function checkpoint(ctx: WorkerContext): Promise<void> {
  const log = silentLogger();
  await writeWorkerDeadLetters(ctx, log);
  await checkpointPartitions(ctx);
  await publishOwnedVerdicts(ctx, log);
  await commitOwnedOffsets(ctx, log);
}

const batchOf = (records: KafkaRecord[], from: number, to: number, generation: number): OwnedBatch => ({
  kind: 'batch',
  generation,
  topic: TOPIC,
  partition: 0,
  records: records.slice(from, to),
  commitPosition: { topic: TOPIC, partition: 0, offset: String(to) },
  highWatermark: String(records.length),
});

describe('scale-out worker steps', () => {
  it('holds verdicts while ownership is unconfirmed, drops a lost partition, reuses and re-publishes a regained one', async () => {
    const { records, centroids } = await internalRecords();
    const committed = new Map<number, string>();
    const f = fakes(committed);
    const config = streamConfigSchema.parse({ brokers: ['x:1'], inputTopic: 'clips', outputTopic: 'dups', group: 'g', centroids: 'c.npy', state: 's', eps: 0.02, role: 'worker', metricsPort: 0 });
    const kernel = createJsKernel();
    const ctx: WorkerContext = {
      config,
      internalTopic: TOPIC,
      stateDir: tempDir('semdedup-worker-unit-'),
      identity: stateIdentity(centroids, dim, spec, 'string', 0.02),
      engineOptions: { centroids, dim, rankSpec: spec, idType: 'string', kernel, eps: 0.02, flushMaxRows: 16, metadataFields: [] },
      storeMemoryMb: 64,
      dim,
      decodeOptions: routedDecodeOptions({ metadataFields: [], idType: 'string', dim }),
      client: f.client,
      source: f.source,
      sink: f.sink,
      deadLetters: { topic: 'clips.dlq', write: async () => [] },
      metrics: createWorkerMetrics(),
      ...initialWorkerRunState(),
    };
    const half = Math.floor(records.length / 2);

    // Gain partition 0 (fresh group, empty state) and take the first half.
    await feed(ctx, { kind: 'assignment', generation: f.join(), partitions: [0] });
    await feed(ctx, batchOf(records, 0, half, 1));
    // Ownership cannot be confirmed (a rebalance is announced): nothing published or committed.
    f.setOwned(false);
    await checkpoint(ctx);
    expect(f.sent).toHaveLength(0);
    expect(f.commits).toHaveLength(0);
    expect(ctx.totals.heldPublishes).toBe(1);
    expect(ctx.pendingSince).not.toBeNull(); // comes back for them
    // Confirmed again: the held verdicts go out, then the commit.
    f.setOwned(true);
    await checkpoint(ctx);
    const firstVerdicts = f.sent.length;
    expect(firstVerdicts).toBeGreaterThan(0);
    expect(f.commits).toEqual([[{ topic: TOPIC, partition: 0, offset: String(half) }]]);

    // Partition 0 is lost; a batch fetched under the old join is dropped, nothing published.
    await feed(ctx, { kind: 'assignment', generation: f.join(), partitions: [] });
    await feed(ctx, batchOf(records, half, records.length, 1));
    await checkpoint(ctx);
    expect(ctx.partitions.size).toBe(0);
    expect(ctx.totals).toMatchObject({ partitionsLost: 1, staleBatches: 1 });
    expect(f.sent).toHaveLength(firstVerdicts);

    // Regained with the group's offset equal to the state's position: reused (no rebuild),
    // every duplicate re-published, then the rest consumed. Records read again are skipped.
    await feed(ctx, { kind: 'assignment', generation: f.join(), partitions: [0] });
    expect(ctx.totals.rebuiltClips).toBe(0);
    expect(ctx.partitions.get(0)!.engine.size).toBe(ctx.totals.clipsIn);
    await feed(ctx, batchOf(records, half - 2, records.length, 3));
    await checkpoint(ctx);
    expect(ctx.totals.verdictsRepublished).toBeGreaterThan(0);
    // The changelog's latest value per key is the state's duplicates.
    const latest = new Map(f.sent.map((m) => [String(m.key), JSON.parse(String(m.value)) as { max_id: string; cosine_sim_score: number }]));
    const dups = await duplicateVerdicts(ctx.partitions.get(0)!, 0.02);
    expect(latest.size).toBe(dups.length);
    for (const v of dups) expect(latest.get(v.id)).toMatchObject({ max_id: v.maxId, cosine_sim_score: v.score });
    expect(ctx.totals.skippedRecords).toBe(2);
    expect(ctx.partitions.get(0)!.engine.size).toBe(80);
    expect(committed.get(0)).toBe(String(records.length));
    for (const s of ctx.partitions.values()) s.store.close();
  });
});
