/**
 * Kafka source for members of a consumer group that keep state per partition (the dedup
 * workers of `semdedup stream --role worker`): like `createKafkaSource`, plus what partition
 * ownership needs, which kafkajs only offers as instrumentation events (it has no
 * assign/revoke callbacks):
 *
 * - `batches()` yields, in order with the record batches, an `assignment` item each time the
 *   member joins the group (kafkajs's GROUP_JOIN: the partitions it now owns). Every batch
 *   carries the `generation` (our count of joins) it was fetched in: a batch of an older
 *   generation may belong to a partition another member now owns.
 * - `owns(partition, generation)`: may this member still act for that partition? True only while
 *   no rebalance has been announced since that join (kafkajs's REBALANCING), the partition is
 *   assigned, and the last successful heartbeat (or the join) is younger than half the session
 *   timeout — the coordinator cannot have handed the partition to another member before the
 *   session expires, so this is a lease. Writers check it right before publishing.
 *
 * Offsets are committed only through `commit` (autoCommit off). A commit refused because the
 * group is rebalancing resolves `false` instead of throwing: the partition's next owner reads
 * those records again.
 *
 * `readPartitionRanges` reads given offset ranges of some partitions outside any shared group
 * (a throwaway group that commits nothing), to rebuild a partition's state.
 */
import type { Consumer, EachBatchPayload } from 'kafkajs';
import { InputError, InvariantError } from '../../shared/errors.js';
import type { Logger } from '../../runtime/logging.js';
import { kafkaError } from './client.js';
import type { KafkaClient } from './client.js';
import { commitWithinRetryWindow, trackReaderPauses } from './consumer-control.js';
import { HandoffQueue, Latch, handOffAndWait, toRecord } from './handoff.js';
import type { KafkaCommitPosition, KafkaRecordBatch } from './types.js';

export interface GroupKafkaSourceConfig {
  readonly topic: string;
  readonly groupId: string;
  /** Group session timeout, ms (the broker's group.min.session.timeout.ms is the floor, 6000 by default). Default 30000. */
  readonly sessionTimeoutMs?: number;
  /** Heartbeat interval, ms. Default min(3000, sessionTimeoutMs / 6). */
  readonly heartbeatIntervalMs?: number;
  readonly maxBytesPerPartition?: number;
  readonly maxBytes?: number;
  readonly maxWaitTimeMs?: number;
  readonly logger?: Logger;
}

export interface OwnedBatch extends KafkaRecordBatch {
  readonly kind: 'batch';
  /** The join this batch was fetched under. */
  readonly generation: number;
}

export interface AssignmentChange {
  readonly kind: 'assignment';
  readonly generation: number;
  /** Partitions of the topic this member owns from now on, sorted. */
  readonly partitions: readonly number[];
}

export type GroupSourceItem = OwnedBatch | AssignmentChange;

export interface GroupKafkaSource {
  readonly topic: string;
  readonly groupId: string;
  batches(): AsyncIterableIterator<GroupSourceItem>;
  /** See the module doc: assigned in `generation`, no rebalance announced since, lease fresh. */
  owns(partition: number, generation: number): boolean;
  readonly generation: number;
  /** Commits; resolves false (nothing committed) when the group is rebalancing or has moved on. */
  commit(positions: Iterable<KafkaCommitPosition>): Promise<boolean>;
  pause(): void;
  resume(): void;
  close(): Promise<void>;
}

