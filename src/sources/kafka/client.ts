/**
 * The Kafka client behind semdedup's Kafka source and sink. kafkajs is used only here, in
 * `source.ts` and in `src/sinks/kafka/`; everything else sees the narrow types below, so the
 * client library can be swapped by rewriting these adapters.
 */
import { Kafka, logLevel as KafkajsLogLevel } from 'kafkajs';
import type { LogEntry, SASLOptions, logCreator } from 'kafkajs';
import type { ConnectionOptions } from 'node:tls';
import { RetriableError, SemdedupError } from '../../shared/errors.js';
import type { ErrorContext } from '../../shared/errors.js';
import { silentLogger } from '../../runtime/logging.js';
import type { Logger } from '../../runtime/logging.js';

/** SASL credentials, passed to the client unchanged and never logged. */
export type KafkaSaslConfig =
  | { readonly mechanism: 'plain' | 'scram-sha-256' | 'scram-sha-512'; readonly username: string; readonly password: string }
  | { readonly mechanism: 'oauthbearer'; readonly oauthBearerProvider: () => Promise<{ value: string }> };

export interface KafkaConnectionConfig {
  /** `host:port` of one or more bootstrap brokers. */
  readonly brokers: readonly string[];
  /** Default `semdedup`. */
  readonly clientId?: string;
  /** TLS: `true` for Node's defaults, or Node TLS options (ca, cert, key...). Never logged. */
  readonly ssl?: boolean | ConnectionOptions;
  readonly sasl?: KafkaSaslConfig;
  /** TCP connect timeout, ms. Default 3000. */
  readonly connectionTimeoutMs?: number;
  /** Per-request timeout, ms. Default 30000. */
  readonly requestTimeoutMs?: number;
  /**
   * How long the sink's writes and the source's commits keep retrying a transient failure
   * (broker down or restarting, leader moving, consumer rejoining) after kafkajs's own retries
   * gave up, ms; then the error is thrown. Default 120000.
   */
  readonly retryWindowMs?: number;
  /** kafkajs's own warnings and errors go to `logger.child({ module: 'kafkajs' })`. Default: silent. */
  readonly logger?: Logger;
}

export interface KafkaClient {
  readonly clientId: string;
  readonly brokers: readonly string[];
  readonly logger: Logger;
  /** See `KafkaConnectionConfig.retryWindowMs`. */
  readonly retryWindowMs: number;
  /** A connected admin client; `close()` it when done. */
  connectAdmin(): Promise<KafkaAdmin>;
  /**
   * The kafkajs instance. For the adapters in `src/sources/kafka` and `src/sinks/kafka` only;
   * nothing else may use it, so that kafkajs stays swappable.
   */
  readonly kafkajs: Kafka;
}

export interface TopicPartitionOffsets {
  readonly partition: number;
  /** Oldest offset still in the log. */
  readonly low: string;
  /** End offset (high watermark): the offset the next record will get. */
  readonly high: string;
}

export interface TopicSpec {
  readonly topic: string;
  readonly numPartitions: number;
  /** Default: min(3, number of brokers). */
  readonly replicationFactor?: number;
  /** Topic configs, e.g. `{ 'cleanup.policy': 'compact' }`. */
  readonly config?: Readonly<Record<string, string>>;
}

export interface EnsuredTopic {
  readonly topic: string;
  readonly created: boolean;
  /** Partitions the topic has now (may differ from the spec for a topic that existed). */
  readonly numPartitions: number;
}

