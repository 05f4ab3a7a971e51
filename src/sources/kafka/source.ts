/**
 * Kafka source: one topic, one consumer group, batches of records per partition.
 *
 * - Backpressure: a batch is handed to the reader only when it asks for the next one (the
 *   kafkajs `eachBatch` callback waits until then, heartbeating), so at most
 *   `partitionsConsumedConcurrently` batches wait in memory. `pause()`/`resume()` stop and
 *   restart fetching on top of that, e.g. while downstream buffers are full.
 * - Offsets are never committed automatically: the reader calls `commit(batch.commitPosition)`
 *   once its sinks are durable (at-least-once; the changelog downstream is idempotent).
 * - `stopAtEnd`: the end offsets are read when the source starts; the iteration ends once every
 *   partition has been delivered up to them (records at or past them are not delivered). The
 *   consumer stays in the group, fetching nothing, so the reader can still commit; then
 *   `close()`. It expects to be the group's only member (partitions held by another member
 *   never reach their end here).
 *
 * ```ts
 * const source = await createKafkaSource(client, { topic: 'clips', groupId: 'semdedup', stopAtEnd: true });
 * try {
 *   for await (const batch of source.batches()) {
 *     await writeDurably(batch.records);
 *     await source.commit(batch.commitPosition);
 *   }
 * } finally {
 *   await source.close();
 * }
 * ```
 * RxJS: `from(source.batches())` (unsubscribing ends the iteration; still call `close()`).
 */
import type { Consumer, EachBatchPayload, KafkaMessage } from 'kafkajs';
import { InputError, InvariantError, SemdedupError } from '../../shared/errors.js';
import type { Logger } from '../../runtime/logging.js';
import { kafkaError } from './client.js';
import type { KafkaClient } from './client.js';
import { commitWithinRetryWindow, trackReaderPauses } from './consumer-control.js';
import { HandoffQueue, Latch, handOffAndWait, toRecord } from './handoff.js';
import type { KafkaCommitPosition, KafkaRecordBatch } from './types.js';

export interface KafkaSourceConfig {
  readonly topic: string;
  readonly groupId: string;
  /** Where a group without a committed offset starts: the oldest record (default) or the end. */
  readonly fromBeginning?: boolean;
  /** Finish at the end offsets seen at start (see the module doc). Default false. */
  readonly stopAtEnd?: boolean;
  /** Partitions whose batches may be in flight at once. Default 1. */
  readonly partitionsConsumedConcurrently?: number;
  /** Fetch size limits, bytes. Defaults 1 MiB per partition, 10 MiB per fetch. */
  readonly maxBytesPerPartition?: number;
  readonly maxBytes?: number;
  /** How long the broker may hold a fetch when there is no data, ms. Default 500. */
  readonly maxWaitTimeMs?: number;
  /** Group session timeout, ms. Default 30000. */
  readonly sessionTimeoutMs?: number;
  /** Heartbeat interval, ms (also while a batch waits for the reader). Default 3000. */
  readonly heartbeatIntervalMs?: number;
  /** Default: the client's logger. */
  readonly logger?: Logger;
}

export interface KafkaSource {
  readonly topic: string;
  readonly groupId: string;
  /** In `stopAtEnd` mode, the end offset of each partition captured at start; otherwise null. */
  readonly endOffsets: ReadonlyMap<number, string> | null;
  /**
   * The batches, in the order they are fetched (per partition in offset order). Iterate once.
   * Ends after `close()`, or in `stopAtEnd` mode when every partition reached its end offset;
   * throws if the consumer fails for good.
   */
  batches(): AsyncIterableIterator<KafkaRecordBatch>;
  /** Commits the group's positions (`offset` = next offset to read). Call when the records before them are durable. */
  commit(positions: KafkaCommitPosition | Iterable<KafkaCommitPosition>): Promise<void>;
  /** Stops fetching the given partitions (all when omitted); batches already handed out are unaffected. */
  pause(partitions?: readonly number[]): void;
  /** Fetches again (all partitions when omitted; in `stopAtEnd` mode finished partitions stay paused). */
  resume(partitions?: readonly number[]): void;
  /** Leaves the group and disconnects. Uncommitted records are read again by the next member. */
  close(): Promise<void>;
}

