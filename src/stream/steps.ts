/**
 * The steps of the stream topology (`topologies/stream.ts`). Per batch: skip what the state
 * already holds → decode → validate and normalize → buffer. Per checkpoint: the cut (kernel flush,
 * what to make durable set aside), then in the background while the next batches come in: dead
 * letters → state → verdicts → offsets, each durable before the next, so a crash anywhere loses
 * nothing:
 * - before the state checkpoint: the records are read again (not committed, not in the state);
 * - between the state checkpoint and the commit: the state's positions make the re-read skip
 *   them, and `republishAfterCrash` re-sends every duplicate verdict (the topic is a keyed
 *   changelog, so a repeat is harmless).
 */
import type { Logger } from '../runtime/logging.js';
import { reasonClass } from '../runtime/metrics.js';
import type { StreamMetrics } from '../runtime/metrics.js';
import { verdictMessage } from '../sinks/kafka/index.js';
import type { DeadLetter, DeadLetterWriter } from '../sinks/kafka/index.js';
import { deadLetterForRow, decodeKafkaRecords } from '../sources/kafka/index.js';
import type { DecodedKafkaBatch, KafkaCommitPosition, KafkaRecord, KafkaRecordBatch, KafkaSource } from '../sources/kafka/index.js';
import type { ClipBatch } from '../shared/types.js';
import { validateRawBatch } from '../validate/index.js';
import type { StreamContext } from './context.js';

export interface FreshRecords {
  readonly batch: KafkaRecordBatch;
  readonly records: readonly KafkaRecord[];
}

/**
 * Drop records the state already holds (offset below its stored position for the partition):
 * after a crash between a state checkpoint and the Kafka commit they come again, and must not be
 * added twice. The batch's offsets are still committed at the next checkpoint.
 */
export function skipCheckpointed(batch: KafkaRecordBatch, ctx: StreamContext, log: Logger): FreshRecords | null {
  const { partition } = batch;
  // Age from when the batch reached us, not from when the loop got to it (it may have waited
  // through a checkpoint): the age limit bounds how late a verdict is.
  ctx.pendingSince ??= Math.min(batch.receivedAt ?? Infinity, performance.now());
  // Never commit behind what was already taken: after kafkajs restarts its consumer (broker
  // outage) it fetches again from the last commit (skipped below, by the state's position).
  const taken = ctx.engine.position(batch.topic, partition);
  const pending = ctx.pendingCommits.get(partition)?.offset;
  let commitAt = BigInt(batch.commitPosition.offset);
  for (const o of [taken, pending]) if (o != null && BigInt(o) > commitAt) commitAt = BigInt(o);
  ctx.pendingCommits.set(partition, { ...batch.commitPosition, offset: commitAt.toString() });
  ctx.totals.records += batch.records.length;
  const lag = BigInt(batch.highWatermark) - BigInt(batch.commitPosition.offset);
  ctx.lag.set(partition, lag > 0n ? lag : 0n);
  ctx.backlog = isBacklog(ctx, ctx.rowsPerRecord);
  ctx.metrics.consumerLag.set({ partition: String(partition) }, Number(ctx.lag.get(partition)));
  const stored = ctx.engine.position(batch.topic, partition);
  let records = batch.records;
  if (stored !== null) {
    const from = BigInt(stored);
    records = records.filter((r) => BigInt(r.offset) >= from);
    const skipped = batch.records.length - records.length;
    if (skipped > 0) {
      ctx.totals.skippedRecords += skipped;
      ctx.pendingRows += skipped;
      log.info({ partition, skipped, statePosition: stored }, 'skipped records already in the state');
    }
  }
  if (records.length === 0) return null;
  return { batch, records };
}

export interface DecodedRecords extends FreshRecords {
  readonly decoded: DecodedKafkaBatch;
}

export function decodeRecords(input: FreshRecords, ctx: StreamContext): DecodedRecords {
  return { ...input, decoded: decodeKafkaRecords(input.records, ctx.decodeOptions) };
}

export interface ValidatedClips extends DecodedRecords {
  readonly clips: ClipBatch;
}

/**
 * Split rows into clips and refusals; refusals wait as dead letters for the next checkpoint.
 * Valid rows are scaled to unit length in the same pass (bit for bit `normalizeEmbeddings`).
 */
export function validateRows(input: DecodedRecords, ctx: StreamContext, log: Logger): ValidatedClips {
  const { decoded } = input;
  // The decoded values are this batch's own (decodeKafkaRecords builds them): validate in place.
  const { ok, rejected } = validateRawBatch(decoded.raw, ctx.validation, { ownsValues: true, normalize: true });
  ctx.pendingRows += decoded.raw.ids.length;
  if (rejected.length > 0) {
    for (const r of rejected) {
      // `row` is the row's index in the batch (origin.firstRow = 0).
      ctx.pendingDeadLetters.push(deadLetterForRow(decoded.rows[r.row!]!, r.reason));
    }
    log.debug({ partition: input.batch.partition, refused: rejected.length, first: rejected[0]!.reason }, 'rows refused');
  }
  return { ...input, clips: ok };
}