export interface KafkaAdmin {
  describeCluster(): Promise<{ clusterId: string; controller: number | null; brokers: { nodeId: number; host: string; port: number }[] }>;
  /** Partition count per existing topic; topics that do not exist are absent. */
  partitionCounts(topics: readonly string[]): Promise<Map<string, number>>;
  /** Creates the topics that do not exist yet (waits for their leaders); returns the names created. */
  createTopics(specs: readonly TopicSpec[]): Promise<string[]>;
  deleteTopics(topics: readonly string[]): Promise<void>;
  /** Low and end offsets of every partition of `topic`, sorted by partition. */
  fetchTopicOffsets(topic: string): Promise<TopicPartitionOffsets[]>;
  /** The group's committed offsets for `topic` by partition (`-1` where it has none). */
  fetchCommittedOffsets(groupId: string, topic: string): Promise<Map<number, string>>;
  close(): Promise<void>;
}

export function createKafkaClient(config: KafkaConnectionConfig): KafkaClient {
  if (config.brokers.length === 0) {
    throw new SemdedupError('Kafka: no brokers given (expected host:port, e.g. 127.0.0.1:9092)');
  }
  const clientId = config.clientId ?? 'semdedup';
  const logger = config.logger ?? silentLogger();
  const kafkajs = new Kafka({
    clientId,
    brokers: [...config.brokers],
    ...(config.ssl === undefined ? {} : { ssl: config.ssl }),
    // Our union is a subset of kafkajs's (same field names), kept separate so callers do not
    // depend on kafkajs types.
    ...(config.sasl === undefined ? {} : { sasl: config.sasl as SASLOptions }),
    connectionTimeout: config.connectionTimeoutMs ?? 3000,
    requestTimeout: config.requestTimeoutMs ?? 30000,
    logLevel: KafkajsLogLevel.WARN,
    logCreator: kafkajsToPino(logger.child({ module: 'kafkajs' })),
  });
  return {
    clientId,
    brokers: [...config.brokers],
    logger,
    retryWindowMs: config.retryWindowMs ?? 120_000,
    kafkajs,
    connectAdmin: () => connectAdmin(kafkajs),
  };
}

/** Keys of kafkajs log entries that could carry credentials; dropped before logging. */
const SECRET_LOG_KEYS = new Set(['sasl', 'ssl', 'password', 'username', 'accessKeyId', 'secretAccessKey', 'sessionToken', 'authorizationIdentity']);

/** kafkajs `logCreator` that routes its entries (WARN and above) to pino. */
export function kafkajsToPino(logger: Logger): logCreator {
  return () =>
    ({ namespace, level, log }: LogEntry) => {
      const { message, timestamp: _timestamp, ...extra } = log;
      const context: Record<string, unknown> = { namespace };
      for (const [key, value] of Object.entries(extra)) {
        if (!SECRET_LOG_KEYS.has(key)) context[key] = value;
      }
      if (level === KafkajsLogLevel.ERROR) logger.error(context, message);
      else if (level === KafkajsLogLevel.WARN) logger.warn(context, message);
      else if (level === KafkajsLogLevel.INFO) logger.info(context, message);
      else logger.debug(context, message);
    };
}

/** Wraps a kafkajs error: retriable ones become `RetriableError`, the cause is kept. */
export function kafkaError(message: string, cause: unknown, context: ErrorContext = {}): SemdedupError {
  const detail = cause instanceof Error ? `: ${cause.message}` : '';
  const retriable = typeof cause === 'object' && cause !== null && (cause as { retriable?: unknown }).retriable === true;
  return retriable
    ? new RetriableError(`${message}${detail}`, { cause, context })
    : new SemdedupError(`${message}${detail}`, { cause, context });
}

/**
 * Retries `operation` while it fails with a retriable Kafka error (backoff with jitter), e.g.
 * NOT_COORDINATOR while a fresh broker is still loading `__consumer_offsets`: unlike the
 * consumer, kafkajs's admin does not retry those itself. (Move to src/runtime/retry.ts once
 * that exists.)
 */
