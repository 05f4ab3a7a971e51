/**
 * Nothing lost under faults (docs/RELIABILITY.md):
 * - `semdedup stream` as a process, SIGKILLed at several moments (mostly right inside a
 *   checkpoint: state durable, verdicts or commit not yet) and restarted on the same state and
 *   group while more clips arrive; then `--stop-at-end`. The changelog's latest value per key
 *   equals `semdedup run`, and every verdict record ever published is one the state reaches.
 * - A private broker (not the shared one) stopped and started again mid-stream: the stream
 *   retries, reconnects and ends with the batch result.
 */
import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import { DuckDBInstance } from '@duckdb/node-api';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createStreamMetrics } from '../../src/runtime/metrics.js';
import { createKafkaSink, DEAD_LETTER_HEADERS } from '../../src/sinks/kafka/index.js';
import type { KafkaOutMessage } from '../../src/sinks/kafka/index.js';
import { createKafkaClient } from '../../src/sources/kafka/index.js';
import type { KafkaRecord } from '../../src/sources/kafka/index.js';
import { runCli, whenLine } from '../helpers/cli.js';
import { makeRows, tempDir } from '../helpers/fixtures.js';
import { cosine } from '../helpers/reference.js';
import type { RefRow } from '../helpers/reference.js';
import {
  adminForSuite,
  batchDuplicates,
  brokersFromEnv,
  headerOf,
  latestVerdicts,
  produce,
  readTopic,
  shuffled,
  stream,
  uniqueName,
  verdictDifferences,
  writeCentroids,
  writeFixture,
} from '../helpers/stream.js';

const brokers = brokersFromEnv(inject('kafkaBrokers'));
const ROOT = resolve(import.meta.dirname, '..', '..');
const EPS = 0.02;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What a batch run says about each clip: its cluster and rank position, for the per-record checks. */
interface ClipRank {
  centroid: number;
  rankPos: number;
}

async function batchRanks(output: string): Promise<Map<string, ClipRank>> {
  const db = await DuckDBInstance.create(join(output, 'semdedup.duckdb'), { access_mode: 'READ_ONLY' });
  const conn = await db.connect();
  try {
    const rows = (await conn.runAndReadAll('SELECT id::VARCHAR AS id, centroid, rank_pos FROM clips')).getRowObjectsJS();
    return new Map(rows.map((r) => [r.id as string, { centroid: r.centroid as number, rankPos: r.rank_pos as number }]));
  } finally {
    conn.closeSync();
    db.closeSync();
  }
}

/** Rows to stream, their centroids file, and what `semdedup run` makes of them (the answer the stream must give). */
async function batchReference(dir: string, spec: Parameters<typeof makeRows>[0]): Promise<{ rows: RefRow[]; byId: Map<string, RefRow>; centroids: string; expected: Awaited<ReturnType<typeof batchDuplicates>>; ranks: Map<string, ClipRank> }> {
  const { rows, centers } = makeRows(spec);
  const centroids = writeCentroids(dir, centers);
  const batchOut = join(dir, 'batch');
  const expected = await batchDuplicates(await writeFixture(dir, 'all', rows), batchOut, centroids, EPS);
  return { rows, byId: new Map(rows.map((r) => [r.id, r])), centroids, expected, ranks: await batchRanks(batchOut) };
}

/** Clip ids held by a stream state folder (read after the stream exited). */
async function stateIds(stateDir: string): Promise<Set<string>> {
  const db = await DuckDBInstance.create(join(stateDir, 'state.duckdb'), { access_mode: 'READ_ONLY' });
  const conn = await db.connect();
  try {
    return new Set((await conn.runAndReadAll('SELECT DISTINCT id FROM members')).getRowObjectsJS().map((r) => r.id as string));
  } finally {
    conn.closeSync();
    db.closeSync();
  }
}

