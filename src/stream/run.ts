import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { streamTopology } from '../../topologies/stream.js';
import { readCentroids } from '../assign/centroids.js';
import { createKernel, warmUpStreamKernel } from '../kernels/index.js';
import { createStreamMetrics } from '../runtime/metrics.js';
import type { StreamMetrics } from '../runtime/metrics.js';
import { runStreamTopology } from '../runtime/stream-runner.js';
import type { StreamStopReason } from '../runtime/stream-runner.js';
import { kafkaConnectionOf, redactStreamConfig } from '../shared/stream-config.js';
import type { StreamConfig } from '../shared/stream-config.js';
import type { RankSpec } from '../shared/types.js';
import { createDeadLetterWriter, createKafkaSink } from '../sinks/kafka/index.js';
import type { KafkaSink } from '../sinks/kafka/index.js';
import { createKafkaClient } from '../sources/kafka/index.js';
import type { KafkaSource } from '../sources/kafka/index.js';
import { DedupEngine } from '../state/dedup-engine.js';
import { StateStore, stateIdentity, stateStoreMemoryMb } from '../store/state-store.js';
import type { StreamContext, StreamTotals } from './context.js';
import {
  Closers,
  createInputSource,
  deadLetterTopicOf,
  ensureOutputTopics,
  inputDecodeOptions,
  inputPartitionCount,
  maxBufferedRowsOf,
  rankSpecOf,
  roundTimings,
  secondsSince,
  serveMetrics,
  streamRunOptions,
} from './lifecycle.js';
import type { StreamRoleHooks } from './lifecycle.js';

export interface StreamSummary extends StreamTotals {
  readonly stopped: StreamStopReason;
  readonly seconds: number;
  /** Clips taken into the state per second of consuming (start and shutdown excluded). */
  readonly clipsPerSecond: number;
  readonly stateSize: number;
  readonly timings: Record<string, number>;
}

export interface StreamRunHooks extends StreamRoleHooks {
  /** Use these metrics (tests read them); default: a fresh registry. */
  readonly metrics?: StreamMetrics;
}

/** `semdedup stream`: consume clips, keep the dedup state, publish duplicate verdicts. */
export async function runStream(config: StreamConfig, hooks: StreamRunHooks): Promise<StreamSummary> {
  const logger = hooks.logger.child({ topology: 'stream' });
  const started = performance.now();
  // A .npy file, a run's output folder, or an s3:// object (AWS env chain).
  const { centroids, k, dim, path: centroidsPath } = await readCentroids(config.centroids);
  const rankSpec: RankSpec = rankSpecOf(config);
  const deadLetterTopic = deadLetterTopicOf(config);
  const maxBufferedRows = maxBufferedRowsOf(config);
  logger.info({ config: redactStreamConfig({ ...config, deadLetterTopic, maxBufferedRows }), centroids: centroidsPath, k, dim }, 'stream starting');

  const stateDir = resolve(config.state);
  await mkdir(stateDir, { recursive: true });
  const statePath = join(stateDir, 'state.duckdb');
  const closers = new Closers(logger);
  try {
    const store = await StateStore.open(statePath, { memoryLimitMb: stateStoreMemoryMb(config.stateMemoryMb) });
    closers.add(() => store.close());
    // The state only makes sense with the same centroids, ranking, id type and eps.
    const probe = { probe: config.probe, probeMargin: config.probeMargin };
    const identity = stateIdentity(centroids, dim, rankSpec, config.idType, config.eps, probe);
    await store.checkIdentity(identity, statePath);
    const kernel = await createKernel(config.backend, { warn: (msg) => logger.warn(msg) });
    closers.add(() => kernel.close());
    await warmUpStreamKernel(kernel, centroids, dim);
    const engine = await DedupEngine.create(
      { centroids, dim, rankSpec, idType: config.idType, kernel, eps: config.eps, flushMaxRows: config.flushMaxRows, metadataFields: config.metadataFields, ...probe, stateMemoryMb: config.stateMemoryMb },
      store,
    );
    logger.info({ stateSize: engine.size, state: statePath, backend: kernel.name, kernel: kernel.description }, 'state loaded');

    const client = createKafkaClient({ ...(await kafkaConnectionOf(config)), logger });
    const admin = await client.connectAdmin();
    try {
      await ensureOutputTopics(admin, config, await inputPartitionCount(admin, config), logger);
    } finally {
      await admin.close();
    }

    const sink: KafkaSink = await createKafkaSink(client, { logger });
    closers.add(() => sink.close());
    const metrics = hooks.metrics ?? createStreamMetrics({ processMetrics: true });
    let healthy = true;
    const server = await serveMetrics(metrics, config, () => healthy, closers, logger);
    const source: KafkaSource = await createInputSource(client, config, logger);
    closers.add(() => source.close());

    const ctx: StreamContext = {
      config,
      engine,
      validation: { dim, seenIds: engine.knownIds },
      decodeOptions: inputDecodeOptions(config, dim),
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
      cuts: [],
    };
    hooks.onStarted?.({ metricsUrl: server?.url ?? null });
    const consumeStarted = performance.now();
    let stopped: StreamStopReason;
    try {
      stopped = await runStreamTopology(streamTopology, ctx, source.batches(), logger, {
        ...streamRunOptions(config, hooks.signal, source, metrics),
        // Checkpoints cut but never to be written must not hold up reads of the state.
        onDurableFailure: () => engine.abandonPendingCheckpoints(),
      });
    } catch (err) {
      healthy = false;
      throw err;
    }
    const consumeSeconds = (performance.now() - consumeStarted) / 1000;
    const summary: StreamSummary = {
      ...ctx.totals,
      stopped,
      seconds: secondsSince(started),
      clipsPerSecond: consumeSeconds > 0 ? Math.round(ctx.totals.clipsIn / consumeSeconds) : 0,
      stateSize: engine.size,
      timings: roundTimings(ctx.timings),
    };
    logger.info(summary, stopped === 'signal' ? 'stream stopped by signal; state checkpointed and offsets committed' : 'stream reached the end offsets; state checkpointed and offsets committed');
    return summary;
  } finally {
    await closers.closeAll();
  }
}