export async function withKafkaRetry<T>(operation: () => Promise<T>, options: { retries?: number; initialDelayMs?: number; maxDelayMs?: number } = {}): Promise<T> {
  const retries = options.retries ?? 8;
  let delay = options.initialDelayMs ?? 100;
  for (let attempt = 0; ; attempt++) {
    try {
      return await operation();
    } catch (err) {
      const retriable = typeof err === 'object' && err !== null && (err as { retriable?: unknown }).retriable === true;
      if (!retriable || attempt >= retries) throw err;
      await new Promise((resolve) => setTimeout(resolve, delay * (0.8 + 0.4 * Math.random())));
      delay = Math.min(delay * 2, options.maxDelayMs ?? 2000);
    }
  }
}

/** kafkajs error names that mean "the cluster is not reachable right now", whatever `retriable` says. */
const TRANSIENT_NAMES = new Set([
  'KafkaJSConnectionError',
  'KafkaJSConnectionClosedError',
  'KafkaJSRequestTimeoutError',
  'KafkaJSNumberOfRetriesExceeded',
  'KafkaJSBrokerNotFound',
  'KafkaJSMetadataNotLoaded',
  'KafkaJSLockTimeout',
]);

/**
 * True when `err` (or an error in its cause chain) is a transient Kafka failure: kafkajs wraps
 * a retriable error in a non-retriable one once its own retries are used up, so the chain is
 * searched. Also true while the consumer restarts after a crash ("Consumer group was not
 * initialized"): it rejoins by itself.
 */
export function isTransientKafkaError(err: unknown): boolean {
  for (let e = err, depth = 0; typeof e === 'object' && e !== null && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    const { retriable, name, message } = e as { retriable?: unknown; name?: unknown; message?: unknown };
    if (retriable === true || (typeof name === 'string' && TRANSIENT_NAMES.has(name))) return true;
    if (typeof message === 'string' && /Consumer group was not initialized/.test(message)) return true;
  }
  return false;
}

/**
 * Retries `operation` on transient Kafka failures (`isTransientKafkaError`) for at most
 * `windowMs` (backoff with jitter, 250 ms doubling up to 5 s), logging each retry at warn and
 * the recovery at info; anything else, or the window running out, throws the last error.
 */
export async function withKafkaRetryWindow<T>(operation: () => Promise<T>, options: { windowMs: number; logger: Logger; what: string; context?: Record<string, unknown> }): Promise<T> {
  const started = performance.now();
  let delay = 250;
  for (let attempt = 1; ; attempt++) {
    try {
      const result = await operation();
      if (attempt > 1) options.logger.info({ ...options.context, attempts: attempt, seconds: Math.round(performance.now() - started) / 1000 }, `${options.what}: succeeded after retrying`);
      return result;
    } catch (err) {
      const elapsed = performance.now() - started;
      if (!isTransientKafkaError(err) || elapsed + delay > options.windowMs) {
        if (attempt > 1) options.logger.error({ ...options.context, err, attempts: attempt, windowMs: options.windowMs }, `${options.what}: giving up`);
        throw err;
      }
      options.logger.warn({ ...options.context, attempt, retryInMs: delay, windowMs: options.windowMs, error: (err as Error).message }, `${options.what} failed (transient); retrying`);
      await new Promise((resolve) => setTimeout(resolve, delay * (0.8 + 0.4 * Math.random())));
      delay = Math.min(delay * 2, 5000);
    }
  }
}