/**
 * Every verdict record of the output topic (not only the latest per key) must be a verdict the
 * state reaches: id and max_id in the final state, same cluster, max_id ranked before id, the
 * score their cosine similarity and a duplicate's; per key, in partition order, scores never go
 * down. Returns the problems (empty when none) and the number of records checked.
 */
function checkEveryVerdict(records: readonly KafkaRecord[], ids: ReadonlySet<string>, ranks: ReadonlyMap<string, ClipRank>, byId: ReadonlyMap<string, RefRow>): { problems: string[]; checked: number; keys: number; repeats: number } {
  const problems: string[] = [];
  const sorted = [...records].sort((a, b) => a.partition - b.partition || Number(BigInt(a.offset) - BigInt(b.offset)));
  const last = new Map<string, { score: number; maxId: string; partition: number }>();
  let repeats = 0;
  for (const r of sorted) {
    const v = JSON.parse(r.value.toString('utf8')) as { id: string; max_id: string; cosine_sim_score: number; centroid: number };
    const at = `${r.partition}@${r.offset} ${v.id}`;
    if (r.key?.toString('utf8') !== v.id) problems.push(`${at}: key ${r.key?.toString('utf8')}`);
    if (!ids.has(v.id)) problems.push(`${at}: id not in the final state`);
    if (!ids.has(v.max_id)) problems.push(`${at}: max_id ${v.max_id} not in the final state`);
    const own = ranks.get(v.id);
    const winner = ranks.get(v.max_id);
    if (!own || !winner) continue;
    if (v.centroid !== own.centroid || winner.centroid !== own.centroid) problems.push(`${at}: centroid ${v.centroid}, clip in ${own.centroid}, max_id in ${winner.centroid}`);
    if (!(winner.rankPos < own.rankPos)) problems.push(`${at}: max_id ${v.max_id} (rank ${winner.rankPos}) not ranked before it (rank ${own.rankPos})`);
    const cos = cosine(byId.get(v.id)!.embedding, byId.get(v.max_id)!.embedding);
    if (Math.abs(cos - v.cosine_sim_score) > 1e-4) problems.push(`${at}: score ${v.cosine_sim_score}, cosine with ${v.max_id} is ${cos}`);
    if (v.cosine_sim_score < 1 - EPS - 1e-6) problems.push(`${at}: score ${v.cosine_sim_score} is no duplicate's`);
    const prev = last.get(v.id);
    if (prev) {
      if (prev.partition !== r.partition) problems.push(`${at}: key in two partitions`);
      if (v.cosine_sim_score < prev.score - 1e-7) problems.push(`${at}: score went down from ${prev.score} to ${v.cosine_sim_score}`);
      if (v.cosine_sim_score === prev.score && v.max_id === prev.maxId) repeats++;
    }
    last.set(v.id, { score: v.cosine_sim_score, maxId: v.max_id, partition: r.partition });
  }
  return { problems, checked: sorted.length, keys: last.size, repeats };
}

const msgOf = (line: string): { msg?: string; verdicts?: number; skipped?: number } => {
  try {
    return JSON.parse(line) as { msg?: string; verdicts?: number; skipped?: number };
  } catch {
    return {};
  }
};
/** Records a run skipped because its state already held them (after a kill between state and commit). */
const skippedIn = (logged: ReturnType<typeof msgOf>[]): number => logged.filter((m) => m.msg === 'skipped records already in the state').reduce((n, m) => n + (m.skipped ?? 0), 0);

