/**
 * Streaming benchmarks against the broker of KAFKA_BROKERS (default 127.0.0.1:9092; `npm run kafka:up`):
 *
 * 1. drain: clips/s drained by `semdedup stream --stop-at-end` from a topic already filled by
 *    `semdedup produce` (a backlog), Arrow and JSON records, cpu backend. The stream runs as its
 *    own process, as users run it (`node bin/semdedup.mjs stream … --json`; dist/ built first
 *    when stale), each drain a fresh process with a fresh group and state; `--drain-in-process`
 *    runs `runStream` in this process instead (warmer: JIT and heap carry over from the data
 *    generation and produce before it). "drain clips/s" counts from the consumer's start to the
 *    last commit (state load, topic setup and shutdown excluded); "wall" is that span; peak RSS
 *    is the child's VmHWM.
 * 2. latency: `semdedup stream` as its own process with the default flush settings
 *    (--flush-max-ms 100), fed clips paced at --rate per second (JSON, one clip per record)
 *    after a warm-up. Per verdict record: its timestamp minus the later of the record
 *    timestamps of its clip and of its max_id clip (a raised verdict is late from the clip that
 *    raised it). Timestamps are the records' own (CreateTime), read back from both topics.
 *
 *   npx tsx bench/stream.ts [--rows 50000] [--dim 768] [--clusters 50] [--backend cpu]
 *                           [--formats arrow,json] [--flush-max-rows 4096] [--repeat 1]
 *                           [--rate 1000] [--seconds 20] [--skip-drain] [--skip-latency]
 *                           [--drain-in-process]
 *
 * Data: the generated sample (src/sources/sample.ts, 5% near-copies) with its cluster directions
 * as centroids, eps 0.01. Writes bench/results/stream.json.
 */
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { produceConfigSchema, streamConfigSchema } from '../src/shared/stream-config.js';
import { clipMessagesJson, createKafkaSink } from '../src/sinks/kafka/index.js';
import type { KafkaOutMessage } from '../src/sinks/kafka/index.js';
import { writeParquetFile } from '../src/sinks/parquet/index.js';
import { createKafkaClient, createKafkaSource, ensureTopics } from '../src/sources/kafka/index.js';
import type { KafkaRecord } from '../src/sources/kafka/index.js';
import { produceClips } from '../src/stream/produce.js';
import { runStream } from '../src/stream/run.js';
import { ensureBuilt, readVmHwmKb } from './cli-child.js';
import { benchBrokers, benchLogger, parseFlags, ROOT, sampleWithCentroids, writeResults } from './stream-setup.js';

const args = parseFlags();
const rows = Number(args.get('rows') ?? 50000);
const dim = Number(args.get('dim') ?? 768);
const clusters = Number(args.get('clusters') ?? 50);
const backend = args.get('backend') ?? 'cpu';
const formats = (args.get('formats') ?? 'arrow,json').split(',') as ('arrow' | 'json')[];
const flushMaxRows = Number(args.get('flush-max-rows') ?? 4096);
const repeat = Number(args.get('repeat') ?? 1);
const rate = Number(args.get('rate') ?? 1000);
const seconds = Number(args.get('seconds') ?? 20);
const warmup = 500;
const drainInProcess = args.has('drain-in-process');
const brokers = benchBrokers();
const logger = benchLogger();
const run = `${Date.now().toString(36)}`;
const eps = 0.01;

const latencyClips = Math.round(rate * seconds);
const totalRows = Math.max(rows, args.has('skip-latency') ? 0 : latencyClips + warmup);
const dir = path.join(ROOT, '.data', `bench-stream-${totalRows}x${dim}`);
const { clips, centroids } = sampleWithCentroids(dir, { rows: totalRows, dim, clusters });

