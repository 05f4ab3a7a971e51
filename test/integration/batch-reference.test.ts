import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeNpy } from '../../src/assign/npy.js';
import { runBatch } from '../../src/batch/run.js';
import { silentLogger } from '../../src/runtime/logging.js';
import { createProgress } from '../../src/runtime/progress.js';
import { runConfigSchema } from '../../src/shared/config.js';
import { makeRows, readParquetRows, tempDir, writeRowsParquet } from '../helpers/fixtures.js';
import { referenceDedup, type RefOptions, type RefRow } from '../helpers/reference.js';

async function runAndCompare(rows: RefRow[], centroids: number[][], ref: Omit<RefOptions, 'centroids'>, flags: Record<string, unknown>, opts: { intIds?: boolean; embeddingType?: 'fixed-float' | 'list-double' } = {}) {
  const dir = tempDir();
  const input = join(dir, 'in.parquet');
  await writeRowsParquet(input, rows, opts);
  const centroidsPath = join(dir, 'centroids.npy');
  const dim = centroids[0]!.length;
  await writeNpy(centroidsPath, Float32Array.from(centroids.flat()), [centroids.length, dim]);
  const config = runConfigSchema.parse({ input: [input], output: join(dir, 'out'), centroids: centroidsPath, backend: 'js', metadataFields: ['duration_s', 'video'], ...flags });
  const summary = await runBatch(config, { logger: silentLogger(), progress: createProgress(false) });
  const got = await readParquetRows(join(dir, 'out', 'pairwise_results', '*.parquet'));
  const expected = referenceDedup(rows, { centroids, ...ref });
  expect(got.length).toBe(rows.length);
  for (const r of got) {
    const e = expected.get(String(r.id))!;
    expect(e, `id ${String(r.id)}`).toBeDefined();
    expect(String(r.max_id), `max_id of ${String(r.id)}`).toBe(e.maxId);
    expect(Math.abs((r.cosine_sim_score as number) - e.score), `score of ${String(r.id)}`).toBeLessThanOrEqual(1e-5);
  }
  return { dir, summary, expected };
}

describe('batch run equals a brute-force reference', () => {
  const { rows, centers } = makeRows({ n: 240, dim: 12, centers: 4, seed: 11 });

  it.each([
    ['hard', { whichToKeep: 'hard' as const }, {}],
    ['easy', { whichToKeep: 'easy' as const }, { whichToKeep: 'easy' }],
    ['random', { whichToKeep: 'random' as const }, { whichToKeep: 'random' }],
    ['l2 hard', { distanceMetric: 'l2' as const }, { distanceMetric: 'l2' }],
    ['l2 easy', { whichToKeep: 'easy' as const, distanceMetric: 'l2' as const }, { whichToKeep: 'easy', distanceMetric: 'l2' }],
    ['metadata', { ranking: [{ column: 'duration_s', order: 'desc' as const }, { column: 'video', order: 'asc' as const }] }, { ranking: 'duration_s:desc,video:asc' }],
  ])('ranking %s', async (_name, ref, flags) => {
    await runAndCompare(rows, centers, ref, { ...flags, pairwiseBatchSize: 17 });
  });

  it('every pairwise batch size from 1 to n gives the same result', async () => {
    const small = makeRows({ n: 23, dim: 5, centers: 1, seed: 3 });
    for (const size of [1, 2, 5, 22, 23, 64]) await runAndCompare(small.rows, small.centers, {}, { pairwiseBatchSize: size });
  });

  it('integer ids, float64 list embeddings, negative similarities and a single-clip cluster', async () => {
    // Rows live in the first 5 dimensions around c0 (wide spread: many negative similarities);
    // centroids c0, -c0 split them, and the 6th axis holds exactly one clip.
    const neg = makeRows({ n: 150, dim: 5, centers: 1, seed: 5, spread: 3, intIds: true });
    for (const r of neg.rows) r.embedding.push(0);
    neg.rows.push({ id: '999999', embedding: [0, 0, 0, 0, 0, 7], meta: { duration_s: 1, video: 'v9' } });
    const c0 = [...neg.centers[0]!, 0];
    const norm = Math.hypot(...c0);
    const centroids = [c0.map((x) => x / norm), c0.map((x) => -x / norm), [0, 0, 0, 0, 0, 1]];
    const { expected } = await runAndCompare(neg.rows, centroids, { idType: 'int64' }, {}, { intIds: true, embeddingType: 'list-double' });
    expect(expected.get('999999')).toMatchObject({ centroid: 2, maxId: '999999', score: 0 });
    const negatives = [...expected.values()].filter((e) => e.score === 0 && e.maxId === e.id).length;
    expect(negatives).toBeGreaterThan(2);
  });

  it("NeMo's own tie case: scores 0, .974631, .998190, .999618, 1, 1 and max_id rows 0, 0, 1, 2, 0, 0", async () => {
    const vecs = [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12], [1, 2, 3], [1, 2, 3]];
    // metadata ranking by `duration_s` ascending puts the rows in exactly this order.
    const rows: RefRow[] = vecs.map((embedding, i) => ({ id: `r${i}`, embedding, meta: { duration_s: i, video: 'v' } }));
    const { dir } = await runAndCompare(rows, [[0.5, 0.57, 0.65]], { ranking: [{ column: 'duration_s', order: 'asc' }] }, { ranking: 'duration_s:asc' });
    const got = await readParquetRows(join(dir, 'out', 'pairwise_results', '*.parquet'), 'ORDER BY id');
    expect(got.map((r) => String(r.max_id))).toEqual(['r0', 'r0', 'r1', 'r2', 'r0', 'r0']);
    const expectedScores = [0, 0.974631, 0.99819, 0.999618, 1, 1];
    got.forEach((r, i) => expect(r.cosine_sim_score as number).toBeCloseTo(expectedScores[i]!, 5));
  });

  it('writes the NeMo layout, duplicates with eps, and a summary', async () => {
    const { dir, summary, expected } = await runAndCompare(rows, centers, {}, { eps: 0.01 });
    const out = join(dir, 'out');
    for (const entry of ['kmeans_results', 'kmeans_centroids.npy', 'pairwise_results', 'duplicates', 'semdedup.duckdb', 'summary.json']) {
      expect(existsSync(join(out, entry)), entry).toBe(true);
    }
    const dups = await readParquetRows(join(out, 'duplicates', '*.parquet'));
    const want = [...expected.values()].filter((e) => e.score >= 1 - 0.01).map((e) => e.id).sort();
    expect(dups.map((d) => String(d.id))).toEqual(want);
    expect(want.length).toBeGreaterThan(10);
    const json = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
    expect(json).toMatchObject({ rows: rows.length, clusters: centers.length, duplicates: want.length, rejected_rows: 0 });
    expect(summary.duplicates).toBe(want.length);
    const km = await readParquetRows(join(out, 'kmeans_results', '*', '*.parquet'));
    expect(km.length).toBe(rows.length);
    expect(Object.keys(km[0]!).sort()).toEqual(['centroid', 'cosine_dist_to_cent', 'duration_s', 'embedding', 'id', 'l2_dist_to_cent', 'video'].sort());
  });
});
