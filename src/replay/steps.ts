import { randomUUID } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import * as arrow from 'apache-arrow';
import { join } from 'node:path';
import { readCentroids } from '../assign/centroids.js';
import { InputError } from '../shared/errors.js';
import { writeNpy } from '../assign/npy.js';
import { reportRejected, noValidRows } from '../batch/ingest.js';
import { writeDuplicates } from '../batch/identify.js';
import type { Logger } from '../runtime/logging.js';
import type { ClipBatch, IdType, MetadataValue } from '../shared/types.js';
import { createKafkaClient, createKafkaSource, ensureTopics } from '../sources/kafka/index.js';
import { decodeKafkaRecords } from '../sources/kafka/decode.js';
import { readInputSchema, resolveInputFiles } from '../sources/index.js';
import { createKafkaSink } from '../sinks/kafka/index.js';
import { verdictMessage } from '../sinks/kafka/verdicts.js';
import { writeKmeansResults, writePairwiseResults } from '../sinks/nemo-layout.js';
import { writeParquetFast } from '../sinks/plain-parquet.js';
import { writeParquetFile } from '../sinks/parquet/index.js';
import { DedupEngine } from '../state/dedup-engine.js';
import type { Verdict } from '../state/cluster-state.js';
import { sqlString } from '../store/index.js';
import { StateStore, stateIdentity, stateStoreMemoryMb } from '../store/state-store.js';
import { forEachValidBatch } from '../validate/read-validated.js';
import { normalizeEmbeddings, validateRawBatch, type RejectedClip } from '../validate/index.js';
import type { ReplayContext } from './context.js';

function inputFields(config: ReplayContext['config']) {
  return { idField: config.idField, embeddingField: config.embeddingField, metadataFields: config.metadataFields, storage: config.storageOptions };
}

/** Resolve inputs, load centroids, open (or continue) the streaming state. */
export async function openReplayState(ctx: ReplayContext, log: Logger): Promise<void> {
  const { config } = ctx;
  let schema: { dim?: number; idType: IdType; metadataTypes: Readonly<Record<string, unknown>> } = { idType: config.idType, metadataTypes: {} };
  if (!config.fromTopic) {
    ctx.files = await resolveInputFiles(config.input, config.storageOptions);
    schema = await readInputSchema(ctx.files, inputFields(config));
  }
  const { centroids, k, dim } = await readCentroids(config.centroids, schema.dim, config.storageOptions);
  ctx.centroids = centroids;
  ctx.clusters = k;
  ctx.dim = dim;
  ctx.idType = schema.idType;
  ctx.metadataTypes = { ...schema.metadataTypes };
  const rankSpec = { whichToKeep: config.whichToKeep, distanceMetric: config.distanceMetric, ranking: config.ranking, seed: config.seed };
  const probe = { probe: config.probe, probeMargin: config.probeMargin };
  if (config.state) {
    await mkdir(config.state, { recursive: true });
    ctx.stateStore = await StateStore.open(join(config.state, 'state.duckdb'), { memoryLimitMb: stateStoreMemoryMb(config.stateMemoryMb) });
    if (config.eps === undefined) throw new InputError('--state needs --eps: the state records which duplicates were published', { context: { field: 'eps' } });
    await ctx.stateStore.checkIdentity(stateIdentity(centroids, dim, rankSpec, schema.idType, config.eps, probe), config.state);
  } else {
    // A throwaway state in the work folder: cluster states beyond --state-memory-mb live there.
    ctx.stateStore = await StateStore.open(join(ctx.workDir, 'state.duckdb'), { memoryLimitMb: stateStoreMemoryMb(config.stateMemoryMb) });
  }
  ctx.engine = await DedupEngine.create(
    {
      centroids,
      dim,
      rankSpec,
      idType: schema.idType,
      kernel: ctx.kernel,
      eps: config.eps ?? 0,
      flushMaxRows: config.flushMaxRows,
      metadataFields: config.metadataFields,
      ...probe,
      stateMemoryMb: config.stateMemoryMb,
    },
    ctx.stateStore,
  );
  if (config.outputTopic) {
    const client = kafkaClient(ctx, log);
    const admin = await client.connectAdmin();
    try {
      // The same keyed, compacted changelog `stream` publishes to.
      await ensureTopics(admin, [{ topic: config.outputTopic, numPartitions: 4, config: { 'cleanup.policy': 'compact' } }], log);
    } finally {
      await admin.close();
    }
    ctx.sink = await createKafkaSink(client);
  }
  log.info({ files: ctx.files.length, clusters: k, dim, stateClips: ctx.engine.size, state: config.state ?? null, probe: config.probe, probeMargin: config.probeMargin, stateMemoryMb: config.stateMemoryMb }, 'replay state ready');
}

