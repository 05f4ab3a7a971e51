/**
 * Helpers for the stream integration tests: fixtures on disk, the batch run's duplicates as the
 * expected answer, producing clips, running the stream in-process, reading topics to their end.
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { afterAll, beforeAll } from 'vitest';
import { writeNpy } from '../../src/assign/npy.js';
import { runBatch } from '../../src/batch/run.js';
import { silentLogger } from '../../src/runtime/logging.js';
import { createProgress } from '../../src/runtime/progress.js';
import { runConfigSchema } from '../../src/shared/config.js';
import { produceConfigSchema, streamConfigSchema } from '../../src/shared/stream-config.js';
import { createKafkaClient, createKafkaSource } from '../../src/sources/kafka/index.js';
import type { KafkaAdmin, KafkaRecord } from '../../src/sources/kafka/index.js';
import { produceClips } from '../../src/stream/produce.js';
import { runStream } from '../../src/stream/run.js';
import type { StreamRunHooks, StreamSummary } from '../../src/stream/run.js';
import { prng, writeRowsParquet } from './fixtures.js';
import type { RefRow } from './reference.js';

export const brokersFromEnv = (injected: string): string[] => (injected || process.env.KAFKA_BROKERS || '').split(',').filter(Boolean);

/**
 * Call inside a describe block: an admin client on `brokers` connected before its tests, and
 * the topics pushed to `topics` deleted after them.
 */
export function adminForSuite(brokers: string[]): { readonly admin: KafkaAdmin; readonly topics: string[] } {
  let admin: KafkaAdmin | undefined;
  const topics: string[] = [];
  beforeAll(async () => {
    admin = await createKafkaClient({ brokers, clientId: 'semdedup-test' }).connectAdmin();
  });
  afterAll(async () => {
    await admin?.deleteTopics(topics).catch(() => {});
    await admin?.close();
  });
  return {
    get admin() {
      return admin!;
    },
    topics,
  };
}

export function uniqueName(what: string): string {
  return `semdedup-test-${what}-${randomUUID().slice(0, 8)}`;
}