describe.skipIf(brokers.length === 0)('exactly once under SIGKILL (semdedup stream as a process)', () => {
  const suite = adminForSuite(brokers);
  const { topics } = suite;

  it('kills inside checkpoints and at random moments lose nothing and publish nothing wrong', async () => {
    const started = performance.now();
    const dir = tempDir('semdedup-faults-');
    const { rows, byId, centroids, expected, ranks } = await batchReference(dir, { n: 3000, dim: 16, centers: 6, seed: 31 });
    expect(expected.size).toBeGreaterThan(100);

    const topic = uniqueName('faults-clips');
    const output = uniqueName('faults-dups');
    const group = uniqueName('group');
    const state = join(dir, 'state');
    topics.push(topic, output, `${topic}.dlq`);
    await suite.admin.createTopics([{ topic, numPartitions: 4 }]);
    // Clips trickle in (small batches: a checkpoint every few ms) while the stream runs; what is
    // left at the end goes in at once as Arrow. Poison records among them: dead letters are
    // at-least-once, so a kill may repeat them.
    const order = shuffled(rows, 7);
    const queue: KafkaOutMessage[] = [
      ...[0, 1, 2, 3, 4].map((i) => ({ key: `poison-${i}`, value: `{"id":"poison-${i}","embedding":[1,2` })),
      ...order.slice(0, 2200).map((r) => ({ key: r.id, value: JSON.stringify({ id: r.id, embedding: r.embedding, ...r.meta }), headers: { 'content-type': 'application/json' } })),
    ];
    const sink = await createKafkaSink(createKafkaClient({ brokers, clientId: 'semdedup-test' }));
    let trickling = false;
    const trickle = async (): Promise<void> => {
      trickling = true;
      while (trickling && queue.length > 0) {
        await sink.send(topic, queue.splice(0, 20));
        await sleep(15);
      }
    };

    const args = [
      'stream', '--brokers', brokers.join(','), '--input-topic', topic, '--output-topic', output, '--group', group,
      '--centroids', centroids, '--state', state, '--eps', String(EPS), '--backend', 'js', '--metrics-port', '0',
      '--flush-max-rows', '50', '--flush-max-ms', '20', '--json',
    ];
    // Debug logs show each checkpoint step; a 6 s session lets a restarted member take over fast.
    const env = { SEMDEDUP_LOG_LEVEL: 'debug', SEMDEDUP_LOG_FORMAT: 'json', SEMDEDUP_SESSION_TIMEOUT_MS: '6000' };
    const kills: { round: number; how: string; lastStep: string }[] = [];
    const recoveries: { round: number; republished: boolean; skipped: number }[] = [];
    let seed = 12345;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const rounds = 5;
    try {
      for (let round = 0; round < rounds; round++) {
        const run = runCli(args, env);
        let how: string;
        let feeding: Promise<void> = Promise.resolve();
        try {
          if (round === 4) {
            // While starting: loading the state, recovering, joining the group.
            const ms = 300 + Math.floor(rand() * 2500);
            await sleep(ms);
            how = `${ms} ms after spawn (starting up)`;
          } else {
            await sink.send(topic, queue.splice(0, 20));
            await whenLine(run, (l) => msgOf(l).msg === 'state checkpointed'); // consuming
            feeding = trickle();
            if (round < 3) {
              // Inside a checkpoint: right after the state is durable, while the verdicts go out and before the commit.
              const nth = 2 + Math.floor(rand() * 5);
              let count = 0;
              const from = run.lines.length;
              await whenLine(run, (l, i) => {
                const m = msgOf(l);
                return i >= from && m.msg === 'state checkpointed' && (m.verdicts ?? 0) > 0 && ++count >= nth;
              });
              how = `right after state checkpoint #${nth} with verdicts`;
            } else {
              const ms = Math.floor(rand() * 300);
              await sleep(ms);
              how = `${ms} ms into consuming`;
            }
          }
        } finally {
          run.child.kill('SIGKILL');
          trickling = false;
          await feeding;
        }
        const exit = await run.exited;
        expect(exit.signal).toBe('SIGKILL');
        const logged = run.lines.map(msgOf);
        const steps = logged.map((m) => m.msg).filter((m) => m === 'state checkpointed' || m === 'verdicts published' || m === 'offsets committed');
        kills.push({ round, how, lastStep: steps[steps.length - 1] ?? '(none)' });
        if (round > 0) recoveries.push({ round, republished: logged.some((m) => m.msg?.includes('re-publishing its duplicate verdicts')), skipped: skippedIn(logged) });
      }
      // The rest arrives while it is down, in Arrow and JSON.
      await produce(brokers, await writeFixture(dir, 'rest-arrow', order.slice(2200, 2700)), topic, 'arrow');
      await sink.send(topic, queue.splice(0));
      await produce(brokers, await writeFixture(dir, 'rest-json', order.slice(2700)), topic, 'json');
    } finally {
      trickling = false;
      await sink.close();
    }

    const last = runCli([...args, '--stop-at-end'], env);
    const final = await last.exited;
    expect(final.code, final.stderr.slice(-3000)).toBe(0);
    const summary = JSON.parse(final.stdout) as { clipsIn: number; stateSize: number; deadLetters: number; verdictsRepublished: number; skippedRecords: number };
    recoveries.push({ round: rounds, republished: final.stderr.includes('re-publishing its duplicate verdicts'), skipped: summary.skippedRecords });
    expect(summary.stateSize).toBe(rows.length);

    // Latest value per key = the batch run.
    expect(verdictDifferences(await latestVerdicts(brokers, output), expected)).toEqual([]);
    // Every record ever published is consistent with the final state.
    const ids = await stateIds(state);
    expect(ids.size).toBe(rows.length);
    const records = await readTopic(brokers, output);
    const check = checkEveryVerdict(records, ids, ranks, byId);
    expect(check.problems.slice(0, 20)).toEqual([]);
    expect(check.keys).toBe(expected.size);
    // At least one kill fell between the state checkpoint and the commit: the restart saw the
    // state ahead of the group and re-published (that path is what this test is about).
    expect(recoveries.some((r) => r.republished)).toBe(true);
    // Dead letters: every poison record at least once (at-least-once: repeats allowed).
    const letters = await readTopic(brokers, `${topic}.dlq`);
    const poisoned = new Set(letters.map((l) => headerOf(l, DEAD_LETTER_HEADERS.sourceOffset) + '@' + headerOf(l, DEAD_LETTER_HEADERS.sourcePartition)));
    expect(poisoned.size).toBe(5);
    for (const l of letters) expect(headerOf(l, 'reason')).toMatch(/^invalid JSON/);

    const report = {
      clips: rows.length,
      kills,
      recoveries,
      verdictRecordsChecked: check.checked,
      keys: check.keys,
      repeatedVerdicts: check.repeats,
      deadLetters: { records: letters.length, distinct: poisoned.size },
      lost: expected.size - check.keys,
      wrong: check.problems.length,
      seconds: Math.round((performance.now() - started) / 100) / 10,
    };
    console.log(`faults: SIGKILL ${JSON.stringify(report)}`);
    rmSync(dir, { recursive: true, force: true });
  }, 300_000);
});