async function connectAdmin(kafkajs: Kafka): Promise<KafkaAdmin> {
  const admin = kafkajs.admin();
  try {
    await admin.connect();
  } catch (err) {
    throw kafkaError('Kafka: admin could not connect', err);
  }

  const partitionCounts = async (topics: readonly string[]): Promise<Map<string, number>> => {
    const existing = new Set(await withKafkaRetry(() => admin.listTopics()));
    const wanted = topics.filter((t) => existing.has(t));
    const counts = new Map<string, number>();
    if (wanted.length === 0) return counts;
    const { topics: metadata } = await withKafkaRetry(() => admin.fetchTopicMetadata({ topics: wanted }));
    for (const t of metadata) counts.set(t.name, t.partitions.length);
    return counts;
  };

  return {
    describeCluster: async () => {
      const c = await admin.describeCluster();
      return { clusterId: c.clusterId, controller: c.controller, brokers: c.brokers.map((b) => ({ ...b })) };
    },
    partitionCounts,
    createTopics: async (specs) => {
      if (specs.length === 0) return [];
      const existing = await partitionCounts(specs.map((s) => s.topic));
      const missing = specs.filter((s) => !existing.has(s.topic));
      if (missing.length === 0) return [];
      const brokerCount = (await admin.describeCluster()).brokers.length;
      const request = {
        waitForLeaders: true,
        topics: missing.map((s) => ({
          topic: s.topic,
          numPartitions: s.numPartitions,
          // kafkajs speaks CreateTopics v3, which has no "broker default" (-1): be explicit.
          replicationFactor: s.replicationFactor ?? Math.min(3, brokerCount),
          configEntries: Object.entries(s.config ?? {}).map(([name, value]) => ({ name, value })),
        })),
      };
      try {
        // Waiting for the leaders can fail with a retriable "does not host this topic-partition"
        // while the new topic's metadata spreads (or a deletion elsewhere settles): ask again.
        await withKafkaRetry(async () => {
          try {
            await admin.createTopics(request);
          } catch (err) {
            // Another process (or our own earlier attempt) created it in the meantime.
            if ((err as { type?: string }).type !== 'TOPIC_ALREADY_EXISTS') throw err;
          }
        });
      } catch (err) {
        throw kafkaError(`Kafka: could not create topics ${missing.map((s) => s.topic).join(', ')}`, err);
      }
      return missing.map((s) => s.topic);
    },
    deleteTopics: async (topics) => {
      if (topics.length > 0) await admin.deleteTopics({ topics: [...topics] });
    },
    fetchTopicOffsets: async (topic) => {
      try {
        const offsets = await withKafkaRetry(() => admin.fetchTopicOffsets(topic));
        return offsets
          .map((o) => ({ partition: o.partition, low: o.low, high: o.high }))
          .sort((a, b) => a.partition - b.partition);
      } catch (err) {
        throw kafkaError('Kafka: could not fetch end offsets', err, { topic });
      }
    },
    fetchCommittedOffsets: async (groupId, topic) => {
      let result;
      try {
        // A fresh kafkajs admin has no brokers in its pool until metadata is loaded: its group
        // coordinator lookup then waits a retry (~300 ms) first. Loading metadata costs one
        // round trip.
        await withKafkaRetry(() => admin.listTopics());
        result = await withKafkaRetry(() => admin.fetchOffsets({ groupId, topics: [topic] }));
      } catch (err) {
        throw kafkaError(`Kafka: could not fetch the committed offsets of group ${groupId}`, err, { topic });
      }
      const committed = new Map<number, string>();
      for (const p of result.find((r) => r.topic === topic)?.partitions ?? []) committed.set(p.partition, p.offset);
      return committed;
    },
    close: () => admin.disconnect(),
  };
}

/**
 * Creates the topics that are missing. An existing topic is left as it is; when its partition
 * count differs from the spec a warning is logged and the actual count is returned, so the
 * caller decides whether that matters (keyed state does care).
 */
export async function ensureTopics(admin: KafkaAdmin, specs: readonly TopicSpec[], logger: Logger = silentLogger()): Promise<EnsuredTopic[]> {
  const created = new Set(await admin.createTopics(specs));
  const counts = await admin.partitionCounts(specs.map((s) => s.topic));
  return specs.map((spec) => {
    const numPartitions = counts.get(spec.topic) ?? spec.numPartitions;
    if (!created.has(spec.topic) && numPartitions !== spec.numPartitions) {
      logger.warn({ topic: spec.topic, expected: spec.numPartitions, actual: numPartitions }, 'existing topic has a different partition count');
    }
    return { topic: spec.topic, created: created.has(spec.topic), numPartitions };
  });
}