export async function createGroupKafkaSource(client: KafkaClient, config: GroupKafkaSourceConfig): Promise<GroupKafkaSource> {
  const { topic, groupId } = config;
  const logger = (config.logger ?? client.logger).child({ module: 'kafka-group-source', topic, groupId });
  const sessionTimeout = config.sessionTimeoutMs ?? 30000;
  const heartbeatInterval = config.heartbeatIntervalMs ?? Math.min(3000, Math.floor(sessionTimeout / 6));
  const admin = await client.connectAdmin();
  let partitionCount: number;
  try {
    const counts = await admin.partitionCounts([topic]);
    if (!counts.has(topic)) throw new InputError(`Kafka topic ${topic} does not exist`, { context: { topic } });
    partitionCount = counts.get(topic)!;
  } finally {
    await admin.close();
  }
  const consumer: Consumer = client.kafkajs.consumer({
    groupId,
    allowAutoTopicCreation: false,
    sessionTimeout,
    rebalanceTimeout: Math.max(sessionTimeout, 10000),
    heartbeatInterval,
    maxBytesPerPartition: config.maxBytesPerPartition ?? 4 << 20,
    maxBytes: config.maxBytes ?? 16 << 20,
    maxWaitTimeInMs: config.maxWaitTimeMs ?? 500,
  });
  const queue = new HandoffQueue<GroupSourceItem>();
  let iterating = false;
  let generation = 0;
  let assigned = new Set<number>();
  let rebalancing = false;
  let leaseFrom = 0;
  const closing = new Latch();

  consumer.on(consumer.events.GROUP_JOIN, (event) => {
    generation++;
    rebalancing = false;
    leaseFrom = performance.now();
    const partitions = [...(event.payload.memberAssignment[topic] ?? [])].sort((a, b) => a - b);
    assigned = new Set(partitions);
    logger.info({ generation, partitions }, 'joined the group');
    queue.push({ kind: 'item', item: { kind: 'assignment', generation, partitions }, take: () => {} });
  });
  consumer.on(consumer.events.HEARTBEAT, () => {
    if (!rebalancing) leaseFrom = performance.now();
  });
  consumer.on(consumer.events.REBALANCING, () => {
    // From now until the next join, another member may be handed our partitions.
    rebalancing = true;
    logger.info({ generation }, 'group is rebalancing');
  });
  consumer.on(consumer.events.CRASH, (event) => {
    const { error, restart } = event.payload;
    rebalancing = true;
    if (restart) {
      logger.warn({ err: error }, 'consumer failed; kafkajs restarts it');
      return;
    }
    queue.finish({ kind: 'error', error: kafkaError('Kafka consumer failed', error, { topic }) });
  });
  // Remembered and applied again when kafkajs restarts the consumer (see consumer-control.ts).
  const pauses = trackReaderPauses(consumer, topic, { allPartitions: () => Array.from({ length: partitionCount }, (_, p) => p), logger });

  const onBatch = async ({ batch, resolveOffset, heartbeat, isRunning, isStale }: EachBatchPayload): Promise<void> => {
    if (closing.isOpen || batch.messages.length === 0) return;
    const { partition } = batch;
    const records = batch.messages.map((m) => toRecord(topic, partition, m));
    const nextOffset = (BigInt(records[records.length - 1]!.offset) + 1n).toString();
    const item: OwnedBatch = { kind: 'batch', generation, topic, partition, records, commitPosition: { topic, partition, offset: nextOffset }, highWatermark: batch.highWatermark, receivedAt: performance.now() };
    // Not taken (closed, or the batch went stale): the partition's owner fetches it again.
    if (!(await handOffAndWait(queue, item, { heartbeat, isRunning, isStale }, { heartbeatIntervalMs: heartbeatInterval, closed: closing }))) return;
    resolveOffset(batch.lastOffset());
  };

  try {
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({ autoCommit: false, eachBatchAutoResolve: false, partitionsConsumedConcurrently: 1, eachBatch: onBatch });
  } catch (err) {
    await consumer.disconnect().catch(() => {});
    throw kafkaError(`Kafka: could not start consuming ${topic} as group ${groupId}`, err, { topic });
  }

  return {
    topic,
    groupId,
    get generation() {
      return generation;
    },
    batches: () => {
      if (iterating) throw new InvariantError('GroupKafkaSource.batches() may be iterated only once');
      iterating = true;
      return queue.drain();
    },
    owns: (partition, gen) => !closing.isOpen && !rebalancing && gen === generation && assigned.has(partition) && performance.now() - leaseFrom < sessionTimeout / 2,
    commit: async (positions) => {
      const list = [...positions];
      if (list.length === 0) return true;
      if (closing.isOpen) return false;
      const joinedIn = generation;
      // Retried while kafkajs restarts the consumer, within the client's retry window; but once
      // the member has joined again its partitions may be another's: then nothing is committed.
      return commitWithinRetryWindow(consumer, topic, list, {
        windowMs: client.retryWindowMs,
        logger,
        mayCommit: () => !closing.isOpen && generation === joinedIn,
        refused: (err) => {
          const type = (err as { type?: string }).type ?? '';
          if (!/REBALANCE_IN_PROGRESS|ILLEGAL_GENERATION|UNKNOWN_MEMBER_ID|NOT_COORDINATOR/.test(type) && !/rebalanc/i.test((err as Error).message ?? '')) return false;
          logger.warn({ type, partitions: list.map((p) => p.partition) }, 'offset commit refused: the group is rebalancing');
          rebalancing = true;
          return true;
        },
      });
    },
    pause: () => pauses.pause(null),
    resume: () => pauses.resume(null),
    close: async () => {
      if (closing.isOpen) return;
      closing.open();
      queue.abort({ kind: 'end' });
      await consumer.disconnect();
    },
  };
}

