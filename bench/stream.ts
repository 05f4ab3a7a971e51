/**
 * Stream throughput: clips/s drained by `semdedup stream --stop-at-end` from a topic already
 * filled by `semdedup produce`, Arrow and JSON records, against the broker of KAFKA_BROKERS
 * (default 127.0.0.1:9092; `npm run kafka:up`).
 *
 *   npx tsx bench/stream.ts [--rows 20000] [--dim 768] [--clusters 50] [--backend cpu]
 *                           [--formats arrow,json] [--flush-max-rows 4096]
 *
 * Data: the generated sample (src/sources/sample.ts) with its cluster directions as centroids.
 * "drain clips/s" counts from the consumer's start to the last commit (state load, topic
 * setup and shutdown excluded); "wall" is the whole run. Writes bench/results/stream.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeNpy } from '../src/assign/npy.js';
import { createLogger } from '../src/runtime/logging.js';
import { produceConfigSchema, streamConfigSchema } from '../src/shared/stream-config.js';
import { writeParquetFile } from '../src/sinks/parquet/index.js';
import { generateSampleClips, sampleDirections } from '../src/sources/sample.js';
import { createKafkaClient } from '../src/sources/kafka/index.js';
import { produceClips } from '../src/stream/produce.js';
import { runStream } from '../src/stream/run.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i]!.replace(/^--/, ''), process.argv[i + 1] ?? '');
const rows = Number(args.get('rows') ?? 20000);
const dim = Number(args.get('dim') ?? 768);
const clusters = Number(args.get('clusters') ?? 50);
const backend = args.get('backend') ?? 'cpu';
const formats = (args.get('formats') ?? 'arrow,json').split(',') as ('arrow' | 'json')[];
const flushMaxRows = Number(args.get('flush-max-rows') ?? 4096);
const brokers = (process.env.KAFKA_BROKERS ?? '127.0.0.1:9092').split(',');
const logger = createLogger({ level: process.env.SEMDEDUP_LOG_LEVEL ?? 'warn' });

const dir = path.join(ROOT, '.data', `bench-stream-${rows}x${dim}`);
mkdirSync(dir, { recursive: true });
const clips = generateSampleClips({ rows, dim, clusters, seed: 1, duplicateFraction: 0.05 });
const input = path.join(dir, 'clips.parquet');
await writeParquetFile(input, [
  { name: 'id', type: 'utf8', values: clips.ids },
  { name: 'embedding', type: 'fixed-list-float32', values: clips.embeddings, listSize: dim },
], { rowGroupRows: 4096 });
const centroids = path.join(dir, 'centroids.npy');
writeNpy(centroids, sampleDirections({ dim, clusters, seed: 1 }), [clusters, dim]);

const admin = await createKafkaClient({ brokers }).connectAdmin();
const results: Record<string, unknown>[] = [];
const run = `${Date.now().toString(36)}`;
try {
  for (const format of formats) {
    const topic = `semdedup-bench-${format}-${run}`;
    const produced = await produceClips(produceConfigSchema.parse({ brokers, input, topic, format, partitions: 4, batchRows: 1000 }), { logger });
    const state = path.join(dir, `state-${format}-${run}`);
    const rss0 = process.memoryUsage().rss;
    const s = await runStream(
      streamConfigSchema.parse({ brokers, inputTopic: topic, outputTopic: `${topic}.dups`, group: `g-${topic}`, centroids, state, eps: 0.01, stopAtEnd: true, backend, metricsPort: 0, flushMaxRows }),
      { logger },
    );
    const result = {
      format,
      rows,
      dim,
      clusters,
      backend,
      produced_mb: Math.round(produced.bytes / 1e5) / 10,
      produce_s: produced.seconds,
      records: produced.messages,
      drain_clips_per_s: s.clipsPerSecond,
      wall_s: s.seconds,
      duplicates_published: s.verdictsOut,
      checkpoints: s.checkpoints,
      step_seconds: s.timings,
      rss_growth_mb: Math.round((process.memoryUsage().rss - rss0) / 1e6),
    };
    results.push(result);
    console.log(JSON.stringify(result));
    await admin.deleteTopics([topic, `${topic}.dups`, `${topic}.dlq`]).catch(() => {});
  }
} finally {
  await admin.close();
}
mkdirSync(path.join(ROOT, 'bench', 'results'), { recursive: true });
writeFileSync(path.join(ROOT, 'bench', 'results', 'stream.json'), JSON.stringify(results, null, 2) + '\n');
