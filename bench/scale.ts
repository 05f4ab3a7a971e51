/**
 * Scale-out benchmark (docs/SCALING.md) against the broker of KAFKA_BROKERS (default
 * 127.0.0.1:9092; `npm run kafka:up`):
 *
 * 1. produce: the generated sample (768-d, 50 clusters, 5% near-copies) as Arrow records
 *    (`semdedup produce`, 4 partitions);
 * 2. all: `stream --role all --stop-at-end` in process, the single-process reference;
 * 3. router: `stream --role router --stop-at-end` in process, draining the clips into the
 *    internal by-cluster topic (--partitions, default 8);
 * 4. workers: for each count W in --workers (default 1,2), W `stream --role worker
 *    --stop-at-end` PROCESSES on a fresh group and fresh state, started together, draining the
 *    pre-filled internal topic. Aggregate clips/s = clips / (last commit − first batch, over all
 *    workers), so the start-up rebalance (the first member owns everything until the second
 *    joins, then that one rebuilds what was committed) is included and reported.
 *
 *   npx tsx bench/scale.ts [--rows 30000] [--dim 768] [--clusters 50] [--partitions 8]
 *                          [--workers 1,2] [--repeat 1] [--backend cpu] [--skip-all]
 *
 * --repeat R runs the worker counts R times, alternating (1, 2, 1, 2, ...), so load from other
 * jobs on the machine hits both alike.
 *
 * Writes bench/results/scale.json.
 */
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { loadavg } from 'node:os';
import path from 'node:path';
import { produceConfigSchema, streamConfigSchema } from '../src/shared/stream-config.js';
import { writeParquetFile } from '../src/sinks/parquet/index.js';
import { createKafkaClient } from '../src/sources/kafka/index.js';
import { produceClips } from '../src/stream/produce.js';
import { runRouter } from '../src/stream/router.js';
import { runStream } from '../src/stream/run.js';
import { benchBrokers, benchLogger, parseFlags, ROOT, sampleWithCentroids, writeResults } from './stream-setup.js';

const args = parseFlags();
const rows = Number(args.get('rows') ?? 30000);
const dim = Number(args.get('dim') ?? 768);
const clusters = Number(args.get('clusters') ?? 50);
const partitions = Number(args.get('partitions') ?? 8);
const workerCounts = (args.get('workers') ?? '1,2').split(',').map(Number);
const backend = args.get('backend') ?? 'cpu';
const repeat = Number(args.get('repeat') ?? 1);
const brokers = benchBrokers();
const logger = benchLogger();
const run = Date.now().toString(36);
const eps = 0.01;
const load = () => Math.round(loadavg()[0]! * 10) / 10;

const dir = path.join(ROOT, '.data', `bench-scale-${rows}x${dim}`);
const { clips, centroids } = sampleWithCentroids(dir, { rows, dim, clusters });
const input = path.join(dir, 'clips.parquet');
await writeParquetFile(input, [
  { name: 'id', type: 'utf8', values: clips.ids },
  { name: 'embedding', type: 'fixed-list-float32', values: clips.embeddings, listSize: dim },
], { rowGroupRows: 4096 });