export function shuffled<T>(items: readonly T[], seed: number): T[] {
  const rand = prng(seed);
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

export interface VerdictRow {
  id: string;
  maxId: string;
  score: number;
  centroid: number;
}

/** Write rows to `dir/name.parquet` and the centroids to `dir/centroids.npy`. */
export async function writeFixture(dir: string, name: string, rows: RefRow[], opts: { intIds?: boolean } = {}): Promise<string> {
  const path = join(dir, `${name}.parquet`);
  await writeRowsParquet(path, rows, opts);
  return path;
}

export function writeCentroids(dir: string, centers: number[][], name = 'centroids.npy'): string {
  const path = join(dir, name);
  writeNpy(path, Float32Array.from(centers.flat()), [centers.length, centers[0]!.length]);
  return path;
}

/** `semdedup run` on `input` with fixed centroids; its duplicates (score >= 1 - eps) by id. */
export async function batchDuplicates(input: string, output: string, centroids: string, eps: number, flags: Record<string, unknown> = {}): Promise<Map<string, VerdictRow>> {
  const config = runConfigSchema.parse({ input: [input], output, centroids, eps, backend: 'js', metadataFields: ['duration_s', 'video'], ...flags });
  await runBatch(config, { logger: silentLogger(), progress: createProgress(false) });
  const db = await DuckDBInstance.create(join(output, 'semdedup.duckdb'), { access_mode: 'READ_ONLY' });
  const conn = await db.connect();
  try {
    const reader = await conn.runAndReadAll(`SELECT id::VARCHAR AS id, max_id::VARCHAR AS max_id, cosine_sim_score, centroid FROM pairwise WHERE cosine_sim_score >= 1 - ${eps}::DOUBLE`);
    const out = new Map<string, VerdictRow>();
    for (const r of reader.getRowObjectsJS()) {
      out.set(r.id as string, { id: r.id as string, maxId: r.max_id as string, score: r.cosine_sim_score as number, centroid: r.centroid as number });
    }
    return out;
  } finally {
    conn.closeSync();
    db.closeSync();
  }
}

export async function produce(brokers: string[], input: string, topic: string, format: 'json' | 'arrow', extra: Record<string, unknown> = {}): Promise<void> {
  const config = produceConfigSchema.parse({ brokers, input, topic, format, partitions: 4, batchRows: 64, metadataFields: ['duration_s', 'video'], ...extra });
  await produceClips(config, { logger: silentLogger() });
}

export async function stream(brokers: string[], settings: Record<string, unknown>, hooks: Partial<StreamRunHooks> = {}): Promise<StreamSummary> {
  const config = streamConfigSchema.parse({ brokers, backend: 'js', metricsPort: 0, stopAtEnd: true, metadataFields: ['duration_s', 'video'], ...settings });
  return runStream(config, { logger: silentLogger(), ...hooks });
}

/** Every record of `topic` up to its current end (a fresh group each time). */
export async function readTopic(brokers: string[], topic: string): Promise<KafkaRecord[]> {
  const client = createKafkaClient({ brokers, clientId: 'semdedup-test-reader' });
  const source = await createKafkaSource(client, { topic, groupId: uniqueName('reader'), stopAtEnd: true });
  const records: KafkaRecord[] = [];
  try {
    for await (const batch of source.batches()) records.push(...batch.records);
  } finally {
    await source.close();
  }
  return records;
}

/** The verdict changelog's latest value per key. */
export async function latestVerdicts(brokers: string[], topic: string): Promise<Map<string, VerdictRow>> {
  const latest = new Map<string, VerdictRow>();
  const records = await readTopic(brokers, topic);
  // Per key all records are in one partition, in order; offsets order them.
  records.sort((a, b) => a.partition - b.partition || Number(BigInt(a.offset) - BigInt(b.offset)));
  for (const r of records) {
    const v = JSON.parse(r.value.toString('utf8')) as { id: string | number; max_id: string | number; cosine_sim_score: number; centroid: number };
    const rawId = /"id":\s*("?)([^,"]+)\1/.exec(r.value.toString('utf8'))![2]!; // exact digits of an int64 id
    const rawMax = /"max_id":\s*("?)([^,"]+)\1/.exec(r.value.toString('utf8'))![2]!;
    expectKey(r, typeof v.id === 'string' ? v.id : rawId);
    latest.set(r.key!.toString('utf8'), { id: typeof v.id === 'string' ? v.id : rawId, maxId: typeof v.max_id === 'string' ? v.max_id : rawMax, score: v.cosine_sim_score, centroid: v.centroid });
  }
  return latest;
}

function expectKey(r: KafkaRecord, id: string): void {
  if (r.key?.toString('utf8') !== id) throw new Error(`verdict record key ${r.key?.toString('utf8')} differs from its id ${id}`);
}

/** Differences between the stream's verdicts and the batch's duplicates (empty when equal). */
export function verdictDifferences(got: Map<string, VerdictRow>, expected: Map<string, VerdictRow>): string[] {
  const problems: string[] = [];
  for (const [id, e] of expected) {
    const g = got.get(id);
    if (!g) problems.push(`missing ${id}`);
    else if (g.maxId !== e.maxId || Math.abs(g.score - e.score) > 1e-5 || g.centroid !== e.centroid) {
      problems.push(`${id}: got ${g.maxId} ${g.score} c${g.centroid}, expected ${e.maxId} ${e.score} c${e.centroid}`);
    }
  }
  for (const id of got.keys()) if (!expected.has(id)) problems.push(`unexpected ${id}`);
  return problems;
}

export function headerOf(r: KafkaRecord, name: string): string | undefined {
  const v = r.headers[name];
  if (v === undefined) return undefined;
  return (Buffer.isBuffer(v) ? v : (v as Buffer[])[0]!).toString('utf8');
}