export async function createKafkaSource(client: KafkaClient, config: KafkaSourceConfig): Promise<KafkaSource> {
  const { topic, groupId } = config;
  const logger = (config.logger ?? client.logger).child({ module: 'kafka-source', topic, groupId });
  const stopAtEnd = config.stopAtEnd ?? false;
  const fromBeginning = config.fromBeginning ?? true;
  const heartbeatIntervalMs = config.heartbeatIntervalMs ?? 3000;

  // Partitions and, for stopAtEnd, where each one ends and where the group starts it.
  const admin = await client.connectAdmin();
  let partitions: number[];
  let endOffsets: Map<number, string> | null = null;
  /** stopAtEnd: partitions not yet delivered up to their end offset. */
  const unfinished = new Set<number>();
  try {
    if (!(await admin.partitionCounts([topic])).has(topic)) {
      throw new InputError(`Kafka topic ${topic} does not exist`, { context: { topic } });
    }
    const offsets = await admin.fetchTopicOffsets(topic);
    partitions = offsets.map((o) => o.partition);
    if (stopAtEnd) {
      endOffsets = new Map(offsets.map((o) => [o.partition, o.high]));
      const committed = await admin.fetchCommittedOffsets(groupId, topic);
      for (const o of offsets) {
        const low = BigInt(o.low);
        const end = BigInt(o.high);
        const c = BigInt(committed.get(o.partition) ?? '-1');
        // A committed offset below the log start is reset like the consumer will reset it.
        const start = c >= low ? c : fromBeginning ? low : end;
        if (start < end) unfinished.add(o.partition);
      }
    }
  } finally {
    await admin.close();
  }

  const consumer: Consumer = client.kafkajs.consumer({
    groupId,
    allowAutoTopicCreation: false,
    maxBytesPerPartition: config.maxBytesPerPartition ?? 1024 * 1024,
    maxBytes: config.maxBytes ?? 10 * 1024 * 1024,
    maxWaitTimeInMs: config.maxWaitTimeMs ?? 500,
    sessionTimeout: config.sessionTimeoutMs ?? 30000,
    heartbeatInterval: heartbeatIntervalMs,
  });
  const queue = new HandoffQueue<KafkaRecordBatch>();
  let iterating = false;
  const closing = new Latch();

  const finishedPartitions = (): number[] => partitions.filter((p) => !unfinished.has(p));

  /** stopAtEnd: `partition` has been delivered up to `nextOffset`. */
  const advance = (partition: number, nextOffset: bigint): void => {
    if (!endOffsets || !unfinished.has(partition)) return;
    if (nextOffset < BigInt(endOffsets.get(partition) ?? '0')) return;
    unfinished.delete(partition);
    pauseSafely([partition]);
    if (unfinished.size === 0) {
      logger.debug('every partition reached its end offset');
      queue.finish({ kind: 'end' });
    }
  };

  const onBatch = async ({ batch, resolveOffset, heartbeat, isRunning, isStale }: EachBatchPayload): Promise<void> => {
    const { partition } = batch;
    if (closing.isOpen || queue.finished) return;
    if (stopAtEnd && !unfinished.has(partition)) return; // a fetch that raced the pause
    let messages: KafkaMessage[] = batch.messages;
    const end = endOffsets?.get(partition);
    if (end !== undefined) {
      const endOffset = BigInt(end);
      messages = messages.filter((m) => BigInt(m.offset) < endOffset);
      if (messages.length === 0) {
        advance(partition, endOffset);
        return;
      }
    }
    const records = messages.map((m) => toRecord(topic, partition, m));
    const nextOffset = BigInt(records[records.length - 1]!.offset) + 1n;
    const batchOut: KafkaRecordBatch = {
      topic,
      partition,
      records,
      commitPosition: { topic, partition, offset: nextOffset.toString() },
      highWatermark: batch.highWatermark,
      receivedAt: performance.now(),
    };
    // Not taken (closed, or the batch went stale): kafkajs (or the partition's next owner) fetches it again.
    if (!(await handOffAndWait(queue, batchOut, { heartbeat, isRunning, isStale }, { heartbeatIntervalMs, closed: closing }))) return;
    resolveOffset(batch.lastOffset());
    advance(partition, nextOffset);
  };

  // Remembered and applied again when kafkajs restarts the consumer (see consumer-control.ts).
  const pauses = trackReaderPauses(consumer, topic, { allPartitions: () => partitions, logger, alsoPausedOnJoin: () => (stopAtEnd ? finishedPartitions() : []) });
  const pauseSafely = pauses.pauseSafely;

  consumer.on(consumer.events.CRASH, (event) => {
    const { error, restart } = event.payload;
    if (restart) {
      logger.warn({ error: error.message }, 'consumer failed; kafkajs restarts it (uncommitted records are fetched again and skipped by the reader)');
      return;
    }
    queue.finish({ kind: 'error', error: kafkaError('Kafka consumer failed', error, { topic }) });
  });
  if (stopAtEnd) {
    // Batches of only control records (transaction markers) never reach eachBatch, yet move the
    // position; without this a partition ending in a marker would never finish.
    consumer.on(consumer.events.END_BATCH_PROCESS, (event) => {
      const p = event.payload;
      if (p.topic === topic && p.batchSize === 0) advance(p.partition, BigInt(p.lastOffset) + 1n);
    });
  }

  try {
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning });
    if (stopAtEnd && unfinished.size === 0) {
      queue.finish({ kind: 'end' }); // nothing to read: do not even join the group
    } else {
      await consumer.run({
        autoCommit: false,
        partitionsConsumedConcurrently: config.partitionsConsumedConcurrently ?? 1,
        eachBatchAutoResolve: false,
        eachBatch: onBatch,
      });
      const done = finishedPartitions();
      if (stopAtEnd && done.length > 0) consumer.pause([{ topic, partitions: done }]);
    }
  } catch (err) {
    await consumer.disconnect().catch(() => {});
    throw kafkaError(`Kafka: could not start consuming ${topic} as group ${groupId}`, err, { topic });
  }

  return {
    topic,
    groupId,
    endOffsets,
    batches: () => {
      if (iterating) throw new InvariantError('KafkaSource.batches() may be iterated only once');
      iterating = true;
      return queue.drain();
    },
    commit: async (positions) => {
      const list = isPosition(positions) ? [positions] : [...positions];
      if (list.length === 0) return;
      if (closing.isOpen) throw new SemdedupError('Kafka source is closed; offsets not committed', { context: { topic } });
      for (const p of list) {
        if (p.topic !== topic) throw new InvariantError(`commit for topic ${p.topic} on a source of ${topic}`);
      }
      // Retried while kafkajs restarts the consumer, within the client's retry window.
      await commitWithinRetryWindow(consumer, topic, list, { windowMs: client.retryWindowMs, logger });
    },
    pause: (only) => pauses.pause(only ?? null),
    resume: (only) => {
      pauses.resume(only ?? null);
      const done = finishedPartitions();
      if (stopAtEnd && done.length > 0) pauseSafely(done);
    },
    close: async () => {
      if (closing.isOpen) return;
      closing.open();
      queue.abort({ kind: 'end' });
      await consumer.disconnect();
    },
  };
}

function isPosition(value: KafkaCommitPosition | Iterable<KafkaCommitPosition>): value is KafkaCommitPosition {
  return typeof (value as KafkaCommitPosition).partition === 'number';
}