const client = createKafkaClient({ brokers, logger });
const admin = await client.connectAdmin();
const results: Record<string, unknown>[] = [];
try {
  if (!args.has('skip-drain')) {
    const input = path.join(dir, `clips-${rows}.parquet`);
    await writeParquetFile(input, [
      { name: 'id', type: 'utf8', values: clips.ids.slice(0, rows) },
      { name: 'embedding', type: 'fixed-list-float32', values: clips.embeddings.subarray(0, rows * dim), listSize: dim },
    ], { rowGroupRows: 4096 });
    if (!drainInProcess) ensureBuilt();
    for (const format of formats) {
      const topic = `semdedup-bench-${format}-${run}`;
      const produced = await produceClips(produceConfigSchema.parse({ brokers, input, topic, format, partitions: 4, batchRows: 1000 }), { logger });
      for (let r = 0; r < repeat; r++) {
        // A fresh group and state each time: the whole backlog is drained again.
        const state = path.join(dir, `state-${format}-${run}-${r}`);
        const group = `g-${topic}-${r}`;
        const s = drainInProcess
          ? { ...(await runStream(streamConfigSchema.parse({ brokers, inputTopic: topic, outputTopic: `${topic}.dups`, group, centroids, state, eps, stopAtEnd: true, backend, metricsPort: 0, flushMaxRows }), { logger })), peakRssMb: null }
          : await drainInChild({ topic, group, state });
        rmSync(state, { recursive: true, force: true });
        const result = {
          bench: 'drain',
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
          process: drainInProcess ? 'in-process' : 'own process',
          peak_rss_mb: s.peakRssMb,
        };
        results.push(result);
        console.log(JSON.stringify(result));
      }
      await admin.deleteTopics([topic, `${topic}.dups`, `${topic}.dlq`]).catch(() => {});
    }
  }
  if (!args.has('skip-latency')) {
    const result = await measureLatency();
    results.push(result);
    console.log(JSON.stringify(result));
  }
} finally {
  await admin.close();
}
writeResults('stream', results);

// ---------------------------------------------------------------------------------------------

