/**
 * Kafka sink: an idempotent producer (acks = all) behind a narrow `send`. `send` resolves once
 * every message is acknowledged by all in-sync replicas, i.e. durable: only then may the
 * source commit the offsets the messages came from. A transient failure (broker down or
 * restarting) is retried for the client's `retryWindowMs` before `send` throws.
 */
import { CompressionTypes, Partitioners } from 'kafkajs';
import type { Message, Producer } from 'kafkajs';
import { kafkaError, withKafkaRetryWindow } from '../../sources/kafka/index.js';
import type { KafkaClient } from '../../sources/kafka/index.js';
import type { Logger } from '../../runtime/logging.js';

export interface KafkaOutMessage {
  readonly key: Buffer | string | null;
  readonly value: Buffer | string | null;
  /** A repeated header key takes an array. */
  readonly headers?: Readonly<Record<string, Buffer | string | readonly (Buffer | string)[]>>;
  /** Default: by key (murmur2, the same partition a Java producer picks). */
  readonly partition?: number;
  /** ms since the epoch, as a decimal string. Default: now. */
  readonly timestamp?: string;
}

/** One per partition per produce request (a large `send` makes several requests). */
export interface KafkaSendResult {
  readonly topic: string;
  readonly partition: number;
  /** Offset of the first message the request wrote to this partition. */
  readonly baseOffset: string;
}

export interface KafkaSinkConfig {
  /** `gzip` is the only codec kafkajs ships. Default `none`. */
  readonly compression?: 'none' | 'gzip';
  /**
   * Upper bound on the (uncompressed) bytes of one produce request; `send` splits larger
   * arrays. kafkajs puts all messages of a partition in one record batch and never splits it,
   * so a batch over the broker's `message.max.bytes` (1 MiB by default) would be refused with
   * MESSAGE_TOO_LARGE. Default 900 000. A single message larger than the topic's
   * `max.message.bytes` is still refused.
   */
  readonly maxRequestBytes?: number;
  /** How long the broker may wait for the in-sync replicas, ms. Default 30000. */
  readonly ackTimeoutMs?: number;
  /** Default: the client's logger. */
  readonly logger?: Logger;
}

export interface KafkaSink {
  /**
   * Writes `messages` to `topic` and resolves when all are acknowledged (acks = -1). Large
   * arrays go out as several requests, in order; if one fails the earlier ones stay written, so
   * a retried `send` may duplicate them (downstream is keyed and idempotent).
   */
  send(topic: string, messages: readonly KafkaOutMessage[]): Promise<KafkaSendResult[]>;
  close(): Promise<void>;
}

export async function createKafkaSink(client: KafkaClient, config: KafkaSinkConfig = {}): Promise<KafkaSink> {
  const logger = (config.logger ?? client.logger).child({ module: 'kafka-sink' });
  const producer: Producer = client.kafkajs.producer({
    // Idempotent: broker-side dedup of retried batches (producer id + sequence numbers).
    // One request in flight per broker: kafkajs's sequence bookkeeping is only safe that way
    // (KIP-98's original rule); throughput comes from batching messages per send.
    idempotent: true,
    maxInFlightRequests: 1,
    allowAutoTopicCreation: false,
    createPartitioner: Partitioners.DefaultPartitioner,
  });
  try {
    await producer.connect();
  } catch (err) {
    throw kafkaError('Kafka: producer could not connect', err);
  }
  let closed = false;
  const compression = config.compression === 'gzip' ? CompressionTypes.GZIP : CompressionTypes.None;
  const timeout = config.ackTimeoutMs ?? 30000;
  const maxRequestBytes = config.maxRequestBytes ?? 900_000;

  return {
    send: async (topic, messages) => {
      if (closed) throw kafkaError('Kafka sink is closed', undefined, { topic });
      if (messages.length === 0) return [];
      try {
        const results: KafkaSendResult[] = [];
        for (const chunk of chunkBySize(messages, maxRequestBytes)) {
          // Chunk by chunk, so a retry after an outage re-sends only what was not acknowledged
          // (the idempotent producer keeps the retried chunk's sequence numbers).
          const metadata = await withKafkaRetryWindow(() => producer.send({ topic, messages: chunk.map(toKafkajsMessage), acks: -1, timeout, compression }), {
            windowMs: client.retryWindowMs,
            logger,
            what: 'Kafka write',
            context: { topic, messages: chunk.length },
          });
          for (const m of metadata) results.push({ topic: m.topicName, partition: m.partition, baseOffset: m.baseOffset ?? m.offset ?? '-1' });
        }
        return results;
      } catch (err) {
        logger.debug({ topic, count: messages.length }, 'send failed');
        throw kafkaError(`Kafka: could not write ${messages.length} message(s)`, err, { topic });
      }
    },
    close: async () => {
      if (closed) return;
      closed = true;
      await producer.disconnect();
    },
  };
}

/** Consecutive runs of messages whose estimated encoded size stays under `maxBytes` (at least one each). */
export function chunkBySize(messages: readonly KafkaOutMessage[], maxBytes: number): KafkaOutMessage[][] {
  const chunks: KafkaOutMessage[][] = [];
  let chunk: KafkaOutMessage[] = [];
  let bytes = 0;
  for (const m of messages) {
    const size = estimateSize(m);
    if (chunk.length > 0 && bytes + size > maxBytes) {
      chunks.push(chunk);
      chunk = [];
      bytes = 0;
    }
    chunk.push(m);
    bytes += size;
  }
  if (chunk.length > 0) chunks.push(chunk);
  return chunks;
}

/** Record overhead in a v2 record batch is ~20 bytes; 32 keeps the estimate on the safe side. */
function estimateSize(m: KafkaOutMessage): number {
  let size = 32 + byteLength(m.key) + byteLength(m.value);
  for (const [name, value] of Object.entries(m.headers ?? {})) {
    for (const v of Array.isArray(value) ? value : [value]) size += 8 + Buffer.byteLength(name) + byteLength(v as Buffer | string);
  }
  return size;
}

function byteLength(v: Buffer | string | null): number {
  return v === null ? 0 : typeof v === 'string' ? Buffer.byteLength(v) : v.length;
}

function toKafkajsMessage(m: KafkaOutMessage): Message {
  return {
    key: m.key,
    value: m.value,
    ...(m.headers === undefined ? {} : { headers: m.headers as Message['headers'] }),
    ...(m.partition === undefined ? {} : { partition: m.partition }),
    ...(m.timestamp === undefined ? {} : { timestamp: m.timestamp }),
  };
}
