import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { generateSampleClips } from '../../src/sources/sample.js';
import { writeParquetFile } from '../../src/sinks/parquet/index.js';
import { tempDir } from '../helpers/fixtures.js';

const bin = join(import.meta.dirname, '..', '..', 'bin', 'semdedup.mjs');

describe('the semdedup command', () => {
  it('--help explains every run flag with its default', () => {
    const r = spawnSync('node', [bin, 'run', '--help'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    for (const flag of ['--input', '--output', '--n-clusters', '--eps', '--centroids', '--which-to-keep', '--ranking', '--metadata-fields', '--distance-metric', '--max-iter', '--tol', '--seed', '--n-init', '--fit-fraction', '--pairwise-batch-size', '--backend', '--config', '--json']) {
      expect(r.stdout).toContain(flag);
    }
    expect(r.stdout).toMatch(/default: 300/);
    const top = spawnSync('node', [bin, '--help'], { encoding: 'utf8' });
    expect(top.stdout).toMatch(/run/);
    expect(top.stdout).toMatch(/replay/);
  });

  it('an unknown flag exits 2 with usage help', () => {
    const r = spawnSync('node', [bin, 'run', '--frobnicate'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/unknown option/);
  });

  it('SIGTERM during a run exits 143 and leaves nothing that looks complete', async () => {
    const dir = tempDir();
    const clips = generateSampleClips({ rows: 30_000, dim: 256, clusters: 8, seed: 3 });
    await writeParquetFile(join(dir, 'in.parquet'), [
      { name: 'id', type: 'utf8', values: clips.ids },
      { name: 'embedding', type: 'fixed-list-float32', values: clips.embeddings, listSize: 256 },
    ]);
    const out = join(dir, 'out');
    // k-means with many restarts keeps the job busy long enough to interrupt it.
    const child = spawn('node', [bin, 'run', '--input', join(dir, 'in.parquet'), '--output', out, '--n-clusters', '64', '--n-init', '50', '--max-iter', '300', '--tol', '0', '--backend', 'js'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    await new Promise<void>((resolve) => {
      const poll = setInterval(() => {
        if (stderr.includes('inputs read')) {
          clearInterval(poll);
          resolve();
        }
      }, 50);
      setTimeout(() => (clearInterval(poll), resolve()), 20_000);
    });
    child.kill('SIGTERM');
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    expect(code).toBe(143);
    expect(stderr).toMatch(/interrupted/);
    expect(existsSync(join(out, 'summary.json'))).toBe(false);
    expect(existsSync(out) ? readdirSync(out) : []).toEqual([]);
  }, 60_000);
});
