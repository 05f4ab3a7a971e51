/**
 * The `semdedup produce` and `semdedup stream` commands as processes: a running stream serves
 * /metrics and /healthz, and on SIGTERM checkpoints, commits and exits 0.
 */
import { join } from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { runCli, waitFor } from '../helpers/cli.js';
import { makeRows, tempDir } from '../helpers/fixtures.js';
import { adminForSuite, batchDuplicates, brokersFromEnv, latestVerdicts, shuffled, uniqueName, verdictDifferences, writeCentroids, writeFixture } from '../helpers/stream.js';

const brokers = brokersFromEnv(inject('kafkaBrokers'));
describe.skipIf(brokers.length === 0)('semdedup stream and produce as processes', () => {
  const suite = adminForSuite(brokers);
  const { topics } = suite;

  it('serves metrics while running; SIGTERM checkpoints, commits and exits 0', async () => {
    const dir = tempDir('semdedup-stream-cli-');
    const { rows, centers } = makeRows({ n: 300, dim: 16, centers: 3, seed: 8 });
    const input = await writeFixture(dir, 'clips', shuffled(rows, 3));
    const centroids = writeCentroids(dir, centers);
    const expected = await batchDuplicates(input, join(dir, 'batch'), centroids, 0.01);
    const topic = uniqueName('cli-clips');
    const output = uniqueName('cli-dups');
    const group = uniqueName('group');
    topics.push(topic, output, `${topic}.dlq`);

    const produced = runCli(['produce', '--input', input, '--brokers', brokers.join(','), '--topic', topic, '--format', 'arrow', '--batch-rows', '50', '--json']);
    const p = await produced.exited;
    expect(p.code, p.stderr).toBe(0);
    expect(JSON.parse(p.stdout)).toMatchObject({ rows: 300, partitions: 4, format: 'arrow' });

    const port = 20000 + Math.floor(Math.random() * 30000);
    const streamed = runCli([
      'stream', '--brokers', brokers.join(','), '--input-topic', topic, '--output-topic', output, '--group', group,
      '--centroids', join(dir, 'batch'), '--state', join(dir, 'state'), '--eps', '0.01', '--backend', 'js',
      '--metrics-port', String(port), '--flush-max-ms', '50', '--json',
    ]);
    try {
      const url = `http://127.0.0.1:${port}`;
      // Running without --stop-at-end: wait until it has taken every clip in.
      let last = '';
      const metrics = await waitFor('all clips in', async () => {
        last = await (await fetch(`${url}/metrics`)).text();
        return /^clips_in_total\{format="arrow"\} 300$/m.test(last) ? last : undefined;
      }).catch((err: Error) => {
        const seen = last.split('\n').filter((l) => /^(clips_in_total|consumer_lag|buffered_rows|paused)/.test(l));
        throw new Error(`${err.message}\nmetrics: ${seen.join('; ')}\nstream log tail:\n${streamed.lines.slice(-15).join('\n')}`);
      });
      for (const name of ['verdicts_out_total', 'consumer_lag', 'flush_latency_seconds_bucket', 'buffered_rows', 'dead_letter_total']) expect(metrics).toContain(name);
      expect((await fetch(`${url}/healthz`)).status).toBe(200);
    } finally {
      streamed.child.kill('SIGTERM');
    }
    const s = await streamed.exited;
    expect(s.code, s.stderr).toBe(0);
    expect(JSON.parse(s.stdout)).toMatchObject({ clipsIn: 300, stopped: 'signal', stateSize: 300 });
    expect(s.stderr).toContain('"signal":"SIGTERM"');

    // Committed: the group's offsets are at the end of every partition.
    const ends = await suite.admin.fetchTopicOffsets(topic);
    const committed = await suite.admin.fetchCommittedOffsets(group, topic);
    for (const e of ends) expect(committed.get(e.partition)).toBe(e.high === '0' ? '-1' : e.high); // an empty partition has nothing to commit
    expect(verdictDifferences(await latestVerdicts(brokers, output), expected)).toEqual([]);
  });
});