// ---------------------------------------------------------------------------------------------

const exec = promisify(execFile);

describe.skipIf(brokers.length === 0 || process.env.SEMDEDUP_SKIP_BROKER_RESTART === '1')('broker restart mid-stream (a private broker)', () => {
  // Not the shared broker: this one is started, stopped and started again here.
  const port = 19092 + 2 * Math.floor(Math.random() * 400);
  let home = '';
  const privateBrokers = [`127.0.0.1:${port}`];
  // The jars the shared broker already fetched (global setup); a private data dir and port.
  const kafka = async (script: 'kafka-up' | 'kafka-down'): Promise<number> => {
    const t0 = performance.now();
    const env = { ...process.env, KAFKA_PORT: String(port), KAFKA_HOME_DIR: home, KAFKA_LIB_DIR: process.env.KAFKA_LIB_DIR ?? join(ROOT, '.kafka', 'lib') };
    await exec('bash', [join(ROOT, 'scripts', `${script}.sh`)], { env, timeout: 150_000 });
    return (performance.now() - t0) / 1000;
  };

  beforeAll(async () => {
    home = tempDir('semdedup-private-kafka-');
    await kafka('kafka-up');
  }, 180_000);
  afterAll(async () => {
    // Always, also when the test failed: never leave a private broker behind.
    if (!home) return;
    await kafka('kafka-down').catch((err: unknown) => console.error('kafka-down of the private broker failed', err));
    rmSync(home, { recursive: true, force: true });
  }, 60_000);

  it('the stream rides out a broker stop and start, and ends with the batch result', async () => {
    const started = performance.now();
    const dir = tempDir('semdedup-broker-restart-');
    const { rows, byId, centroids, expected, ranks } = await batchReference(dir, { n: 2400, dim: 16, centers: 5, seed: 77 });
    const order = shuffled(rows, 3);
    const topic = uniqueName('restart-clips');
    const output = uniqueName('restart-dups');
    const state = join(dir, 'state');
    await produce(privateBrokers, await writeFixture(dir, 'before', order.slice(0, 1400)), topic, 'json', { batchRows: 40 });

    // Warnings and errors of the stream (kafkajs's included), to see that it retried.
    const logLines: string[] = [];
    const sinkStream = new Writable({
      write(chunk: Buffer, _enc, done) {
        logLines.push(...chunk.toString().split('\n').filter(Boolean));
        done();
      },
    });
    const logger = pino({ level: 'warn' }, sinkStream);
    const metrics = createStreamMetrics();
    const clipsIn = async () => (await metrics.clipsIn.get()).values.reduce((s, v) => s + v.value, 0);
    const controller = new AbortController();
    const running = stream(
      privateBrokers,
      { inputTopic: topic, outputTopic: output, group: uniqueName('group'), centroids, state, eps: EPS, stopAtEnd: false, flushMaxRows: 50, flushMaxMs: 20, sessionTimeoutMs: 6000, kafkaRetryWindowMs: 90_000 },
      { logger, signal: controller.signal, metrics },
    );
    let failed: unknown = null;
    running.catch((err: unknown) => (failed = err));
    const waitFor = async (what: string, ok: () => Promise<boolean>, timeoutMs: number) => {
      const until = performance.now() + timeoutMs;
      while (!(await ok())) {
        if (failed) throw failed;
        if (performance.now() > until) throw new Error(`timed out waiting for ${what}`);
        await sleep(50);
      }
    };
    try {
      await waitFor('the first clips', async () => (await clipsIn()) >= 200, 60_000);
      const inAtStop = await clipsIn();
      const downSeconds = await kafka('kafka-down');
      await sleep(8000); // longer than kafkajs's own retries (~9 s in all with the stop)
      const upSeconds = await kafka('kafka-up');
      await produce(privateBrokers, await writeFixture(dir, 'after', order.slice(1400)), topic, 'arrow');
      await waitFor('every clip', async () => (await clipsIn()) >= rows.length, 120_000);
      controller.abort();
      const summary = await running;
      expect(summary).toMatchObject({ clipsIn: rows.length, stateSize: rows.length, stopped: 'signal', deadLetters: 0 });

      expect(verdictDifferences(await latestVerdicts(privateBrokers, output), expected)).toEqual([]);
      const records = await readTopic(privateBrokers, output);
      const check = checkEveryVerdict(records, await stateIds(state), ranks, byId);
      expect(check.problems.slice(0, 20)).toEqual([]);
      // It did see the outage, and retried rather than exiting.
      const retries = logLines.filter((l) => /retrying|kafkajs restarts it/.test(l)).length;
      expect(retries).toBeGreaterThan(0);
      const report = {
        clips: rows.length,
        clipsInAtStop: inAtStop,
        brokerDownSeconds: Math.round((downSeconds + 8 + upSeconds) * 10) / 10,
        retryOrRestartLogLines: retries,
        verdictRecordsChecked: check.checked,
        keys: check.keys,
        lost: expected.size - check.keys,
        wrong: check.problems.length,
        seconds: Math.round((performance.now() - started) / 100) / 10,
      };
      console.log(`faults: broker restart ${JSON.stringify(report)}`);
    } finally {
      controller.abort();
      await running.catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    }
  }, 300_000);
});
