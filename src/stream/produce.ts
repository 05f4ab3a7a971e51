import { concatMap, lastValueFrom, reduce, Subject } from 'rxjs';
import type { Logger } from '../runtime/logging.js';
import type { ProduceConfig } from '../shared/stream-config.js';
import { kafkaConnectionOf } from '../shared/stream-config.js';
import type { RawClipBatch } from '../shared/types.js';
import { clipMessagesArrow, clipMessagesJson, createKafkaSink } from '../sinks/kafka/index.js';
import type { KafkaOutMessage } from '../sinks/kafka/index.js';
import { readInputSchema, readRawBatches, resolveInputFiles } from '../sources/index.js';
import { createKafkaClient, ensureTopics } from '../sources/kafka/index.js';

export interface ProduceSummary {
  readonly rows: number;
  readonly messages: number;
  /** JSONL lines that could not be decoded (nothing to send for them). */
  readonly skippedRows: number;
  readonly bytes: number;
  readonly seconds: number;
  readonly topic: string;
  readonly partitions: number;
  readonly format: ProduceConfig['format'];
}

/**
 * `semdedup produce`: Parquet/JSONL clips → Kafka records, JSON (one per clip, key = id) or
 * Arrow IPC (one stream per batch, split to stay under the message size limit, key = first id),
 * spread over the partitions by key hash (murmur2, as a Java producer). Rows are sent as they
 * are — validation is the stream's job, so bad rows reach its dead-letter topic.
 */
export async function produceClips(config: ProduceConfig, options: { logger: Logger }): Promise<ProduceSummary> {
  const log = options.logger.child({ step: 'produce' });
  const started = performance.now();
  const files = await resolveInputFiles(config.input);
  const fields = { idField: config.idField, embeddingField: config.embeddingField, metadataFields: config.metadataFields };
  const schema = await readInputSchema(files, fields);
  const client = createKafkaClient({ ...(await kafkaConnectionOf(config)), logger: options.logger });
  const admin = await client.connectAdmin();
  let partitions: number;
  try {
    const [ensured] = await ensureTopics(admin, [{ topic: config.topic, numPartitions: config.partitions }], log);
    partitions = ensured!.numPartitions;
  } finally {
    await admin.close();
  }
  const sink = await createKafkaSink(client, { logger: options.logger });
  let skippedRows = 0;
  try {
    const demand = new Subject<void>();
    const toMessages = (raw: RawClipBatch): KafkaOutMessage[] =>
      config.format === 'arrow'
        ? clipMessagesArrow(raw, { ...fields, metadataTypes: schema.metadataTypes, maxRows: config.batchRows })
        : clipMessagesJson(raw, fields);
    const totals = await lastValueFrom(
      readRawBatches(files, { ...fields, schema, batchRows: config.batchRows, demand, initialDemand: 2 }).pipe(
        concatMap(async (batch) => {
          const raw = dropUndecodable(batch);
          skippedRows += batch.ids.length - raw.ids.length;
          const messages = toMessages(raw);
          await sink.send(config.topic, messages);
          demand.next();
          let bytes = 0;
          for (const m of messages) bytes += m.value === null ? 0 : Buffer.byteLength(m.value);
          return { rows: raw.ids.length, messages: messages.length, bytes };
        }),
        reduce((a, b) => ({ rows: a.rows + b.rows, messages: a.messages + b.messages, bytes: a.bytes + b.bytes }), { rows: 0, messages: 0, bytes: 0 }),
      ),
      { defaultValue: { rows: 0, messages: 0, bytes: 0 } },
    );
    if (skippedRows > 0) log.warn({ skippedRows }, 'input lines that could not be decoded were not sent');
    const summary: ProduceSummary = { ...totals, skippedRows, seconds: Math.round((performance.now() - started) / 10) / 100, topic: config.topic, partitions, format: config.format };
    log.info(summary, 'clips produced');
    return summary;
  } finally {
    await sink.close();
  }
}

/** JSONL lines that did not parse have nothing to send; keep every other row as it is. */
function dropUndecodable(raw: RawClipBatch): RawClipBatch {
  const errors = raw.rowErrors;
  if (!errors || errors.every((e) => e === null)) return raw;
  const keep = errors.flatMap((e, i) => (e === null ? [i] : []));
  const offsets = new Int32Array(keep.length + 1);
  const parts: Float32Array[] = [];
  keep.forEach((row, j) => {
    const part = raw.values.subarray(raw.offsets[row]!, raw.offsets[row + 1]!);
    parts.push(part);
    offsets[j + 1] = offsets[j]! + part.length;
  });
  const values = new Float32Array(offsets[keep.length]!);
  parts.forEach((p, j) => values.set(p, offsets[j]!));
  const metadata = Object.fromEntries(Object.entries(raw.metadata).map(([k, v]) => [k, keep.map((row) => v[row] ?? null)]));
  const { rowErrors: _dropped, ...rest } = raw;
  return { ...rest, ids: keep.map((row) => raw.ids[row] ?? null), values, offsets, embeddingNull: Uint8Array.from(keep, (row) => raw.embeddingNull[row]!), metadata, };
}