function kafkaClient(ctx: ReplayContext, log: Logger) {
  return createKafkaClient({ brokers: ctx.config.brokers ?? ['127.0.0.1:9092'], clientId: 'semdedup-replay', logger: log });
}

async function publishVerdicts(ctx: ReplayContext, verdicts: Verdict[]): Promise<void> {
  if (!ctx.sink || verdicts.length === 0) return;
  await ctx.sink.send(ctx.config.outputTopic!, verdicts.map((v) => verdictMessage(v, ctx.idType)));
  ctx.verdictsPublished += verdicts.length;
}

/** Feed the history through the streaming core (validate → normalize → assign → buffer → kernel). */
export async function replayClips(ctx: ReplayContext, log: Logger): Promise<void> {
  const rejected = ctx.config.fromTopic ? await replayTopic(ctx, log) : await replayFiles(ctx);
  await publishVerdicts(ctx, await ctx.engine!.checkpoint());
  ctx.rejectedRows = rejected.length;
  await reportRejected(rejected, ctx.stagingDir, log);
  if (ctx.engine!.size === 0) throw noValidRows(rejected);
  log.info({ clips: ctx.rows, inState: ctx.engine!.size, rejected: rejected.length, verdictsPublished: ctx.verdictsPublished }, 'replayed');
}

/** A checkpoint every few flushes keeps the state's memory of pending changes bounded. */
async function addAndMaybeCheckpoint(ctx: ReplayContext, batch: ClipBatch, counter: { sinceCheckpoint: number }): Promise<void> {
  await ctx.engine!.add(batch);
  ctx.rows += batch.ids.length;
  counter.sinceCheckpoint += batch.ids.length;
  if (counter.sinceCheckpoint >= ctx.config.flushMaxRows * 4) {
    await publishVerdicts(ctx, await ctx.engine!.checkpoint());
    counter.sinceCheckpoint = 0;
  }
}

async function replayFiles(ctx: ReplayContext): Promise<RejectedClip[]> {
  const { config } = ctx;
  const engine = ctx.engine!;
  const schema = await readInputSchema(ctx.files, inputFields(config));
  ctx.progress.start('replay', schema.rows ?? 0);
  const counter = { sinceCheckpoint: 0 };
  return forEachValidBatch(
    ctx.files,
    { ...inputFields(config), batchRows: config.batchRows, schema, reader: config.reader },
    // Ids already in the state are refused like any repeated id.
    { dim: ctx.dim, seenIds: engine.knownIds },
    async (batch) => {
      if (batch.origin.file) engine.advance(`file:${batch.origin.file}`, 0, String((batch.origin.firstRow ?? 0) + batch.ids.length));
      await addAndMaybeCheckpoint(ctx, batch, counter);
    },
    (raw) => ctx.progress.increment(raw.ids.length),
  ).finally(() => ctx.progress.stop());
}

/** `--from-topic`: the topic from its first offset to the end offsets seen at start (a throwaway group). */
async function replayTopic(ctx: ReplayContext, log: Logger): Promise<RejectedClip[]> {
  const { config } = ctx;
  const engine = ctx.engine!;
  const topic = config.fromTopic!;
  const source = await createKafkaSource(kafkaClient(ctx, log), { topic, groupId: `semdedup-replay-${randomUUID()}`, fromBeginning: true, stopAtEnd: true });
  const total = [...(source.endOffsets?.values() ?? [])].reduce((n, o) => n + Number(o), 0);
  ctx.progress.start('replay', total);
  const rejected: RejectedClip[] = [];
  const counter = { sinceCheckpoint: 0 };
  const validation = { dim: ctx.dim, seenIds: engine.knownIds };
  try {
    for await (const batch of source.batches()) {
      const decoded = decodeKafkaRecords(batch.records, { idField: config.idField, embeddingField: config.embeddingField, metadataFields: config.metadataFields, idType: ctx.idType, dim: ctx.dim });
      const { ok, rejected: refused } = validateRawBatch(decoded.raw, validation);
      for (const r of refused) {
        const record = decoded.rows[r.row!]!.record;
        rejected.push({ ...r, file: `kafka:${topic}[${record.partition}]@${record.offset}`, row: r.row });
      }
      inferMetadataTypes(ctx, ok.metadata);
      normalizeEmbeddings(ok.embeddings, ok.dim);
      engine.advance(`kafka:${topic}`, batch.partition, batch.commitPosition.offset);
      if (ok.ids.length > 0) await addAndMaybeCheckpoint(ctx, ok, counter);
      ctx.progress.increment(batch.records.length);
    }
  } finally {
    ctx.progress.stop();
    await source.close();
  }
  return rejected;
}

