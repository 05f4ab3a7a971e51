/**
 * The dedup worker of the scale-out topology (`semdedup stream --role worker`,
 * `topologies/worker.ts`, docs/SCALING.md): a member of a consumer group on the internal
 * by-cluster topic, with one state per owned partition (`worker-partitions.ts`).
 *
 * Assignment changes (kafkajs has no revoke callback; `createGroupKafkaSource` turns GROUP_JOIN
 * into an `assignment` item in the batch stream):
 * - lost partition: its buffered, uncheckpointed clips and unpublished verdicts are dropped and
 *   its state closed (it stays on disk at its last checkpoint: a valid prefix). Nothing is
 *   published or committed for it any more: the new owner reads from the group's offset.
 * - kept partition whose group offset moved under us (we were out of the group meanwhile): as
 *   lost, then gained.
 * - gained partition: local state at position S, group offset C. S = C: reused. S > C (crash
 *   between a checkpoint and its commit): reused; records below S are skipped. S < C or no
 *   state: rebuilt by reading [S or 0, C) with a throwaway reader, WITHOUT publishing (the
 *   previous owners published those verdicts before committing C; re-publishing older prefixes
 *   would briefly roll the changelog back). Then, in every case, every duplicate verdict of the
 *   state is re-published once ownership is confirmed: that repairs a stale verdict a zombie
 *   may have written, and verdicts a crashed owner computed but never published.
 *
 * Checkpoint: dead letters → state (per partition, durable) → publish (only partitions this
 * member still owns, lease fresh — else the verdicts are held and the partition is not
 * committed) → commit. So a zombie that lost a partition in a rebalance it has not noticed
 * does not publish lower, stale scores over its successor's.
 */
import { mkdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import { Counter, Gauge } from 'prom-client';
import { readCentroids } from '../assign/centroids.js';
import { createKernel, warmUpStreamKernel } from '../kernels/index.js';
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
import { createDeadLetterWriter, createKafkaSink, verdictMessage } from '../sinks/kafka/index.js';
import type { DeadLetterWriter, KafkaSink } from '../sinks/kafka/index.js';
import { createKafkaClient, decodeKafkaRecords } from '../sources/kafka/index.js';
import type { DecodedKafkaBatch, KafkaClient, KafkaDecodeOptions, KafkaRecord } from '../sources/kafka/index.js';
import { createGroupKafkaSource, readPartitionRanges } from '../sources/kafka/group-source.js';
import type { AssignmentChange, GroupKafkaSource, GroupSourceItem, OwnedBatch, PartitionRange } from '../sources/kafka/group-source.js';
import type { Verdict } from '../state/cluster-state.js';
import type { DedupEngineOptions } from '../state/dedup-engine.js';
import { stateIdentity, stateStoreMemoryMb } from '../store/state-store.js';
import type { StateIdentity } from '../store/state-store.js';
import { checkScaleOutConfig, defaultInternalTopic, routedDecodeOptions } from './internal-records.js';
import { Closers, deadLetterTopicOf, ensureOutputTopics, rankSpecOf, roundTimings, secondsSince, serveMetrics, streamRunOptions } from './lifecycle.js';
import type { StreamRoleHooks } from './lifecycle.js';
import { writeDeadLetterBatch } from './steps.js';
import { addToPartition, duplicateVerdicts, freshClips, openPartitionState } from './worker-partitions.js';
import type { PartitionState } from './worker-partitions.js';

export interface WorkerTotals {
  records: number;
  skippedRecords: number;
  clipsIn: number;
  /** Clips already in the partition's state with the same cluster: skipped. */
  replayedClips: number;
  /** Clips read again to rebuild a gained partition's state. */
  rebuiltClips: number;
  deadLetters: number;
  verdictsOut: number;
  verdictsRepublished: number;
  /** Batches of partitions no longer owned (or of an older generation): not processed. */
  staleBatches: number;
  /** Publishes held back because ownership could not be confirmed. */
  heldPublishes: number;
  partitionsGained: number;
  partitionsLost: number;
  checkpoints: number;
}

export interface WorkerMetrics extends StreamMetrics {
  readonly ownedPartitions: Gauge;
  readonly partitionClipsIn: Counter<'partition'>;
  readonly partitionVerdictsOut: Counter<'partition'>;
  readonly replayed: Counter;
  readonly rebuilt: Counter;
}

export function createWorkerMetrics(): WorkerMetrics {
  const base = createStreamMetrics({ processMetrics: true });
  const registers = [base.registry];
  return {
    ...base,
    ownedPartitions: new Gauge({ name: 'owned_partitions', help: 'Partitions of the internal topic this worker owns', registers }),
    partitionClipsIn: new Counter({ name: 'partition_clips_in_total', help: 'Clips added to the state, by internal partition', labelNames: ['partition'], registers }),
    partitionVerdictsOut: new Counter({ name: 'partition_verdicts_out_total', help: 'Duplicate verdicts published (re-publishes included), by internal partition', labelNames: ['partition'], registers }),
    replayed: new Counter({ name: 'replayed_clips_total', help: 'Clips skipped as replays (id already in the state, same cluster)', registers }),
    rebuilt: new Counter({ name: 'rebuilt_clips_total', help: 'Clips read again to rebuild a gained partition', registers }),
  };
}

export interface WorkerContext extends RunnableContext, StreamRunnableContext {
  readonly config: StreamConfig;
  readonly internalTopic: string;
  readonly stateDir: string;
  readonly identity: StateIdentity;
  readonly engineOptions: DedupEngineOptions;
  /** DuckDB memory limit of each partition's state file. */
  readonly storeMemoryMb: number;
  readonly dim: number;
  readonly decodeOptions: KafkaDecodeOptions;
  readonly client: KafkaClient;
  readonly source: GroupKafkaSource;
  readonly sink: KafkaSink;
  readonly deadLetters: DeadLetterWriter;
  readonly metrics: WorkerMetrics;
  readonly totals: WorkerTotals;
  /** Owned partitions' states. */
  readonly partitions: Map<number, PartitionState>;
  pendingRows: number;
  pendingSince: number | null;
  backlog: boolean;
  readonly lag: Map<number, bigint>;
  /** Verdicts of the last state checkpoint, per partition, for the publish step. */
  checkpointVerdicts: Map<number, Verdict[]>;
  firstBatchAt: number | null;
  lastCommitAt: number | null;
  /** Process CPU time (all threads) at the first batch and at the last commit, for benchmarks. */
  cpuAtFirstBatch: NodeJS.CpuUsage | null;
  cpuAtLastCommit: NodeJS.CpuUsage | null;
}

/** The fields of a WorkerContext that change as it runs, as they start: nothing owned, counted or pending. */
export type WorkerRunState = Pick<WorkerContext, 'totals' | 'partitions' | 'timings' | 'pendingRows' | 'pendingSince' | 'backlog' | 'lag' | 'checkpointVerdicts' | 'firstBatchAt' | 'lastCommitAt' | 'cpuAtFirstBatch' | 'cpuAtLastCommit'>;

export function initialWorkerRunState(partitions: Map<number, PartitionState> = new Map()): WorkerRunState {
  return {
    totals: { records: 0, skippedRecords: 0, clipsIn: 0, replayedClips: 0, rebuiltClips: 0, deadLetters: 0, verdictsOut: 0, verdictsRepublished: 0, staleBatches: 0, heldPublishes: 0, partitionsGained: 0, partitionsLost: 0, checkpoints: 0 },
    partitions,
    timings: {},
    pendingRows: 0,
    pendingSince: null,
    backlog: false,
    lag: new Map(),
    checkpointVerdicts: new Map(),
    firstBatchAt: null,
    lastCommitAt: null,
    cpuAtFirstBatch: null,
    cpuAtLastCommit: null,
  };
}

// ---------------------------------------------------------------------------------------------
// Per-item steps

/** Assignment items change the owned partitions; batches of partitions not owned now are dropped. */
export async function trackAssignment(item: GroupSourceItem, ctx: WorkerContext, log: Logger): Promise<OwnedBatch | null> {
  if (item.kind === 'assignment') {
    await applyAssignment(ctx, item, log);
    return null;
  }
  if (item.generation !== ctx.source.generation || !ctx.partitions.has(item.partition)) {
    ctx.totals.staleBatches++;
    log.debug({ partition: item.partition, generation: item.generation }, 'batch of a partition not owned now: dropped');
    return null;
  }
  return item;
}

export interface WorkerBatch {
  readonly batch: OwnedBatch;
  readonly state: PartitionState;
  readonly records: readonly KafkaRecord[];
}

/** Records below the partition state's position are in it already (read again after a rebalance or crash). */
export function skipCheckpointed(batch: OwnedBatch, ctx: WorkerContext): WorkerBatch | null {
  const state = ctx.partitions.get(batch.partition)!;
  if (ctx.firstBatchAt === null) {
    ctx.firstBatchAt = Date.now();
    ctx.cpuAtFirstBatch = process.cpuUsage();
  }
  ctx.pendingSince ??= Math.min(batch.receivedAt ?? Infinity, performance.now());
  state.pendingCommit = batch.commitPosition;
  state.dirty = true;
  ctx.totals.records += batch.records.length;
  const lag = BigInt(batch.highWatermark) - BigInt(batch.commitPosition.offset);
  ctx.lag.set(batch.partition, lag > 0n ? lag : 0n);
  ctx.metrics.consumerLag.set({ partition: String(batch.partition) }, Number(lag > 0n ? lag : 0n));
  let waiting = 0n;
  for (const l of ctx.lag.values()) waiting += l;
  // Internal records hold one cluster's clips of a router batch: ~flushMaxRows / 8 rows is a fair guess.
  ctx.backlog = Number(waiting) * 64 >= ctx.config.flushMaxRows;
  const stored = state.engine.position(batch.topic, batch.partition);
  const records = stored === null ? batch.records : batch.records.filter((r) => BigInt(r.offset) >= BigInt(stored));
  const skipped = batch.records.length - records.length;
  if (skipped > 0) {
    ctx.totals.skippedRecords += skipped;
    ctx.pendingRows += skipped;
  }
  return records.length === 0 ? null : { batch, state, records };
}

export interface DecodedWorkerBatch extends WorkerBatch {
  readonly decoded: DecodedKafkaBatch;
}

export function decodeRouted(input: WorkerBatch, ctx: WorkerContext): DecodedWorkerBatch {
  return { ...input, decoded: decodeKafkaRecords(input.records, ctx.decodeOptions) };
}

/** Replays skipped, clashes dead-lettered, the rest added to the partition's engine. */
export async function addFreshClips(input: DecodedWorkerBatch, ctx: WorkerContext, log: Logger): Promise<null> {
  const { state, batch, decoded } = input;
  const fresh = freshClips(decoded, state, ctx.config.metadataFields, ctx.dim, log);
  state.pendingDeadLetters.push(...fresh.refused);
  await addToPartition(state, fresh);
  state.engine.advance(batch.topic, batch.partition, batch.commitPosition.offset);
  const n = fresh.clips.ids.length;
  ctx.pendingRows += decoded.raw.ids.length;
  ctx.totals.clipsIn += n;
  ctx.totals.replayedClips += fresh.replayed;
  if (n > 0) {
    ctx.metrics.clipsIn.inc({ format: 'arrow' }, n);
    ctx.metrics.partitionClipsIn.inc({ partition: String(batch.partition) }, n);
  }
  if (fresh.replayed > 0) ctx.metrics.replayed.inc(fresh.replayed);
  ctx.metrics.bufferedRows.set(ctx.pendingRows);
  return null;
}

// ---------------------------------------------------------------------------------------------
// Checkpoint steps

export async function writeWorkerDeadLetters(ctx: WorkerContext, log: Logger): Promise<void> {
  const letters = [...ctx.partitions.values()].flatMap((s) => s.pendingDeadLetters);
  if (letters.length === 0) return;
  await writeDeadLetterBatch(ctx, letters, log);
  for (const s of ctx.partitions.values()) s.pendingDeadLetters = [];
}

/** Each owned partition's engine: kernel flush, members and position durable. */
export async function checkpointPartitions(ctx: WorkerContext): Promise<void> {
  const started = performance.now();
  for (const [p, state] of ctx.partitions) {
    if (!state.dirty) continue;
    state.dirty = false;
    const verdicts = await state.engine.checkpoint();
    for (const v of verdicts) state.heldVerdicts.set(v.id, v);
    ctx.checkpointVerdicts.set(p, verdicts);
  }
  ctx.metrics.flushLatency.observe((performance.now() - started) / 1000);
}

/**
 * Verdicts of the partitions this member still owns (lease fresh) go out; a partition gained
 * since the last publish re-publishes its whole state's duplicates first. Others are held.
 */
export async function publishOwnedVerdicts(ctx: WorkerContext, log: Logger): Promise<void> {
  ctx.checkpointVerdicts.clear();
  const messages: ReturnType<typeof verdictMessage>[] = [];
  const sent: { state: PartitionState; count: number; republished: number }[] = [];
  const generation = ctx.source.generation;
  for (const [p, state] of ctx.partitions) {
    if (state.heldVerdicts.size === 0 && !state.needsRepublish) continue;
    if (!ctx.source.owns(p, generation)) {
      ctx.totals.heldPublishes++;
      log.debug({ partition: p, held: state.heldVerdicts.size }, 'ownership not confirmed (rebalance or stale lease): verdicts held, partition not committed');
      continue;
    }
    const verdicts = state.needsRepublish ? await duplicateVerdicts(state, ctx.config.eps) : [...state.heldVerdicts.values()];
    for (const v of verdicts) messages.push(verdictMessage(v, ctx.config.idType));
    sent.push({ state, count: verdicts.length, republished: state.needsRepublish ? verdicts.length : 0 });
  }
  if (messages.length > 0) await ctx.sink.send(ctx.config.outputTopic, messages);
  for (const { state, count, republished } of sent) {
    state.heldVerdicts.clear();
    state.needsRepublish = false;
    ctx.metrics.partitionVerdictsOut.inc({ partition: String(state.partition) }, count);
    ctx.totals.verdictsOut += count - republished;
    ctx.totals.verdictsRepublished += republished;
    if (republished > 0) log.info({ partition: state.partition, verdicts: republished }, 'gained partition: its duplicate verdicts re-published');
  }
  if (messages.length > 0) ctx.metrics.verdictsOut.inc(messages.length);
}

/** Commit the partitions whose verdicts are all out. */
export async function commitOwnedOffsets(ctx: WorkerContext, log: Logger): Promise<void> {
  // Only partitions still owned: the broker checks the generation of a commit, not who owns what.
  const generation = ctx.source.generation;
  const ready = [...ctx.partitions.values()].filter((s) => s.pendingCommit && s.heldVerdicts.size === 0 && !s.needsRepublish && ctx.source.owns(s.partition, generation));
  const held = [...ctx.partitions.values()].some((s) => s.heldVerdicts.size > 0 || s.needsRepublish || (s.pendingCommit && !ready.includes(s)));
  if (ready.length > 0) {
    const positions = ready.map((s) => s.pendingCommit!);
    const ok = await ctx.source.commit(positions);
    if (ok) {
      for (const s of ready) {
        s.lastCommitted = s.pendingCommit!.offset;
        s.pendingCommit = null;
      }
      ctx.lastCommitAt = Date.now();
      ctx.cpuAtLastCommit = process.cpuUsage();
    }
    log.debug({ positions: positions.map((p) => `${p.partition}@${p.offset}`), ok }, ok ? 'offsets committed' : 'offsets not committed (rebalancing)');
  }
  ctx.pendingRows = 0;
  // Held verdicts: come back soon (the runner checkpoints when something waits).
  ctx.pendingSince = held || ready.some((s) => s.pendingCommit) ? performance.now() : null;
  ctx.totals.checkpoints++;
  ctx.metrics.checkpoints.inc();
  ctx.metrics.bufferedRows.set(0);
}

// ---------------------------------------------------------------------------------------------
// Assignment

async function applyAssignment(ctx: WorkerContext, change: AssignmentChange, log: Logger): Promise<void> {
  const now = new Set(change.partitions);
  const admin = await ctx.client.connectAdmin();
  let committed: Map<number, string>;
  let offsets: { partition: number; low: string; high: string }[];
  try {
    committed = await admin.fetchCommittedOffsets(ctx.config.group, ctx.internalTopic);
    offsets = await admin.fetchTopicOffsets(ctx.internalTopic);
  } finally {
    await admin.close();
  }
  const lost = [...ctx.partitions.keys()].filter((p) => !now.has(p));
  // Kept in our view, yet another member committed it in between: we were out of the group (a
  // stall past the session timeout) and got it back. Our in-memory state may lack what the other
  // member consumed: reload it like a gained partition.
  const moved = [...ctx.partitions.keys()].filter((p) => now.has(p) && (committed.get(p) ?? '-1') !== ctx.partitions.get(p)!.lastCommitted);
  for (const p of [...lost, ...moved]) {
    const state = ctx.partitions.get(p)!;
    // Not checkpointed, published nor committed: the new owner reads those records again.
    state.store.close();
    ctx.partitions.delete(p);
    ctx.lag.delete(p);
    ctx.totals.partitionsLost++;
  }
  const gained = change.partitions.filter((p) => !ctx.partitions.has(p));
  if (lost.length > 0 || gained.length > 0) log.info({ generation: change.generation, lost, moved, gained, owned: change.partitions }, 'assignment changed');
  if (gained.length > 0) {
    const ranges: PartitionRange[] = [];
    for (const p of gained) {
      const state = await openPartitionState(ctx.stateDir, ctx.internalTopic, p, ctx.identity, ctx.engineOptions, ctx.storeMemoryMb);
      const committedText = committed.get(p) ?? '-1';
      const c = BigInt(committedText);
      const storedText = state.engine.position(ctx.internalTopic, p);
      const s = storedText === null ? -1n : BigInt(storedText);
      state.lastCommitted = committedText;
      if (c >= 0n && s < c) {
        const from = s < 0n ? 0n : s;
        const low = BigInt(offsets.find((o) => o.partition === p)?.low ?? '0');
        if (low > from) {
          state.store.close();
          throw new InputError(`internal topic ${ctx.internalTopic} partition ${p} starts at offset ${low}, but rebuilding its state needs offset ${from}: records were deleted (the internal topic needs retention.ms=-1, see docs/SCALING.md)`, { context: { topic: ctx.internalTopic, partition: p } });
        }
        ranges.push({ partition: p, from: from.toString(), to: c.toString() });
      }
      log.info({ partition: p, statePosition: storedText, committed: committedText, stateSize: state.engine.size, action: c >= 0n && s < c ? 'rebuild' : s > c && c >= 0n ? 'reuse (state ahead: skip to its position)' : 'reuse' }, 'partition gained');
      state.needsRepublish = true;
      ctx.partitions.set(p, state);
      ctx.totals.partitionsGained++;
    }
    if (ranges.length > 0) await rebuildPartitions(ctx, ranges, log);
    // A checkpoint soon publishes the re-publish of the gained partitions.
    ctx.pendingSince ??= performance.now();
  }
  ctx.metrics.ownedPartitions.set(ctx.partitions.size);
}

/** Read [from, to) of each range into its partition's state, publishing nothing (see the module doc). */
async function rebuildPartitions(ctx: WorkerContext, ranges: readonly PartitionRange[], log: Logger): Promise<void> {
  const started = performance.now();
  let rows = 0;
  let sinceCheckpoint = 0;
  const checkpointEvery = 8 * ctx.config.flushMaxRows;
  log.info({ ranges }, 'rebuilding gained partitions from the internal topic');
  for await (const batch of readPartitionRanges(ctx.client, ctx.internalTopic, ranges, { logger: log })) {
    const state = ctx.partitions.get(batch.partition)!;
    const stored = state.engine.position(batch.topic, batch.partition);
    const records = stored === null ? batch.records : batch.records.filter((r) => BigInt(r.offset) >= BigInt(stored));
    if (records.length > 0) {
      const decoded = decodeKafkaRecords(records, ctx.decodeOptions);
      const fresh = freshClips(decoded, state, ctx.config.metadataFields, ctx.dim, log);
      // Refusals were dead-lettered by whoever consumed these records first.
      await addToPartition(state, fresh);
      rows += fresh.clips.ids.length;
      sinceCheckpoint += fresh.clips.ids.length;
    }
    state.engine.advance(batch.topic, batch.partition, batch.commitPosition.offset);
    if (sinceCheckpoint >= checkpointEvery) {
      await state.engine.checkpoint(); // verdicts dropped: published by the previous owners
      sinceCheckpoint = 0;
    }
  }
  for (const r of ranges) await ctx.partitions.get(r.partition)!.engine.checkpoint();
  ctx.totals.rebuiltClips += rows;
  ctx.metrics.rebuilt.inc(rows);
  log.info({ ranges, clips: rows, seconds: Math.round(performance.now() - started) / 1000 }, 'gained partitions rebuilt');
}

// ---------------------------------------------------------------------------------------------
// Run

export interface WorkerSummary extends WorkerTotals {
  readonly role: 'worker';
  readonly stopped: StreamStopReason;
  readonly seconds: number;
  /** clipsIn / (last commit − first batch). */
  readonly clipsPerSecond: number;
  /** Epoch ms of the first batch taken and of the last successful commit (null: none). */
  readonly firstBatchAt: number | null;
  readonly lastCommitAt: number | null;
  /** CPU seconds (user + system, all threads) between the first batch and the last commit. */
  readonly drainCpuSeconds: number | null;
  readonly ownedPartitions: number[];
  readonly stateSize: number;
  readonly timings: Record<string, number>;
}

export async function runWorker(config: StreamConfig, hooks: StreamRoleHooks): Promise<WorkerSummary> {
  const { workerTopology } = await import('../../topologies/worker.js');
  const logger = hooks.logger.child({ topology: 'worker' });
  const started = performance.now();
  checkScaleOutConfig(config);
  const { centroids, dim } = await readCentroids(config.centroids);
  const rankSpec = rankSpecOf(config);
  const internalTopic = config.internalTopic ?? defaultInternalTopic(config.inputTopic);
  const stateDir = resolve(config.state);
  await mkdir(stateDir, { recursive: true });
  const closers = new Closers(logger);
  const partitions = new Map<number, PartitionState>();
  closers.add(() => {
    for (const s of partitions.values()) s.store.close();
  });
  const stopAtEnd = new AbortController();
  let endTimer: NodeJS.Timeout | undefined;
  try {
    const kernel: SimilarityKernel = await createKernel(config.backend, { warn: (msg) => logger.warn(msg) });
    closers.add(() => kernel.close());
    await warmUpStreamKernel(kernel, centroids, dim);
    const client = createKafkaClient({ ...(await kafkaConnectionOf(config)), logger });
    const admin = await client.connectAdmin();
    let internalPartitions: number;
    let endOffsets: Map<number, bigint>;
    try {
      const counts = await admin.partitionCounts([internalTopic]);
      if (!counts.has(internalTopic)) {
        throw new InputError(`internal topic ${internalTopic} does not exist: start a router first (it creates it with --partitions), or name it with --internal-topic`, { context: { topic: internalTopic, field: 'internal-topic' } });
      }
      internalPartitions = counts.get(internalTopic)!;
      endOffsets = new Map((await admin.fetchTopicOffsets(internalTopic)).map((o) => [o.partition, BigInt(o.high)]));
      await ensureOutputTopics(admin, config, internalPartitions, logger);
    } finally {
      await admin.close();
    }
    logger.info({ config: redactStreamConfig(config), internalTopic, internalPartitions, state: stateDir, backend: kernel.name }, 'worker starting');
    const sink = await createKafkaSink(client, { logger });
    closers.add(() => sink.close());
    const metrics = createWorkerMetrics();
    let healthy = true;
    const server = await serveMetrics(metrics, config, () => healthy, closers, logger);
    const source = await createGroupKafkaSource(client, { topic: internalTopic, groupId: config.group, sessionTimeoutMs: config.sessionTimeoutMs, logger });
    closers.add(() => source.close());
    const ctx: WorkerContext = {
      config,
      internalTopic,
      stateDir,
      identity: stateIdentity(centroids, dim, rankSpec, config.idType, config.eps, { probe: config.probe, probeMargin: config.probeMargin }),
      // --state-memory-mb bounds the worker's states if it owned every partition: each gets 1/N.
      engineOptions: { centroids, dim, rankSpec, idType: config.idType, kernel, eps: config.eps, flushMaxRows: config.flushMaxRows, metadataFields: config.metadataFields, stateMemoryMb: config.stateMemoryMb / internalPartitions },
      storeMemoryMb: stateStoreMemoryMb(config.stateMemoryMb / internalPartitions),
      dim,
      decodeOptions: routedDecodeOptions({ metadataFields: config.metadataFields, idType: config.idType, dim }),
      client,
      source,
      sink,
      deadLetters: createDeadLetterWriter(sink, deadLetterTopicOf(config)),
      metrics,
      ...initialWorkerRunState(partitions),
    };
    if (config.stopAtEnd) {
      // Done when the GROUP (all workers) has committed every partition up to the end offsets seen at start.
      const poll = async (): Promise<void> => {
        const a = await client.connectAdmin();
        try {
          const committed = await a.fetchCommittedOffsets(config.group, internalTopic);
          const done = [...endOffsets].every(([p, end]) => end === 0n || BigInt(committed.get(p) ?? '-1') >= end);
          if (done && [...partitions.values()].every((s) => !s.pendingCommit && s.heldVerdicts.size === 0 && !s.needsRepublish)) stopAtEnd.abort();
        } finally {
          await a.close();
        }
      };
      const tick = (): void => {
        endTimer = setTimeout(() => void poll().catch((err: unknown) => logger.debug({ err }, 'end check failed')).finally(() => !stopAtEnd.signal.aborted && tick()), 250);
      };
      tick();
    }
    hooks.onStarted?.({ metricsUrl: server?.url ?? null });
    const signal = hooks.signal ? AbortSignal.any([hooks.signal, stopAtEnd.signal]) : stopAtEnd.signal;
    let stopped: StreamStopReason;
    try {
      stopped = await runStreamTopology(workerTopology, ctx, source.batches(), logger, streamRunOptions(config, signal, source, metrics));
    } catch (err) {
      healthy = false;
      throw err;
    }
    if (stopAtEnd.signal.aborted && !hooks.signal?.aborted) stopped = 'end';
    const consumeSeconds = ctx.firstBatchAt !== null && ctx.lastCommitAt !== null ? (ctx.lastCommitAt - ctx.firstBatchAt) / 1000 : 0;
    const summary: WorkerSummary = {
      role: 'worker',
      ...ctx.totals,
      stopped,
      seconds: secondsSince(started),
      clipsPerSecond: consumeSeconds > 0 ? Math.round(ctx.totals.clipsIn / consumeSeconds) : 0,
      firstBatchAt: ctx.firstBatchAt,
      lastCommitAt: ctx.lastCommitAt,
      drainCpuSeconds: ctx.cpuAtFirstBatch && ctx.cpuAtLastCommit ? Math.round((ctx.cpuAtLastCommit.user + ctx.cpuAtLastCommit.system - ctx.cpuAtFirstBatch.user - ctx.cpuAtFirstBatch.system) / 1e4) / 100 : null,
      ownedPartitions: [...partitions.keys()].sort((a, b) => a - b),
      stateSize: [...partitions.values()].reduce((n, s) => n + s.engine.size, 0),
      timings: roundTimings(ctx.timings),
    };
    logger.info(summary, 'worker stopped; owned partitions checkpointed, published and committed');
    return summary;
  } finally {
    clearTimeout(endTimer);
    await closers.closeAll();
  }
}


