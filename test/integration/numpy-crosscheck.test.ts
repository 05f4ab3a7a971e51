import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runBatch } from '../../src/batch/run.js';
import { silentLogger } from '../../src/runtime/logging.js';
import { createProgress } from '../../src/runtime/progress.js';
import { runConfigSchema } from '../../src/shared/config.js';
import { tempDir } from '../helpers/fixtures.js';

const bench = join(import.meta.dirname, '..', '..', 'bench');

/**
 * The NumPy port of the algorithm (bench/numpy_semdedup.py, written from DESIGN.md) and
 * `semdedup run` on the same 50k × 768 clips and centroids agree on max_id and score.
 */
describe('semdedup run vs an independent NumPy implementation', () => {
  it('50k × 768, 50 given centroids: ≥ 99.9 % of ids equal (max_id, score within 1e-5), same duplicates', async () => {
    const dir = tempDir();
    const data = join(dir, 'data');
    const centroids = join(dir, 'centroids.npy');
    execFileSync('python3', [join(bench, 'gen_data.py'), '--rows', '50000', '--dim', '768', '--clusters', '50', '--files', '2', '--seed', '5', '--out', data, '--write-centroids', centroids], { stdio: 'pipe' });
    const numpyOut = join(dir, 'numpy');
    execFileSync('python3', [join(bench, 'numpy_semdedup.py'), '--input', data, '--output', numpyOut, '--n-clusters', '50', '--centroids', centroids, '--eps', '0.01'], {
      stdio: 'pipe',
      env: { ...process.env, OPENBLAS_NUM_THREADS: '2' },
    });
    const ours = join(dir, 'ours');
    const summary = await runBatch(runConfigSchema.parse({ input: [data], output: ours, centroids, eps: 0.01 }), { logger: silentLogger(), progress: createProgress(false) });
    expect(summary.rows).toBe(50_000);
    const cmp = JSON.parse(execFileSync('python3', [join(bench, 'compare_outputs.py'), ours, numpyOut], { encoding: 'utf8' }));
    expect(cmp.ids).toBe(50_000);
    expect(cmp.fraction).toBeGreaterThanOrEqual(0.999);
    expect(cmp.dup_equal).toBe(true);
    expect(cmp.dup_a).toBeGreaterThan(100);
  }, 300_000);
});