/** Offsets [from, to) of a partition. */
export interface PartitionRange {
  readonly partition: number;
  readonly from: string;
  readonly to: string;
}

/**
 * Reads the given ranges (each partition in offset order; partitions interleaved) with a
 * throwaway consumer group that commits nothing, then leaves. For rebuilding a partition's
 * state from a topic whose retention keeps everything.
 */
export async function* readPartitionRanges(client: KafkaClient, topic: string, ranges: readonly PartitionRange[], options: { logger?: Logger; groupPrefix?: string } = {}): AsyncGenerator<KafkaRecordBatch> {
  const wanted = new Map(ranges.filter((r) => BigInt(r.from) < BigInt(r.to)).map((r) => [r.partition, r]));
  if (wanted.size === 0) return;
  const logger = (options.logger ?? client.logger).child({ module: 'kafka-range-reader', topic });
  const admin = await client.connectAdmin();
  let all: number[];
  try {
    all = (await admin.fetchTopicOffsets(topic)).map((o) => o.partition);
  } finally {
    await admin.close();
  }
  const groupId = `${options.groupPrefix ?? 'semdedup-rebuild'}-${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  const consumer = client.kafkajs.consumer({ groupId, allowAutoTopicCreation: false, maxBytesPerPartition: 4 << 20, maxBytes: 16 << 20, maxWaitTimeInMs: 200 });
  const queue = new HandoffQueue<OwnedBatch>();
  const unfinished = new Set(wanted.keys());
  const next = new Map([...wanted].map(([p, r]) => [p, BigInt(r.from)]));
  const stopped = new Latch();
  const onBatch = async ({ batch, resolveOffset }: EachBatchPayload): Promise<void> => {
    const r = wanted.get(batch.partition);
    if (!r || !unfinished.has(batch.partition)) return;
    const to = BigInt(r.to);
    const from = next.get(batch.partition)!;
    const messages = batch.messages.filter((m) => BigInt(m.offset) >= from && BigInt(m.offset) < to);
    if (messages.length > 0) {
      const records = messages.map((m) => toRecord(topic, batch.partition, m));
      const end = BigInt(records[records.length - 1]!.offset) + 1n;
      next.set(batch.partition, end);
      let signalTaken!: () => void;
      const taken = new Promise<void>((resolve) => (signalTaken = resolve));
      queue.push({ kind: 'item', item: { kind: 'batch', generation: 0, topic, partition: batch.partition, records, commitPosition: { topic, partition: batch.partition, offset: end.toString() }, highWatermark: batch.highWatermark }, take: signalTaken });
      await stopped.race([taken]);
    }
    resolveOffset(batch.lastOffset());
    if (BigInt(batch.lastOffset()) + 1n >= to) {
      unfinished.delete(batch.partition);
      consumer.pause([{ topic, partitions: [batch.partition] }]);
      if (unfinished.size === 0) queue.finish({ kind: 'end' });
    }
  };
  consumer.on(consumer.events.CRASH, (event) => {
    if (!event.payload.restart) queue.finish({ kind: 'error', error: kafkaError('Kafka rebuild reader failed', event.payload.error, { topic }) });
  });
  try {
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({ autoCommit: false, eachBatchAutoResolve: false, eachBatch: onBatch });
    const others = all.filter((p) => !wanted.has(p));
    if (others.length > 0) consumer.pause([{ topic, partitions: others }]);
    for (const r of wanted.values()) if (BigInt(r.from) > 0n) consumer.seek({ topic, partition: r.partition, offset: r.from });
    logger.debug({ groupId, ranges: [...wanted.values()] }, 'rebuild reader started');
    yield* queue.drain();
  } finally {
    stopped.open();
    await consumer.disconnect().catch(() => {});
    // The throwaway group has no committed offsets; the broker forgets it after offsets.retention.
  }
}
