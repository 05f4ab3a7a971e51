/**
 * The router stage of the scale-out topology (`semdedup stream --role router`,
 * `topologies/router.ts`, docs/SCALING.md): stateless, any number of instances in one consumer
 * group on the clip input topic. Per batch: decode → validate (bad rows → dead-letter topic,
 * as `stream`) → normalize → assign to the centroids → one Arrow record per cluster to the
 * internal by-cluster topic (partition = cluster % partitions), acknowledged before the loop
 * takes the next batch. Per checkpoint: dead letters (acked), then the input offsets. So a
 * commit never runs ahead of the internal topic (at-least-once); a clip re-sent after a router
 * crash lands in the same internal partition, where its worker skips it as a replay.
 *
 * Repeated ids are NOT refused here (the router keeps no state): the worker owning the cluster
 * tells a replay (same id, same cluster: skipped) from a clash (same id, other cluster of its
 * partition: dead-lettered).
 */
import { assignToCentroids } from '../assign/index.js';
import { readCentroids } from '../assign/centroids.js';
import { createKernel } from '../kernels/index.js';
import type { SimilarityKernel } from '../kernels/types.js';
import type { Logger } from '../runtime/logging.js';
import { createStreamMetrics } from '../runtime/metrics.js';
import type { StreamMetrics } from '../runtime/metrics.js';
import type { RunnableContext } from '../runtime/runner.js';
import { runStreamTopology } from '../runtime/stream-runner.js';
import type { StreamRunnableContext, StreamStopReason } from '../runtime/stream-runner.js';
import { InputError } from '../shared/errors.js';
import { kafkaConnectionOf, redactStreamConfig } from '../shared/stream-config.js';
import type { StreamConfig } from '../shared/stream-config.js';
import type { ClipBatch } from '../shared/types.js';
import { createDeadLetterWriter, createKafkaSink } from '../sinks/kafka/index.js';
import type { DeadLetter, DeadLetterWriter, KafkaSink } from '../sinks/kafka/index.js';
import { createKafkaClient, deadLetterForRow, decodeKafkaRecords, ensureTopics } from '../sources/kafka/index.js';
import type { DecodedKafkaBatch, KafkaCommitPosition, KafkaDecodeOptions, KafkaRecordBatch, KafkaSource } from '../sources/kafka/index.js';
import { validateRawBatch } from '../validate/index.js';
import type { ValidationState } from '../validate/index.js';
import { Counter } from 'prom-client';
import { checkScaleOutConfig, defaultInternalTopic, routedClipMessages } from './internal-records.js';
import {
  Closers,
  createInputSource,
  deadLetterTopicOf,
  inputDecodeOptions,
  inputPartitionCount,
  roundTimings,
  secondsSince,
  serveMetrics,
  streamRunOptions,
} from './lifecycle.js';
import type { StreamRoleHooks } from './lifecycle.js';

export interface RouterTotals {
  records: number;
  clipsIn: number;
  clipsRouted: number;
  internalRecords: number;
  deadLetters: number;
  checkpoints: number;
}

export interface RouterMetrics extends StreamMetrics {
  readonly routed: Counter<'partition'>;
}

export interface RouterContext extends RunnableContext, StreamRunnableContext {
  readonly config: StreamConfig;
  readonly centroids: Float32Array;
  readonly dim: number;
  readonly kernel: SimilarityKernel;
  readonly internalTopic: string;
  readonly internalPartitions: number;
  readonly validation: ValidationState;
  readonly decodeOptions: KafkaDecodeOptions;
  readonly source: KafkaSource;
  readonly sink: KafkaSink;
  readonly deadLetters: DeadLetterWriter;
  readonly metrics: RouterMetrics;
  readonly totals: RouterTotals;
  pendingRows: number;
  pendingSince: number | null;
  backlog: boolean;
  readonly lag: Map<number, bigint>;
  pendingDeadLetters: DeadLetter[];
  readonly pendingCommits: Map<number, KafkaCommitPosition>;
}

/** A set that remembers nothing: the router refuses no id as a repeat (see the module doc). */
class ForgetfulSet extends Set<string> {
  override add(): this {
    return this;
  }
}

// ---------------------------------------------------------------------------------------------
// Per-batch steps