/** JSON records carry no schema: metadata columns take the Arrow type of their first value. */
function inferMetadataTypes(ctx: ReplayContext, metadata: Readonly<Record<string, MetadataValue[]>>): void {
  for (const [name, values] of Object.entries(metadata)) {
    if (name in ctx.metadataTypes) continue;
    const v = values.find((x) => x !== null);
    if (v === undefined) continue;
    ctx.metadataTypes[name] = typeof v === 'bigint' ? new arrow.Int64() : typeof v === 'number' ? new arrow.Float64() : typeof v === 'boolean' ? new arrow.Bool() : new arrow.Utf8();
  }
}

/** The NeMo layout from the final state: kmeans_results, pairwise_results, centroids, DuckDB tables. */
export async function writeReplayOutputs(ctx: ReplayContext, log: Logger): Promise<void> {
  const engine = ctx.engine!;
  const types = { idType: ctx.idType, metadataTypes: ctx.metadataTypes };
  const metaNames = Object.keys(ctx.metadataTypes);
  ctx.progress.start('write', engine.size);
  // One cluster at a time, from the store when it is not resident: memory stays within a cluster.
  await engine.forEachCluster(async (centroid, members, verdicts) => {
    const ids = members.map((m) => m.rank.id);
    const embeddings = new Float32Array(members.length * ctx.dim);
    members.forEach((m, i) => embeddings.set(m.embedding, i * ctx.dim));
    const metadata: Record<string, MetadataValue[]> = {};
    for (const name of metaNames) metadata[name] = members.map((m) => m.rank.metadata[name] ?? null);
    await writeKmeansResults(ctx.stagingDir, {
      centroid,
      ids,
      embeddings,
      dim: ctx.dim,
      metadata,
      l2DistToCent: Float32Array.from(members, (m) => m.rank.l2DistToCent),
      cosineDistToCent: Float32Array.from(members, (m) => m.rank.cosineDistToCent),
    }, types, writeParquetFast);
    await writePairwiseResults(ctx.stagingDir, centroid, ids, verdicts.map((v) => v.maxId), Float32Array.from(verdicts, (v) => v.score), types, writeParquetFast);
    ctx.progress.increment(members.length);
  });
  ctx.progress.stop();
  await writeNpy(join(ctx.stagingDir, 'kmeans_centroids.npy'), ctx.centroids!, [ctx.clusters, ctx.dim]);
  // DuckDB: the same tables as `run` (rank_pos = row number within the cluster's file).
  const db = ctx.store!;
  const centroidsParquet = join(ctx.workDir, 'centroids.parquet');
  await writeParquetFile(centroidsParquet, [
    { name: 'centroid', type: 'int32', values: Int32Array.from({ length: ctx.clusters }, (_, i) => i) },
    { name: 'embedding', type: 'fixed-list-float32', values: ctx.centroids!, listSize: ctx.dim },
  ]);
  await db.run(`CREATE OR REPLACE TABLE centroids AS SELECT * FROM read_parquet(${sqlString(centroidsParquet)})`);
  const km = join(ctx.stagingDir, 'kmeans_results', '*', '*.parquet');
  await db.run(
    `CREATE OR REPLACE TABLE clips AS SELECT * EXCLUDE (embedding, file_row_number), file_row_number::INTEGER AS rank_pos
       FROM read_parquet(${sqlString(km)}, file_row_number = true, hive_partitioning = false) ORDER BY centroid, rank_pos`,
  );
  const pw = join(ctx.stagingDir, 'pairwise_results', '*.parquet');
  await db.run(
    `CREATE OR REPLACE TABLE pairwise AS SELECT p.id, p.max_id, p.cosine_sim_score, c.centroid
       FROM read_parquet(${sqlString(pw)}) p JOIN clips c USING (id) ORDER BY c.centroid, c.rank_pos`,
  );
  if (ctx.config.eps !== undefined) {
    ctx.duplicates = await writeDuplicates(db, ctx.config.eps, join(ctx.stagingDir, 'duplicates'));
    log.info({ eps: ctx.config.eps, duplicates: ctx.duplicates }, 'duplicates identified');
  }
}