/**
 * A backlog is at least a checkpoint's worth of rows (`--flush-max-rows`) waiting in the
 * partitions: then the runner stretches the age limit. A few records arriving while a batch is
 * processed are no backlog: at a steady rate there nearly always are some, and stretching then
 * would hold verdicts back for the stretched limit. Lag is in records, so it is scaled by the
 * rows per record seen last (an Arrow record holds many).
 */
function isBacklog(ctx: StreamContext, rowsPerRecord: number): boolean {
  let lag = 0;
  for (const l of ctx.lag.values()) lag += Number(l);
  return lag * rowsPerRecord >= ctx.config.flushMaxRows;
}

/** Assign to centroids and buffer per cluster (full cluster buffers go through the kernel). */
export async function bufferClips(input: ValidatedClips, ctx: StreamContext): Promise<null> {
  const { clips, batch, decoded } = input;
  if (input.records.length > 0) {
    ctx.rowsPerRecord = decoded.raw.ids.length / input.records.length;
    ctx.backlog = isBacklog(ctx, ctx.rowsPerRecord);
  }
  await ctx.engine.add(clips);
  ctx.engine.advance(batch.topic, batch.partition, batch.commitPosition.offset);
  ctx.totals.clipsIn += clips.ids.length;
  // Attribute clips to a format by the batch's records (a partition rarely mixes them).
  const format = decoded.arrowRecords >= decoded.jsonRecords ? 'arrow' : 'json';
  if (clips.ids.length > 0) ctx.metrics.clipsIn.inc({ format }, clips.ids.length);
  ctx.metrics.bufferedRows.set(ctx.pendingRows);
  return null;
}

// ---------------------------------------------------------------------------------------------
// Checkpoint steps

/** What writing dead letters needs; the stream, router and worker contexts have it. */
export interface DeadLetterStepContext {
  readonly deadLetters: DeadLetterWriter;
  readonly metrics: StreamMetrics;
  readonly totals: { deadLetters: number };
}

/** Writes `letters` (not empty) to the dead-letter topic, acknowledged; counts and logs them. */
export async function writeDeadLetterBatch(ctx: DeadLetterStepContext, letters: readonly DeadLetter[], log: Logger): Promise<void> {
  await ctx.deadLetters.write(letters);
  for (const l of letters) ctx.metrics.deadLetters.inc({ reason: reasonClass(l.reason) });
  ctx.totals.deadLetters += letters.length;
  log.info({ topic: ctx.deadLetters.topic, count: letters.length, first: letters[0]!.reason }, 'refused rows dead-lettered');
}

/** Refused rows to the dead-letter topic, acknowledged before the state moves past them. */
export async function writeDeadLetters(ctx: DeadLetterStepContext & { pendingDeadLetters: DeadLetter[] }, log: Logger): Promise<void> {
  const letters = ctx.pendingDeadLetters;
  if (letters.length === 0) return;
  await writeDeadLetterBatch(ctx, letters, log);
  ctx.pendingDeadLetters = [];
}

/**
 * Kernel flush of every buffer; what the checkpoint makes durable is set aside for the durable
 * steps (changed members and positions, verdicts, dead letters, offsets), which run while the
 * next batches are taken in.
 */
export async function cutCheckpoint(ctx: StreamContext, log: Logger): Promise<void> {
  const startedAt = performance.now();
  const rows = ctx.pendingRows;
  const waitedMs = ctx.pendingSince === null ? 0 : Math.round(startedAt - ctx.pendingSince);
  const pending = await ctx.engine.cutCheckpoint();
  ctx.cuts.push({ startedAt, pending, deadLetters: ctx.pendingDeadLetters, commits: [...ctx.pendingCommits.values()] });
  ctx.pendingDeadLetters = [];
  ctx.pendingCommits.clear();
  ctx.pendingRows = 0;
  ctx.pendingSince = null;
  ctx.metrics.bufferedRows.set(0);
  log.debug({ seconds: (performance.now() - startedAt) / 1000, rows, waitedMs, backlog: ctx.backlog, verdicts: pending.verdicts.length, stateSize: ctx.engine.size }, 'checkpoint cut');
}

/** The cut's refused rows to the dead-letter topic, acknowledged before the state moves past them. */
export async function writeCutDeadLetters(ctx: StreamContext, log: Logger): Promise<void> {
  const cut = ctx.cuts[0]!;
  if (cut.deadLetters.length === 0) return;
  await writeDeadLetterBatch(ctx, cut.deadLetters, log);
}