export interface RouterBatch {
  readonly batch: KafkaRecordBatch;
  readonly decoded: DecodedKafkaBatch;
}

/** Note the batch (offsets to commit, lag) and decode its records. */
export function takeAndDecode(batch: KafkaRecordBatch, ctx: RouterContext): RouterBatch {
  ctx.pendingSince ??= Math.min(batch.receivedAt ?? Infinity, performance.now());
  ctx.pendingCommits.set(batch.partition, batch.commitPosition);
  ctx.totals.records += batch.records.length;
  const lag = BigInt(batch.highWatermark) - BigInt(batch.commitPosition.offset);
  ctx.lag.set(batch.partition, lag > 0n ? lag : 0n);
  ctx.metrics.consumerLag.set({ partition: String(batch.partition) }, Number(lag > 0n ? lag : 0n));
  const decoded = decodeKafkaRecords(batch.records, ctx.decodeOptions);
  ctx.pendingRows += Math.max(1, decoded.raw.ids.length);
  let waiting = 0n;
  for (const l of ctx.lag.values()) waiting += l;
  ctx.backlog = Number(waiting) * Math.max(1, decoded.raw.ids.length / Math.max(1, batch.records.length)) >= ctx.config.flushMaxRows;
  return { batch, decoded };
}

export interface RouterClips extends RouterBatch {
  readonly clips: ClipBatch;
}

/** Bad rows → pending dead letters (the reasons `stream` gives); the rest normalized to unit length. */
export function validateAndNormalize(input: RouterBatch, ctx: RouterContext, log: Logger): RouterClips | null {
  const { decoded } = input;
  const { ok, rejected } = validateRawBatch(decoded.raw, ctx.validation, { ownsValues: true, normalize: true });
  for (const r of rejected) ctx.pendingDeadLetters.push(deadLetterForRow(decoded.rows[r.row!]!, r.reason));
  if (rejected.length > 0) log.debug({ partition: input.batch.partition, refused: rejected.length, first: rejected[0]!.reason }, 'rows refused');
  if (ok.ids.length === 0) return null;
  return { ...input, clips: ok };
}

/** Assign to the centroids and write one record per cluster to the internal topic (acknowledged). */
export async function routeToClusters(input: RouterClips, ctx: RouterContext): Promise<null> {
  const { clips, decoded } = input;
  const a = await assignToCentroids(clips.embeddings, ctx.centroids, ctx.dim, ctx.kernel);
  const messages = routedClipMessages(clips, a, { partitions: ctx.internalPartitions });
  await ctx.sink.send(ctx.internalTopic, messages);
  const perPartition = new Map<number, number>();
  for (let i = 0; i < clips.ids.length; i++) {
    const p = a.centroid[i]! % ctx.internalPartitions;
    perPartition.set(p, (perPartition.get(p) ?? 0) + 1);
  }
  for (const [p, n] of perPartition) ctx.metrics.routed.inc({ partition: String(p) }, n);
  ctx.metrics.clipsIn.inc({ format: decoded.arrowRecords >= decoded.jsonRecords ? 'arrow' : 'json' }, clips.ids.length);
  ctx.totals.clipsIn += clips.ids.length;
  ctx.totals.clipsRouted += clips.ids.length;
  ctx.totals.internalRecords += messages.length;
  return null;
}

// Checkpoint steps: `writeDeadLetters`, then `commitOffsets` (steps.ts): every clip before the
// committed offsets is acknowledged in the internal topic (or the dead-letter topic).

// ---------------------------------------------------------------------------------------------
// Run

export interface RouterSummary extends RouterTotals {
  readonly role: 'router';
  readonly stopped: StreamStopReason;
  readonly seconds: number;
  readonly clipsPerSecond: number;
  readonly internalTopic: string;
  readonly internalPartitions: number;
  readonly timings: Record<string, number>;
}

/**
 * Creates the internal topic when missing: `partitions` (default min(k, 16)), infinite retention
 * (it is the workers' source of truth: a partition's state is rebuilt from it). An existing topic
 * keeps its partition count; a different explicit `--partitions` is refused, as the cluster →
 * partition mapping must never change under running workers.
 */
