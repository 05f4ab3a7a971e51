/**
 * Security basics of `semdedup stream`: the metrics server binds 127.0.0.1 unless told
 * otherwise, and SASL credentials never reach the logs — not the config log line, not
 * kafkajs's own errors, not the error a failed start prints — at the most verbose level.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createKafkaClient } from '../../src/sources/kafka/index.js';
import type { KafkaAdmin } from '../../src/sources/kafka/index.js';
import { makeRows, tempDir } from '../helpers/fixtures.js';
import { brokersFromEnv, produce, stream, uniqueName, writeCentroids, writeFixture } from '../helpers/stream.js';

const brokers = brokersFromEnv(inject('kafkaBrokers'));
const BIN = join(import.meta.dirname, '..', '..', 'bin', 'semdedup.mjs');
const SECRET = 'pw-Zq7-never-log-me-41c9';
const USER = 'semdedup-user-5d2e';

describe.skipIf(brokers.length === 0)('stream security basics', () => {
  let admin: KafkaAdmin;
  const topics: string[] = [];
  const dir = tempDir('semdedup-security-');
  const { rows, centers } = makeRows({ n: 40, dim: 8, centers: 2, seed: 5 });
  let centroids: string;
  let inputTopic: string;

  beforeAll(async () => {
    admin = await createKafkaClient({ brokers, clientId: 'semdedup-test' }).connectAdmin();
    centroids = writeCentroids(dir, centers);
    inputTopic = uniqueName('sec-clips');
    topics.push(inputTopic, `${inputTopic}.dlq`);
    await produce(brokers, await writeFixture(dir, 'clips', rows), inputTopic, 'json');
  });
  afterAll(async () => {
    await admin?.deleteTopics(topics).catch(() => {});
    await admin?.close();
  });

  it('serves metrics on 127.0.0.1 by default', async () => {
    const output = uniqueName('sec-dups');
    topics.push(output);
    let url: string | null = null;
    const port = 20000 + Math.floor(Math.random() * 30000);
    await stream(brokers, { inputTopic, outputTopic: output, group: uniqueName('group'), centroids, state: join(dir, 'state-metrics'), metricsPort: port, metadataFields: [] }, { onStarted: (info) => (url = info.metricsUrl) });
    expect(url).toBe(`http://127.0.0.1:${port}`);
  });

  it('never logs SASL credentials, in-process (trace level) or from the CLI (debug level)', async () => {
    // The broker has no SASL listener: the start fails at the handshake, after logging the
    // config and kafkajs's errors — the places a secret could leak.
    const captured: string[] = [];
    const logger = pino({ level: 'trace' }, new Writable({ write: (chunk: Buffer, _enc, done) => (captured.push(chunk.toString()), done()) }));
    const failure = await stream(
      brokers,
      { inputTopic, outputTopic: uniqueName('sec-dups'), group: uniqueName('group'), centroids, state: join(dir, 'state-sasl'), saslMechanism: 'plain', saslUsername: USER, saslPassword: SECRET, metadataFields: [] },
      { logger },
    ).then(
      () => null,
      (err: unknown) => err as Error,
    );
    expect(failure).not.toBeNull();
    const logged = captured.join('');
    expect(logged).toContain('"saslPassword":"[redacted]"');
    expect(logged).not.toContain(SECRET);
    expect(logged).not.toContain(USER);
    expect(String(failure) + JSON.stringify(failure)).not.toContain(SECRET);

    const child = spawn(process.execPath, [BIN, 'stream', '--brokers', brokers.join(','), '--input-topic', inputTopic, '--output-topic', uniqueName('sec-dups'), '--group', uniqueName('group'), '--centroids', centroids, '--state', join(dir, 'state-sasl-cli'), '--metrics-port', '0', '--verbose'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, KAFKA_SASL_MECHANISM: 'PLAIN', KAFKA_SASL_USERNAME: USER, KAFKA_SASL_PASSWORD: SECRET, SEMDEDUP_LOG_LEVEL: 'debug', SEMDEDUP_LOG_FORMAT: 'json' },
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(code).not.toBe(0);
    expect(out).toContain('[redacted]');
    expect(out).not.toContain(SECRET);
    expect(out).not.toContain(USER);
  }, 120_000);
});
