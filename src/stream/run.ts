import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { streamTopology } from '../../topologies/stream.js';
import { readCentroids } from '../assign/centroids.js';
import { createKernel } from '../kernels/index.js';
import type { Logger } from '../runtime/logging.js';
import { createStreamMetrics, startMetricsServer } from '../runtime/metrics.js';
import type { MetricsServer, StreamMetrics } from '../runtime/metrics.js';
import { runStreamTopology } from '../runtime/stream-runner.js';
import type { StreamStopReason } from '../runtime/stream-runner.js';
import { InputError } from '../shared/errors.js';
import { kafkaConnectionOf, redactStreamConfig } from '../shared/stream-config.js';
import type { StreamConfig } from '../shared/stream-config.js';
import type { RankSpec } from '../shared/types.js';
import { createDeadLetterWriter, createKafkaSink } from '../sinks/kafka/index.js';
import type { KafkaSink } from '../sinks/kafka/index.js';
import { createKafkaClient, createKafkaSource, ensureTopics } from '../sources/kafka/index.js';
import type { KafkaSource } from '../sources/kafka/index.js';
import { DedupEngine } from '../state/dedup-engine.js';
import { StateStore, stateIdentity } from '../store/state-store.js';
import type { StreamContext, StreamTotals } from './context.js';

export interface StreamSummary extends StreamTotals {
  readonly stopped: StreamStopReason;
  readonly seconds: number;
  /** Clips taken into the state per second of consuming (start and shutdown excluded). */
  readonly clipsPerSecond: number;
  readonly stateSize: number;
  readonly timings: Record<string, number>;
}

export interface StreamRunHooks {
  readonly logger: Logger;
  /** Abort to stop gracefully: stop fetching, checkpoint, publish, commit, close. */
  readonly signal?: AbortSignal;
  /** Use these metrics (tests read them); default: a fresh registry. */
  readonly metrics?: StreamMetrics;
  /** Called once the consumer has joined and the metrics server listens. */
  readonly onStarted?: (info: { metricsUrl: string | null }) => void;
}