const topic = `semdedup-bench-scale-${run}`;
const internal = `${topic}.by-cluster`;
const client = createKafkaClient({ brokers, logger });
const admin = await client.connectAdmin();
const results: Record<string, unknown>[] = [];
const base = { brokers, inputTopic: topic, centroids, eps, stopAtEnd: true, backend, metricsPort: 0 };
try {
  const produced = await produceClips(produceConfigSchema.parse({ brokers, input, topic, format: 'arrow', partitions: 4, batchRows: 1000 }), { logger });
  console.log(JSON.stringify({ bench: 'produce', rows, records: produced.messages, seconds: produced.seconds }));

  if (!args.has('skip-all')) {
    const state = path.join(dir, `state-all-${run}`);
    const l0 = load();
    const c0 = process.cpuUsage();
    const s = await runStream(streamConfigSchema.parse({ ...base, outputTopic: `${topic}.dups-all`, group: `g-all-${run}`, state }), { logger });
    rmSync(state, { recursive: true, force: true });
    const r = { bench: 'all', rows, dim, clusters, backend, clips_per_s: s.clipsPerSecond, wall_s: s.seconds, cpu_s_with_setup: cpuSince(c0), load: [l0, load()] };
    results.push(r);
    console.log(JSON.stringify(r));
  }

  const l0 = load();
  const c0 = process.cpuUsage();
  const router = await runRouter(streamConfigSchema.parse({ ...base, role: 'router', outputTopic: `${topic}.unused`, group: `g-router-${run}`, state: path.join(dir, 'unused'), partitions }), { logger });
  const routerResult = { bench: 'router', rows, partitions, clips_per_s: router.clipsPerSecond, wall_s: router.seconds, internal_records: router.internalRecords, cpu_s_with_setup: cpuSince(c0), step_seconds: router.timings, load: [l0, load()] };
  results.push(routerResult);
  console.log(JSON.stringify(routerResult));

  const rounds = Array.from({ length: repeat }, (_, r) => workerCounts.map((w) => ({ w, r }))).flat();
  for (const { w, r: round } of rounds) {
    const group = `g-workers-${w}-${round}-${run}`;
    const output = `${topic}.dups-${w}-${round}`;
    const l1 = load();
    const started = Date.now();
    const procs = Array.from({ length: w }, (_, i) => runWorkerProcess(group, output, path.join(dir, `state-w${w}-${round}-${i}-${run}`)));
    const summaries = await Promise.all(procs);
    const wall = (Date.now() - started) / 1000;
    for (let i = 0; i < w; i++) rmSync(path.join(dir, `state-w${w}-${round}-${i}-${run}`), { recursive: true, force: true });
    const first = Math.min(...summaries.map((s) => s.firstBatchAt ?? Infinity));
    const last = Math.max(...summaries.map((s) => s.lastCommitAt ?? 0));
    const clipsIn = summaries.reduce((n, s) => n + s.clipsIn, 0);
    const rebuilt = summaries.reduce((n, s) => n + s.rebuiltClips, 0);
    const drainSeconds = (last - first) / 1000;
    const cpu = summaries.reduce((n, s) => n + (s.drainCpuSeconds ?? 0), 0);
    const r = {
      bench: 'workers',
      workers: w,
      rows,
      partitions,
      backend,
      clips_in: clipsIn,
      rebuilt_clips: rebuilt,
      drain_s: Math.round(drainSeconds * 100) / 100,
      aggregate_clips_per_s: Math.round(rows / drainSeconds),
      per_worker_clips_per_s: Math.round(rows / drainSeconds / w),
      wall_s_with_process_start: Math.round(wall * 100) / 100,
      // CPU-bound work per clip, all worker threads: what a worker does with cores of its own.
      cpu_s: Math.round(cpu * 100) / 100,
      clips_per_cpu_s: Math.round(rows / cpu),
      workers_detail: summaries.map((s) => ({ clips_in: s.clipsIn, clips_per_s: s.clipsPerSecond, cpu_s: s.drainCpuSeconds, rebuilt: s.rebuiltClips, gained: s.partitionsGained, lost: s.partitionsLost, owned: s.ownedPartitions, step_seconds: s.timings })),
      load: [l1, load()],
    };
    results.push(r);
    console.log(JSON.stringify(r));
    await admin.deleteTopics([output]).catch(() => {});
  }
} finally {
  const existing = await admin.partitionCounts([topic, internal, `${topic}.dlq`, `${topic}.dups-all`]);
  await admin.deleteTopics([...existing.keys()]).catch(() => {});
  await admin.close();
}
writeResults('scale', results);

function cpuSince(c0: NodeJS.CpuUsage): number {
  const c = process.cpuUsage(c0);
  return Math.round((c.user + c.system) / 1e4) / 100;
}

interface WorkerSummaryJson {
  clipsIn: number;
  clipsPerSecond: number;
  rebuiltClips: number;
  partitionsGained: number;
  partitionsLost: number;
  ownedPartitions: number[];
  firstBatchAt: number | null;
  lastCommitAt: number | null;
  drainCpuSeconds: number | null;
  timings: Record<string, number>;
}

function runWorkerProcess(group: string, output: string, state: string): Promise<WorkerSummaryJson> {
  const bin = path.join(ROOT, 'bin', 'semdedup.mjs');
  const child = spawn(
    process.execPath,
    [bin, 'stream', '--role', 'worker', '--brokers', brokers.join(','), '--input-topic', topic, '--output-topic', output, '--group', group, '--centroids', centroids, '--state', state, '--eps', String(eps), '--backend', backend, '--metrics-port', '0', '--stop-at-end', '--session-timeout-ms', '6000', '--json'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) =>
    child.on('exit', (code) => {
      if (code !== 0) reject(new Error(`worker exited with ${code}: ${err.slice(-2000)}`));
      else resolve(JSON.parse(out) as WorkerSummaryJson);
    }),
  );
}
