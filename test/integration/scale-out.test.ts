/**
 * Scale-out stream (`semdedup stream --role router|worker`, docs/SCALING.md) on the real broker:
 * - in process: a router and a worker, each draining with --stop-at-end, give the batch run's
 *   duplicates (metadata ranking, JSON records: metadata travels through the internal records);
 *   the router dead-letters bad rows with a reason; routing everything again is all replays;
 * - as processes: a router and 3 workers; while clips flow, a worker and the router are
 *   SIGKILLed, both restarted (the worker on its old state folder), a fresh worker added, another
 *   worker SIGKILLed and one frozen (SIGSTOP) past its session timeout, then thawed (a zombie). The duplicates topic's latest
 *   value per key ends equal to `semdedup run` on the same clips and centroids.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { silentLogger } from '../../src/runtime/logging.js';
import { streamConfigSchema } from '../../src/shared/stream-config.js';
import { createKafkaClient } from '../../src/sources/kafka/index.js';
import type { KafkaAdmin } from '../../src/sources/kafka/index.js';
import { runRouter } from '../../src/stream/router.js';
import { runWorker } from '../../src/stream/worker.js';
import { runCli, waitFor } from '../helpers/cli.js';
import type { CliRun } from '../helpers/cli.js';
import { makeRows, tempDir } from '../helpers/fixtures.js';
import { batchDuplicates, brokersFromEnv, headerOf, latestVerdicts, produce, readTopic, shuffled, uniqueName, verdictDifferences, writeCentroids, writeFixture } from '../helpers/stream.js';
import { createKafkaSink } from '../../src/sinks/kafka/index.js';

const brokers = brokersFromEnv(inject('kafkaBrokers'));
const EPS = 0.02;

interface Proc extends CliRun {
  readonly name: string;
}

function runNamed(name: string, args: string[]): Proc {
  return { name, ...runCli(args, { SEMDEDUP_LOG_LEVEL: 'info' }) };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.skipIf(brokers.length === 0)('scale-out stream: router + workers on a real broker', () => {
  let admin: KafkaAdmin;
  const topics: string[] = [];
  const procs: Proc[] = [];

  beforeAll(async () => {
    admin = await createKafkaClient({ brokers, clientId: 'semdedup-test' }).connectAdmin();
  });
  afterAll(async () => {
    for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    await admin?.deleteTopics(topics).catch(() => {});
    await admin?.close();
  });

  /** True when `group` has committed every non-empty partition of `topic` up to its end. */
  async function caughtUp(group: string, topic: string): Promise<boolean> {
    const ends = await admin.fetchTopicOffsets(topic);
    const committed = await admin.fetchCommittedOffsets(group, topic);
    return ends.every((e) => e.high === '0' || committed.get(e.partition) === e.high);
  }

  it('in process: router then worker (metadata ranking, JSON records) equal the batch run', async () => {
    const dir = tempDir('semdedup-scale-');
    const { rows, centers } = makeRows({ n: 300, dim: 16, centers: 5, seed: 31 });
    const input = await writeFixture(dir, 'clips', rows);
    const centroids = writeCentroids(dir, centers);
    const ranking = { ranking: 'duration_s:desc,video:asc' };
    const expected = await batchDuplicates(input, join(dir, 'batch'), centroids, EPS, ranking);
    expect(expected.size).toBeGreaterThan(10);
    const inputTopic = uniqueName('scale-in');
    const output = uniqueName('scale-dups');
    topics.push(inputTopic, `${inputTopic}.by-cluster`, `${inputTopic}.dlq`, output);
    await produce(brokers, await writeFixture(dir, 'shuffled', shuffled(rows, 7)), inputTopic, 'json');
    // Bad rows: the router dead-letters them with a reason, as `stream` does.
    const sink = await createKafkaSink(createKafkaClient({ brokers, clientId: 'semdedup-test' }));
    try {
      await sink.send(inputTopic, [
        { key: 'bad-json', value: '{"id":"bad-json","embedding":[1,2' },
        { key: 'short', value: '{"id":"short","embedding":[1,2,3]}' },
      ]);
    } finally {
      await sink.close();
    }
    const base = { brokers, inputTopic, outputTopic: output, centroids, eps: EPS, backend: 'js', metricsPort: 0, stopAtEnd: true, metadataFields: ['duration_s', 'video'], ...ranking };
    const router = await runRouter(streamConfigSchema.parse({ ...base, role: 'router', group: uniqueName('router'), state: join(dir, 'unused'), partitions: 3 }), { logger: silentLogger() });
    expect(router).toMatchObject({ clipsIn: rows.length, deadLetters: 2, internalPartitions: 3, stopped: 'end' });
    const letters = await readTopic(brokers, `${inputTopic}.dlq`);
    expect(letters.map((l) => [l.key?.toString(), headerOf(l, 'reason')]).sort()).toEqual([
      ['bad-json', expect.stringMatching(/^invalid JSON/)],
      ['short', 'wrong dimension: 3, expected 16'],
    ]);
    const workerGroup = uniqueName('worker');
    const worker = await runWorker(streamConfigSchema.parse({ ...base, role: 'worker', group: workerGroup, state: join(dir, 'w'), flushMaxRows: 40 }), { logger: silentLogger() });
    expect(worker).toMatchObject({ clipsIn: rows.length, stateSize: rows.length, replayedClips: 0, ownedPartitions: [0, 1, 2], stopped: 'end' });
    expect(verdictDifferences(await latestVerdicts(brokers, output), expected)).toEqual([]);

    // The router again from the start (as after a crash before its commit): every clip is a replay.
    await runRouter(streamConfigSchema.parse({ ...base, role: 'router', group: uniqueName('router'), state: join(dir, 'unused'), partitions: 3 }), { logger: silentLogger() });
    const again = await runWorker(streamConfigSchema.parse({ ...base, role: 'worker', group: workerGroup, state: join(dir, 'w'), flushMaxRows: 40 }), { logger: silentLogger() });
    expect(again).toMatchObject({ clipsIn: 0, replayedClips: rows.length, deadLetters: 0, stateSize: rows.length });
    expect(verdictDifferences(await latestVerdicts(brokers, output), expected)).toEqual([]);
  });

  it('processes: a router and 3 workers; workers SIGKILLed and added while clips flow; the changelog equals the batch run', async () => {
    const started = Date.now();
    const dir = tempDir('semdedup-scale-cli-');
    const { rows, centers } = makeRows({ n: 1200, dim: 16, centers: 8, seed: 12 });
    const input = await writeFixture(dir, 'clips', rows);
    const centroids = writeCentroids(dir, centers);
    const expected = await batchDuplicates(input, join(dir, 'batch'), centroids, EPS);
    expect(expected.size).toBeGreaterThan(50);
    const mixed = shuffled(rows, 3);
    const chunks = [mixed.slice(0, 400), mixed.slice(400, 800), mixed.slice(800)];
    const files = await Promise.all(chunks.map((c, i) => writeFixture(dir, `chunk-${i}`, c)));
    const inputTopic = uniqueName('scale-cli-in');
    const internal = `${inputTopic}.by-cluster`;
    const output = uniqueName('scale-cli-dups');
    const routerGroup = uniqueName('router');
    const workerGroup = uniqueName('worker');
    topics.push(inputTopic, internal, `${inputTopic}.dlq`, output);
    await produce(brokers, files[0]!, inputTopic, 'arrow');

    const common = ['--brokers', brokers.join(','), '--input-topic', inputTopic, '--output-topic', output, '--centroids', centroids, '--eps', String(EPS), '--backend', 'js', '--metrics-port', '0', '--session-timeout-ms', '6000', '--json'];
    const routerArgs = ['stream', '--role', 'router', '--group', routerGroup, '--partitions', '6', '--flush-max-ms', '50', ...common];
    // The first router commits rarely: when it is killed, much of what it routed is uncommitted and routed again.
    const router1 = runNamed('router', [...routerArgs, '--flush-max-ms', '4000']);
    procs.push(router1);
    await waitFor('the internal topic', async () => ((await admin.partitionCounts([internal])).get(internal) === 6 ? true : undefined));
    const worker = (name: string, state: string): Proc => {
      const p = runNamed(name, ['stream', '--role', 'worker', '--group', workerGroup, '--state', join(dir, state), '--flush-max-rows', '48', '--flush-max-ms', '50', ...common]);
      procs.push(p);
      return p;
    };
    const w1 = worker('w1', 'w1');
    const w2 = worker('w2', 'w2');
    const w3 = worker('w3', 'w3');
    // Clips flow into the workers before anything is killed.
    await waitFor('the first worker commits', async () => ([...(await admin.fetchCommittedOffsets(workerGroup, internal)).values()].some((o) => BigInt(o) > 0n) ? true : undefined), 45_000);

    const producing = produce(brokers, files[1]!, inputTopic, 'arrow');
    await sleep(300);
    w2.child.kill('SIGKILL');
    router1.child.kill('SIGKILL'); // what it routed but did not commit is routed again: replays for the workers
    await producing;
    const router = runNamed('router-restarted', routerArgs);
    procs.push(router);
    const w2b = worker('w2-restarted', 'w2'); // its old state folder: behind the group, rebuilt from its position
    await sleep(1500);
    const producing2 = produce(brokers, files[2]!, inputTopic, 'arrow');
    // A zombie: frozen past its session timeout while clips flow, its partitions move; thawed,
    // it must not publish verdicts for them (its lease ran out) before it learns it lost them.
    w1.child.kill('SIGSTOP');
    const w4 = worker('w4', 'w4'); // a new worker, empty state
    await producing2;
    await sleep(1000);
    w3.child.kill('SIGKILL');
    await sleep(7000);
    w1.child.kill('SIGCONT');
    await sleep(3000); // it notices, rejoins, and the group rebalances once more

    await waitFor('the router to commit every clip', async () => ((await caughtUp(routerGroup, inputTopic)) ? true : undefined), 60_000, 500);
    await waitFor('the workers to commit every internal record', async () => ((await caughtUp(workerGroup, internal)) ? true : undefined), 60_000, 500);
    // Verdicts are published before the commit: once committed, the changelog is complete.
    let problems: string[] = [];
    await waitFor('the changelog to equal the batch run', async () => {
      problems = verdictDifferences(await latestVerdicts(brokers, output), expected);
      return problems.length === 0 ? true : undefined;
    }, 15_000, 1000).catch(() => undefined);
    expect(problems).toEqual([]);

    const alive = [router, w1, w2b, w4];
    for (const p of alive) p.child.kill('SIGTERM');
    const results = await Promise.all(alive.map((p) => p.exited));
    if (process.env.SEMDEDUP_SCALE_TEST_LOGS) {
      for (const p of procs) {
        const { stderr } = await p.exited;
        const lines = stderr.split('\n').filter((l) => /assignment changed|partition gained|rebuilt|rebalancing|ownership|joined/.test(l));
        console.log(`=== ${p.name}\n${lines.map((l) => l.slice(0, 300)).join('\n')}`);
      }
    }
    results.forEach((r, i) => expect(r.code, `${alive[i]!.name}: ${r.stderr.slice(-3000)}`).toBe(0));
    const [routerSummary, ...workerSummaries] = results.map((r) => JSON.parse(r.stdout) as Record<string, number>);
    expect(routerSummary).toMatchObject({ role: 'router', deadLetters: 0 });
    expect(routerSummary!.clipsIn).toBeGreaterThan(0); // the restarted router: what the first one had not committed, and after
    // The survivors saw the partitions of the killed workers move to them.
    expect(workerSummaries.reduce((n, s) => n + s.partitionsGained!, 0)).toBeGreaterThanOrEqual(6);
    expect(workerSummaries.reduce((n, s) => n + s.deadLetters!, 0)).toBe(0);
    console.log(`scale-out process test: ${(Date.now() - started) / 1000}s; router ${JSON.stringify({ clipsIn: routerSummary!.clipsIn })}; workers ${JSON.stringify(workerSummaries.map((s) => ({ clipsIn: s.clipsIn, rebuilt: s.rebuiltClips, replayed: s.replayedClips, gained: s.partitionsGained, lost: s.partitionsLost, republished: s.verdictsRepublished, held: s.heldPublishes })))}`);
  }, 120_000);
});