/** `semdedup stream`: consume clips, keep the dedup state, publish duplicate verdicts. */
export async function runStream(config: StreamConfig, hooks: StreamRunHooks): Promise<StreamSummary> {
  const logger = hooks.logger.child({ topology: 'stream' });
  const started = performance.now();
  // A .npy file, a run's output folder, or an s3:// object (AWS env chain).
  const { centroids, k, dim, path: centroidsPath } = await readCentroids(config.centroids);
  const rankSpec: RankSpec = { whichToKeep: config.whichToKeep, distanceMetric: config.distanceMetric, ranking: config.ranking, seed: config.seed };
  const deadLetterTopic = config.deadLetterTopic ?? `${config.inputTopic}.dlq`;
  const maxBufferedRows = config.maxBufferedRows ?? 4 * config.flushMaxRows;
  logger.info({ config: redactStreamConfig({ ...config, deadLetterTopic, maxBufferedRows }), centroids: centroidsPath, k, dim }, 'stream starting');

  const stateDir = resolve(config.state);
  await mkdir(stateDir, { recursive: true });
  const statePath = join(stateDir, 'state.duckdb');
  const closers: (() => Promise<void> | void)[] = [];
  const closeAll = async (): Promise<void> => {
    for (const close of closers.reverse()) {
      try {
        await close();
      } catch (err) {
        logger.warn({ err }, 'error while closing');
      }
    }
  };
  try {
    const store = await StateStore.open(statePath);
    closers.push(() => store.close());
    // The state only makes sense with the same centroids, ranking, id type and eps.
    const identity = stateIdentity(centroids, dim, rankSpec, config.idType, config.eps);
    await store.checkIdentity(identity, statePath);
    const kernel = await createKernel(config.backend, { warn: (msg) => logger.warn(msg) });
    closers.push(() => kernel.close());
    const engine = await DedupEngine.create(
      { centroids, dim, rankSpec, idType: config.idType, kernel, eps: config.eps, flushMaxRows: config.flushMaxRows, metadataFields: config.metadataFields },
      store,
    );
    logger.info({ stateSize: engine.size, state: statePath, backend: kernel.name, kernel: kernel.description }, 'state loaded');

    const client = createKafkaClient({ ...(await kafkaConnectionOf(config)), logger });
    const admin = await client.connectAdmin();
    let inputPartitions: number;
    try {
      const counts = await admin.partitionCounts([config.inputTopic]);
      if (!counts.has(config.inputTopic)) throw new InputError(`Kafka topic ${config.inputTopic} does not exist`, { context: { topic: config.inputTopic, field: 'input-topic' } });
      inputPartitions = counts.get(config.inputTopic)!;
      await ensureTopics(
        admin,
        [
          // A keyed changelog: compaction keeps the latest verdict per clip.
          { topic: config.outputTopic, numPartitions: config.outputPartitions ?? inputPartitions, config: { 'cleanup.policy': 'compact' } },
          { topic: deadLetterTopic, numPartitions: 1 },
        ],
        logger,
      );
    } finally {
      await admin.close();
    }

    const sink: KafkaSink = await createKafkaSink(client, { logger });
    closers.push(() => sink.close());
    const metrics = hooks.metrics ?? createStreamMetrics({ processMetrics: true });
    let healthy = true;
    let server: MetricsServer | null = null;
    if (config.metricsPort !== 0) {
      try {
        server = await startMetricsServer(metrics.registry, { host: config.metricsHost, port: config.metricsPort, healthy: () => healthy });
      } catch (cause) {
        throw new InputError(`cannot serve metrics on ${config.metricsHost}:${config.metricsPort}: ${(cause as Error).message} (--metrics-port 0 turns it off)`, { cause, context: { field: 'metrics-port' } });
      }
      closers.push(() => server!.close());
      logger.info({ url: `${server.url}/metrics` }, 'metrics served');
    }
    // Larger fetches than the adapter's default: fewer, larger batches amortize the per-batch work
    // (a kernel call to assign each batch), which matters for big JSON records.
    const source: KafkaSource = await createKafkaSource(client, { topic: config.inputTopic, groupId: config.group, stopAtEnd: config.stopAtEnd, logger, maxBytesPerPartition: 4 << 20, maxBytes: 16 << 20 });
    closers.push(() => source.close());

    const ctx: StreamContext = {
      config,
      engine,
      validation: { dim, seenIds: engine.knownIds },
      decodeOptions: { idField: config.idField, embeddingField: config.embeddingField, metadataFields: config.metadataFields, idType: config.idType, dim },
      client,
      source,
      sink,
      deadLetters: createDeadLetterWriter(sink, deadLetterTopic),
      metrics,
      totals: { records: 0, skippedRecords: 0, clipsIn: 0, deadLetters: 0, verdictsOut: 0, verdictsRepublished: 0, checkpoints: 0 },
      timings: {},
      pendingRows: 0,
      pendingSince: null,
      backlog: false,
      rowsPerRecord: 1,
      lag: new Map(),
      pendingDeadLetters: [],
      pendingCommits: new Map(),
      checkpointVerdicts: [],
    };
    hooks.onStarted?.({ metricsUrl: server?.url ?? null });
    const consumeStarted = performance.now();
    let stopped: StreamStopReason;
    try {
      stopped = await runStreamTopology(streamTopology, ctx, source.batches(), logger, {
        flushMaxRows: config.flushMaxRows,
        flushMaxMs: config.flushMaxMs,
        maxBufferedRows,
        signal: hooks.signal,
        pause: () => {
          metrics.paused.set(1);
          source.pause();
        },
        resume: () => {
          source.resume();
          metrics.paused.set(0);
        },
      });
    } catch (err) {
      healthy = false;
      throw err;
    }
    const consumeSeconds = (performance.now() - consumeStarted) / 1000;
    const summary: StreamSummary = {
      ...ctx.totals,
      stopped,
      seconds: Math.round((performance.now() - started) / 10) / 100,
      clipsPerSecond: consumeSeconds > 0 ? Math.round(ctx.totals.clipsIn / consumeSeconds) : 0,
      stateSize: engine.size,
      timings: Object.fromEntries(Object.entries(ctx.timings).map(([s, v]) => [s, Math.round(v * 1000) / 1000])),
    };
    logger.info(summary, stopped === 'signal' ? 'stream stopped by signal; state checkpointed and offsets committed' : 'stream reached the end offsets; state checkpointed and offsets committed');
    return summary;
  } finally {
    await closeAll();
  }
}