async function measureLatency(): Promise<Record<string, unknown>> {
  const topic = `semdedup-bench-latency-${run}`;
  const output = `${topic}.dups`;
  const state = path.join(dir, `state-latency-${run}`);
  await ensureTopics(admin, [{ topic, numPartitions: 4 }], logger);
  // JSON records, one clip per record: the paced clips first, the warm-up clips after them in the data.
  const messages = jsonMessages(0, latencyClips);
  const warm = jsonMessages(latencyClips, latencyClips + warmup);
  const port = 20000 + Math.floor(Math.random() * 30000);
  const bin = path.join(ROOT, 'bin', 'semdedup.mjs');
  const child = spawn(
    process.execPath,
    [bin, 'stream', '--brokers', brokers.join(','), '--input-topic', topic, '--output-topic', output, '--group', `g-${topic}`, '--centroids', centroids, '--state', state, '--eps', String(eps), '--backend', backend, '--metrics-port', String(port), '--json'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let childOut = '';
  let childErr = '';
  child.stdout!.on('data', (d: Buffer) => (childOut += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (childErr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  const sink = await createKafkaSink(client, { logger });
  let paced: { first: number; last: number; behindMs: number };
  try {
    const clipsIn = async (): Promise<number> => {
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      let n = 0;
      for (const m of text.matchAll(/^clips_in_total\{[^}]*\} (\d+)$/gm)) n += Number(m[1]);
      return n;
    };
    const waitClipsIn = async (want: number, what: string): Promise<void> => {
      const until = Date.now() + 120_000;
      for (;;) {
        if ((await clipsIn().catch(() => -1)) >= want) return;
        if (Date.now() > until || child.exitCode !== null) throw new Error(`stream did not take ${what} in (exit ${child.exitCode}): ${childErr.slice(-2000)}`);
        await sleep(50);
      }
    };
    // Warm-up: consumer joined, code compiled, state non-empty; not measured.
    await sink.send(topic, warm);
    await waitClipsIn(warmup, 'the warm-up clips');
    await sleep(500);
    paced = await sendPaced(sink, topic, messages);
    await waitClipsIn(warmup + latencyClips, 'every paced clip');
    await sleep(1000); // the last checkpoint publishes
  } finally {
    child.kill('SIGTERM');
    await exited;
    await sink.close();
  }
  let summary: Record<string, unknown> = {};
  try {
    summary = JSON.parse(childOut) as Record<string, unknown>;
  } catch {
    // no summary: reported as unknown
  }
  const inputs = await readTopic(topic);
  const verdicts = await readTopic(output);
  await admin.deleteTopics([topic, output, `${topic}.dlq`]).catch(() => {});
  rmSync(state, { recursive: true, force: true });

  const arrived = new Map(inputs.map((r) => [r.key!.toString('utf8'), Number(r.timestamp)]));
  const latencies: number[] = [];
  for (const v of verdicts) {
    const { id, max_id: maxId } = JSON.parse(v.value.toString('utf8')) as { id: string; max_id: string };
    const from = Math.max(arrived.get(id)!, arrived.get(maxId)!);
    if (from < paced.first) continue; // caused by warm-up clips only
    latencies.push(Number(v.timestamp) - from);
  }
  latencies.sort((a, b) => a - b);
  const q = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? null;
  return {
    bench: 'latency',
    format: 'json',
    backend,
    offered_clips_per_s: rate,
    achieved_clips_per_s: Math.round(latencyClips / ((paced.last - paced.first) / 1000)),
    producer_max_behind_ms: Math.round(paced.behindMs),
    clips: latencyClips,
    verdicts: latencies.length,
    p50_ms: q(0.5),
    p90_ms: q(0.9),
    p99_ms: q(0.99),
    max_ms: latencies.at(-1) ?? null,
    stream_checkpoints: summary.checkpoints,
    stream_step_seconds: summary.timings,
  };
}

interface DrainSummary {
  clipsPerSecond: number;
  seconds: number;
  verdictsOut: number;
  checkpoints: number;
  timings: Record<string, number>;
  peakRssMb: number | null;
}

/** `semdedup stream --stop-at-end` as its own process; its JSON summary and peak RSS. */
async function drainInChild(o: { topic: string; group: string; state: string }): Promise<DrainSummary> {
  const bin = path.join(ROOT, 'bin', 'semdedup.mjs');
  const argv = [bin, 'stream', '--brokers', brokers.join(','), '--input-topic', o.topic, '--output-topic', `${o.topic}.dups`, '--group', o.group, '--centroids', centroids, '--state', o.state, '--eps', String(eps), '--backend', backend, '--flush-max-rows', String(flushMaxRows), '--stop-at-end', '--metrics-port', '0', '--json'];
  const child = spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  let peakKb = 0;
  const poll = setInterval(() => (peakKb = Math.max(peakKb, readVmHwmKb(child.pid!) ?? 0)), 50);
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  clearInterval(poll);
  if (code !== 0) throw new Error(`semdedup stream exited with ${code}: ${err.slice(-2000)}`);
  const s = JSON.parse(out) as Omit<DrainSummary, 'peakRssMb'>;
  return { ...s, peakRssMb: peakKb > 0 ? Math.round(peakKb / 1024) : null };
}

/** JSON records (key = id) of clips [from, to). */
function jsonMessages(from: number, to: number): KafkaOutMessage[] {
  const n = to - from;
  const offsets = Int32Array.from({ length: n + 1 }, (_, i) => i * dim);
  return clipMessagesJson({
    ids: clips.ids.slice(from, to),
    idType: 'string',
    values: clips.embeddings.subarray(from * dim, to * dim),
    offsets,
    embeddingNull: new Uint8Array(n),
    metadata: {},
    origin: {},
  });
}

/** Send at `rate` clips/s: every 10 ms the clips due by then. */
async function sendPaced(sink: Awaited<ReturnType<typeof createKafkaSink>>, topic: string, messages: KafkaOutMessage[]): Promise<{ first: number; last: number; behindMs: number }> {
  const tickMs = 10;
  const first = Date.now();
  let sent = 0;
  let behindMs = 0;
  while (sent < messages.length) {
    const due = Math.min(messages.length, Math.floor(((Date.now() - first) / 1000) * rate) + 1);
    if (due > sent) {
      const now = Date.now();
      // How late the oldest of these is against the schedule.
      behindMs = Math.max(behindMs, now - (first + (sent / rate) * 1000));
      await sink.send(topic, messages.slice(sent, due));
      sent = due;
    }
    const next = first + (sent / rate) * 1000;
    await sleep(Math.max(0, Math.min(tickMs, next - Date.now())));
  }
  return { first, last: Date.now(), behindMs };
}

async function readTopic(topic: string): Promise<KafkaRecord[]> {
  const source = await createKafkaSource(client, { topic, groupId: `bench-reader-${topic}-${Date.now()}`, stopAtEnd: true, logger });
  const records: KafkaRecord[] = [];
  try {
    for await (const batch of source.batches()) records.push(...batch.records);
  } finally {
    await source.close();
  }
  return records;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