export async function ensureInternalTopic(admin: Awaited<ReturnType<ReturnType<typeof createKafkaClient>['connectAdmin']>>, config: StreamConfig, k: number, logger: Logger): Promise<{ topic: string; partitions: number }> {
  const topic = config.internalTopic ?? defaultInternalTopic(config.inputTopic);
  const wanted = config.partitions ?? Math.min(k, 16);
  const [ensured] = await ensureTopics(admin, [{ topic, numPartitions: wanted, config: { 'retention.ms': '-1', 'retention.bytes': '-1', 'cleanup.policy': 'delete' } }], logger);
  if (!ensured!.created && config.partitions !== undefined && ensured!.numPartitions !== config.partitions) {
    throw new InputError(`internal topic ${topic} has ${ensured!.numPartitions} partitions, --partitions says ${config.partitions}: the cluster → partition mapping cannot change under existing workers (use a new --internal-topic and new worker state)`, { context: { topic, field: 'partitions' } });
  }
  return { topic, partitions: ensured!.numPartitions };
}

export function createRouterMetrics(): RouterMetrics {
  const base = createStreamMetrics({ processMetrics: true });
  return { ...base, routed: new Counter({ name: 'routed_clips_total', help: 'Clips written to the internal by-cluster topic, by internal partition', labelNames: ['partition'], registers: [base.registry] }) };
}

export async function runRouter(config: StreamConfig, hooks: StreamRoleHooks): Promise<RouterSummary> {
  const { routerTopology } = await import('../../topologies/router.js');
  const logger = hooks.logger.child({ topology: 'router' });
  const started = performance.now();
  checkScaleOutConfig(config);
  const { centroids, k, dim } = await readCentroids(config.centroids);
  const deadLetterTopic = deadLetterTopicOf(config);
  const closers = new Closers(logger);
  try {
    const kernel = await createKernel(config.backend, { warn: (msg) => logger.warn(msg) });
    closers.add(() => kernel.close());
    const client = createKafkaClient({ ...(await kafkaConnectionOf(config)), logger });
    const admin = await client.connectAdmin();
    let internal: { topic: string; partitions: number };
    try {
      await inputPartitionCount(admin, config); // the input topic exists
      internal = await ensureInternalTopic(admin, config, k, logger);
      await ensureTopics(admin, [{ topic: deadLetterTopic, numPartitions: 1 }], logger);
    } finally {
      await admin.close();
    }
    logger.info({ config: redactStreamConfig(config), internalTopic: internal.topic, internalPartitions: internal.partitions, k, dim }, 'router starting');
    const sink = await createKafkaSink(client, { logger });
    closers.add(() => sink.close());
    const metrics = createRouterMetrics();
    const server = await serveMetrics(metrics, config, () => true, closers, logger);
    const source = await createInputSource(client, config, logger);
    closers.add(() => source.close());
    const ctx: RouterContext = {
      config,
      centroids,
      dim,
      kernel,
      internalTopic: internal.topic,
      internalPartitions: internal.partitions,
      validation: { dim, seenIds: new ForgetfulSet() },
      decodeOptions: inputDecodeOptions(config, dim),
      source,
      sink,
      deadLetters: createDeadLetterWriter(sink, deadLetterTopic),
      metrics,
      totals: { records: 0, clipsIn: 0, clipsRouted: 0, internalRecords: 0, deadLetters: 0, checkpoints: 0 },
      timings: {},
      pendingRows: 0,
      pendingSince: null,
      backlog: false,
      lag: new Map(),
      pendingDeadLetters: [],
      pendingCommits: new Map(),
    };
    hooks.onStarted?.({ metricsUrl: server?.url ?? null });
    const consumeStarted = performance.now();
    const stopped = await runStreamTopology(routerTopology, ctx, source.batches(), logger, streamRunOptions(config, hooks.signal, source, metrics));
    const consumeSeconds = (performance.now() - consumeStarted) / 1000;
    const summary: RouterSummary = {
      role: 'router',
      ...ctx.totals,
      stopped,
      seconds: secondsSince(started),
      clipsPerSecond: consumeSeconds > 0 ? Math.round(ctx.totals.clipsIn / consumeSeconds) : 0,
      internalTopic: internal.topic,
      internalPartitions: internal.partitions,
      timings: roundTimings(ctx.timings),
    };
    logger.info(summary, 'router stopped; internal records acknowledged and offsets committed');
    return summary;
  } finally {
    await closers.closeAll();
  }
}
