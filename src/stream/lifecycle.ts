/**
 * Start and shutdown shared by the stream roles (`runStream` in run.ts, `runRouter` in
 * router.ts, `runWorker` in worker.ts): defaults derived from the config, the input source,
 * the output topics, the metrics server, closers run in reverse on the way out, the runner's
 * pause/resume and the summary's rounding.
 */
import type { Logger } from '../runtime/logging.js';
import { startMetricsServer } from '../runtime/metrics.js';
import type { MetricsServer, StreamMetrics } from '../runtime/metrics.js';
import type { StreamRunOptions } from '../runtime/stream-runner.js';
import { InputError } from '../shared/errors.js';
import type { StreamConfig } from '../shared/stream-config.js';
import type { RankSpec } from '../shared/types.js';
import { createKafkaSource, ensureTopics } from '../sources/kafka/index.js';
import type { KafkaAdmin, KafkaClient, KafkaDecodeOptions, KafkaSource } from '../sources/kafka/index.js';

/** What each role's run takes besides its config. */
export interface StreamRoleHooks {
  readonly logger: Logger;
  /** Abort to stop gracefully: stop fetching, checkpoint, publish, commit, close. */
  readonly signal?: AbortSignal;
  /** Called once the consumer has joined and the metrics server listens. */
  readonly onStarted?: (info: { metricsUrl: string | null }) => void;
}

export function rankSpecOf(config: StreamConfig): RankSpec {
  return { whichToKeep: config.whichToKeep, distanceMetric: config.distanceMetric, ranking: config.ranking, seed: config.seed };
}

export function deadLetterTopicOf(config: StreamConfig): string {
  return config.deadLetterTopic ?? `${config.inputTopic}.dlq`;
}

export function maxBufferedRowsOf(config: StreamConfig): number {
  return config.maxBufferedRows ?? 4 * config.flushMaxRows;
}

/** Decoding of the clip input topic (JSON or Arrow records as producers write them). */
export function inputDecodeOptions(config: StreamConfig, dim: number): KafkaDecodeOptions {
  return { idField: config.idField, embeddingField: config.embeddingField, metadataFields: config.metadataFields, idType: config.idType, dim, maxRecordBytes: config.maxRecordBytes };
}

/** The partition count of the input topic; a missing topic is the user's mistake. */
export async function inputPartitionCount(admin: KafkaAdmin, config: StreamConfig): Promise<number> {
  const counts = await admin.partitionCounts([config.inputTopic]);
  if (!counts.has(config.inputTopic)) throw new InputError(`Kafka topic ${config.inputTopic} does not exist`, { context: { topic: config.inputTopic, field: 'input-topic' } });
  return counts.get(config.inputTopic)!;
}

/** The verdict changelog (`defaultPartitions` unless --output-partitions) and the dead-letter topic. */
export async function ensureOutputTopics(admin: KafkaAdmin, config: StreamConfig, defaultPartitions: number, logger: Logger): Promise<void> {
  await ensureTopics(
    admin,
    [
      // A keyed changelog: compaction keeps the latest verdict per clip.
      { topic: config.outputTopic, numPartitions: config.outputPartitions ?? defaultPartitions, config: { 'cleanup.policy': 'compact' } },
      { topic: deadLetterTopicOf(config), numPartitions: 1 },
    ],
    logger,
  );
}

/** The consumer of the clip input topic in the config's group. */
export function createInputSource(client: KafkaClient, config: StreamConfig, logger: Logger): Promise<KafkaSource> {
  // Larger fetches than the adapter's default: fewer, larger batches amortize the per-batch work
  // (a kernel call to assign each batch), which matters for big JSON records.
  return createKafkaSource(client, {
    topic: config.inputTopic,
    groupId: config.group,
    stopAtEnd: config.stopAtEnd,
    logger,
    maxBytesPerPartition: 4 << 20,
    maxBytes: 16 << 20,
    sessionTimeoutMs: config.sessionTimeoutMs,
    heartbeatIntervalMs: Math.min(3000, Math.floor(config.sessionTimeoutMs / 6)),
  });
}

/** Things to close on the way out, last opened first; a failing close is logged, not thrown. */
export class Closers {
  readonly #closers: (() => Promise<void> | void)[] = [];
  readonly #logger: Logger;

  constructor(logger: Logger) {
    this.#logger = logger;
  }

  add(close: () => Promise<void> | void): void {
    this.#closers.push(close);
  }

  async closeAll(): Promise<void> {
    for (const close of this.#closers.reverse()) {
      try {
        await close();
      } catch (err) {
        this.#logger.warn({ err }, 'error while closing');
      }
    }
  }
}

/** Serves /metrics and /healthz unless --metrics-port is 0; closed with the closers. */
export async function serveMetrics(metrics: StreamMetrics, config: StreamConfig, healthy: () => boolean, closers: Closers, logger: Logger): Promise<MetricsServer | null> {
  if (config.metricsPort === 0) return null;
  let server: MetricsServer;
  try {
    server = await startMetricsServer(metrics.registry, { host: config.metricsHost, port: config.metricsPort, healthy });
  } catch (cause) {
    throw new InputError(`cannot serve metrics on ${config.metricsHost}:${config.metricsPort}: ${(cause as Error).message} (--metrics-port 0 turns it off)`, { cause, context: { field: 'metrics-port' } });
  }
  closers.add(() => server.close());
  logger.info({ url: `${server.url}/metrics` }, 'metrics served');
  return server;
}

/**
 * The runner's options from the config: checkpoint triggers, the buffer bound and, for
 * backpressure, stopping and restarting fetching (shown in the `paused` gauge).
 */
export function streamRunOptions(config: StreamConfig, signal: AbortSignal | undefined, source: { pause(): void; resume(): void }, metrics: StreamMetrics): StreamRunOptions {
  return {
    flushMaxRows: config.flushMaxRows,
    flushMaxMs: config.flushMaxMs,
    maxBufferedRows: maxBufferedRowsOf(config),
    signal,
    pause: () => {
      metrics.paused.set(1);
      source.pause();
    },
    resume: () => {
      source.resume();
      metrics.paused.set(0);
    },
  };
}

/** Seconds since `started` (a performance.now()), to 10 ms. */
export function secondsSince(started: number): number {
  return Math.round((performance.now() - started) / 10) / 100;
}

/** Per-step seconds rounded to the millisecond, for summaries. */
export function roundTimings(timings: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(timings).map(([s, v]) => [s, Math.round(v * 1000) / 1000]));
}
