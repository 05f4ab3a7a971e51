import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { resolveStreamConfig } from '../../src/cli/stream-command.js';
import { InputError } from '../../src/shared/errors.js';
import { kafkaConnectionOf, redactStreamConfig } from '../../src/shared/stream-config.js';
import { resolveCentroidsPath } from '../../src/assign/centroids.js';
import { tempDir } from '../helpers/fixtures.js';

const base = { brokers: '127.0.0.1:9092', inputTopic: 'clips', outputTopic: 'dups', group: 'g', centroids: 'c.npy', state: 'st' };
const saved = { ...process.env };
afterEach(() => {
  for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
});

describe('stream config', () => {
  it('has the documented defaults', () => {
    expect(resolveStreamConfig({ ...base })).toMatchObject({
      brokers: ['127.0.0.1:9092'],
      eps: 0.01,
      whichToKeep: 'hard',
      idType: 'string',
      stopAtEnd: false,
      flushMaxRows: 4096,
      flushMaxMs: 100,
      metricsPort: 9464,
      metricsHost: '127.0.0.1',
      backend: 'cpu',
      maxRecordBytes: 8 * 1024 * 1024,
      kafkaRetryWindowMs: 120_000,
    });
  });

  it('names the bad field', () => {
    expect(() => resolveStreamConfig({ ...base, brokers: 'nohost' })).toThrow(/brokers.*host:port/);
    expect(() => resolveStreamConfig({ ...base, ranking: 'duration_s:desc' })).toThrow(/ranking column "duration_s" is not among --metadata-fields/);
    expect(() => resolveStreamConfig({ ...base, idType: 'uuid' })).toThrow(InputError);
    expect(() => resolveStreamConfig({ ...base, bogus: 1 })).toThrow(/unknown key\(s\) bogus/);
  });

  it('takes credentials from KAFKA_* env, config file < env < flags, and never shows them', async () => {
    process.env.KAFKA_SASL_USERNAME = 'alice';
    process.env.KAFKA_SASL_PASSWORD = 's3cret';
    process.env.SEMDEDUP_EPS = '0.05';
    const dir = tempDir();
    const file = join(dir, 'stream.yaml');
    writeFileSync(file, 'eps: 0.2\nflush-max-ms: 250\nsasl_mechanism: scram-sha-256\n');
    const c = resolveStreamConfig({ ...base, config: file, flushMaxRows: '100' });
    expect(c).toMatchObject({ eps: 0.05, flushMaxMs: 250, flushMaxRows: 100, saslUsername: 'alice' });
    expect(await kafkaConnectionOf(c)).toMatchObject({ sasl: { mechanism: 'scram-sha-256', username: 'alice', password: 's3cret' } });
    const shown = JSON.stringify(redactStreamConfig(c));
    expect(shown).not.toContain('s3cret');
    expect(shown).not.toContain('alice');
  });

  it('--centroids takes a .npy file or a run output folder', () => {
    const dir = tempDir();
    expect(resolveCentroidsPath(join(dir, 'x.npy'))).toBe(join(dir, 'x.npy'));
    mkdirSync(join(dir, 'out'));
    expect(() => resolveCentroidsPath(join(dir, 'out'))).toThrow(/holds no kmeans_centroids.npy/);
    writeFileSync(join(dir, 'out', 'kmeans_centroids.npy'), '');
    expect(resolveCentroidsPath(join(dir, 'out'))).toBe(join(dir, 'out', 'kmeans_centroids.npy'));
  });
});