/** The cut's members and positions persisted in one transaction. */
export async function persistState(ctx: StreamContext, log: Logger): Promise<void> {
  const cut = ctx.cuts[0]!;
  await cut.pending.persist();
  const seconds = (performance.now() - cut.startedAt) / 1000;
  ctx.metrics.flushLatency.observe(seconds);
  log.debug({ seconds, verdicts: cut.pending.verdicts.length, stateSize: ctx.engine.size }, 'state checkpointed');
}

/** The cut's changed duplicate verdicts to the output topic; resolves when acknowledged. */
export async function publishVerdicts(ctx: StreamContext, log: Logger): Promise<void> {
  const verdicts = ctx.cuts[0]!.pending.verdicts;
  if (verdicts.length === 0) return;
  await ctx.sink.send(ctx.config.outputTopic, verdicts.map((v) => verdictMessage(v, ctx.config.idType)));
  ctx.metrics.verdictsOut.inc(verdicts.length);
  ctx.totals.verdictsOut += verdicts.length;
  log.debug({ topic: ctx.config.outputTopic, count: verdicts.length }, 'verdicts published');
}

/** The cut's consumed offsets: everything before them is durable in the state and the topics. */
export async function commitCutOffsets(ctx: StreamContext, log: Logger): Promise<void> {
  const { commits } = ctx.cuts[0]!;
  if (commits.length > 0) await ctx.source.commit(commits);
  ctx.cuts.shift();
  ctx.totals.checkpoints++;
  ctx.metrics.checkpoints.inc();
  log.debug({ positions: commits.map((p) => `${p.partition}@${p.offset}`) }, 'offsets committed');
}

/** What committing the noted offsets needs; the stream and router contexts have it. */
export interface CommitStepContext {
  readonly source: Pick<KafkaSource, 'commit'>;
  readonly pendingCommits: Map<number, KafkaCommitPosition>;
  readonly metrics: StreamMetrics;
  readonly totals: { checkpoints: number };
  pendingRows: number;
  pendingSince: number | null;
}

/** Commit the consumed offsets: everything before them is durable in the state and the topics. */
export async function commitOffsets(ctx: CommitStepContext, log: Logger): Promise<void> {
  const positions = [...ctx.pendingCommits.values()];
  if (positions.length > 0) await ctx.source.commit(positions);
  ctx.pendingCommits.clear();
  ctx.pendingRows = 0;
  ctx.pendingSince = null;
  ctx.totals.checkpoints++;
  ctx.metrics.checkpoints.inc();
  ctx.metrics.bufferedRows.set(0);
  log.debug({ positions: positions.map((p) => `${p.partition}@${p.offset}`) }, 'offsets committed');
}

// ---------------------------------------------------------------------------------------------
// Start

/**
 * After a crash between a state checkpoint and its Kafka commit, the verdicts of that checkpoint
 * may never have been published, and the records will be skipped (they are in the state). Seen
 * as a state position ahead of the group's committed offset: then re-publish every duplicate
 * verdict of the state before consuming.
 */
export async function republishAfterCrash(ctx: StreamContext, log: Logger): Promise<void> {
  const topic = ctx.config.inputTopic;
  const admin = await ctx.client.connectAdmin();
  let ahead: { partition: number; state: string; committed: string }[] = [];
  try {
    const committed = await admin.fetchCommittedOffsets(ctx.config.group, topic);
    for (const { partition } of await admin.fetchTopicOffsets(topic)) {
      const state = ctx.engine.position(topic, partition);
      const c = committed.get(partition) ?? '-1';
      if (state !== null && BigInt(state) > BigInt(c)) ahead.push({ partition, state, committed: c });
      else if (state !== null && BigInt(c) > BigInt(state)) {
        log.warn({ partition, state, committed: c }, 'the group committed past the state: records in between are not in this state (was the state folder replaced?)');
      }
    }
  } finally {
    await admin.close();
  }
  if (ahead.length === 0) return;
  const threshold = 1 - ctx.config.eps;
  log.warn({ partitions: ahead }, 'state is ahead of the committed offsets (crash after a checkpoint): re-publishing its duplicate verdicts');
  // Read from the store in chunks: the cluster states need not be resident.
  let republished = 0;
  for await (const verdicts of ctx.engine.storedVerdicts(threshold)) {
    await ctx.sink.send(ctx.config.outputTopic, verdicts.map((v) => verdictMessage(v, ctx.config.idType)));
    republished += verdicts.length;
  }
  log.info({ verdicts: republished }, 'duplicate verdicts re-published');
  ctx.totals.verdictsRepublished += republished;
  ctx.metrics.verdictsOut.inc(republished);
}
