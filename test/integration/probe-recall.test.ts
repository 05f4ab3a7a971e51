/**
 * Multi-probe pairwise (`--probe 2`) and `semdedup recall`, against brute force on small data whose
 * clusters overlap (7 centroids over 3 wide blobs), so a good share of clips is probed.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { createRng, sampleSortedIndices } from '../../src/assign/index.js';
import { writeNpy } from '../../src/assign/npy.js';
import { main } from '../../src/cli/main.js';
import { measureRecall, type RecallResult } from '../../src/recall/index.js';
import { runBatch, type RunSummary } from '../../src/batch/run.js';
import { silentLogger } from '../../src/runtime/logging.js';
import { createProgress } from '../../src/runtime/progress.js';
import { runConfigSchema } from '../../src/shared/config.js';
import { gaussian, makeRows, prng, readParquetRows, tempDir, writeRowsParquet } from '../helpers/fixtures.js';
import { referenceNormalize, referenceProbedDedup, sharesSet, type RefOptions, type RefRow } from '../helpers/reference.js';

const DIM = 8;
const { rows } = makeRows({ n: 300, dim: DIM, centers: 3, seed: 21, spread: 1.2 });
const rand = prng(5);
const centroids = Array.from({ length: 7 }, () => {
  const c = Array.from({ length: DIM }, () => gaussian(rand));
  const norm = Math.hypot(...c);
  return c.map((x) => (0.6 * x) / norm);
});

interface Run {
  dir: string;
  out: string;
  summary: RunSummary;
  pairwise: Map<string, { maxId: string; score: number }>;
}

async function writeInputs(data: RefRow[]): Promise<{ dir: string; input: string; centroidsPath: string }> {
  const dir = tempDir('semdedup-probe-');
  const input = join(dir, 'in.parquet');
  await writeRowsParquet(input, data);
  const centroidsPath = join(dir, 'centroids.npy');
  await writeNpy(centroidsPath, Float32Array.from(centroids.flat()), [centroids.length, DIM]);
  return { dir, input, centroidsPath };
}

async function run(flags: Record<string, unknown>, name = 'out', inputs?: { dir: string; input: string; centroidsPath: string }): Promise<Run> {
  const { dir, input, centroidsPath } = inputs ?? (await writeInputs(rows));
  const out = join(dir, name);
  const config = runConfigSchema.parse({ input: [input], output: out, centroids: centroidsPath, backend: 'js', metadataFields: ['duration_s', 'video'], ...flags });
  const summary = await runBatch(config, { logger: silentLogger(), progress: createProgress(false) });
  const got = await readParquetRows(join(out, 'pairwise_results', '*.parquet'));
  const pairwise = new Map(got.map((r) => [String(r.id), { maxId: String(r.max_id), score: r.cosine_sim_score as number }]));
  return { dir, out, summary, pairwise };
}

function expectEqualToReference(got: Run['pairwise'], ref: RefOptions & { probeMargin: number }): void {
  const expected = referenceProbedDedup(rows, ref);
  expect(got.size).toBe(rows.length);
  for (const [id, e] of expected) {
    const r = got.get(id)!;
    expect(r, `id ${id}`).toBeDefined();
    expect(r.maxId, `max_id of ${id}`).toBe(e.maxId);
    expect(Math.abs(r.score - e.score), `score of ${id}`).toBeLessThanOrEqual(1e-5);
  }
}

describe('multi-probe pairwise', () => {
  it('--probe 2 --probe-margin 0 equals --probe 1 (files and duplicates)', async () => {
    const inputs = await writeInputs(rows);
    const one = await run({ eps: 0.05 }, 'one', inputs);
    const two = await run({ eps: 0.05, probe: 2, probeMargin: 0 }, 'two', inputs);
    for (const k of centroids.keys()) {
      const a = await readParquetRows(join(one.out, 'pairwise_results', `cluster_${k}.parquet`)).catch(() => []);
      const b = await readParquetRows(join(two.out, 'pairwise_results', `cluster_${k}.parquet`)).catch(() => []);
      expect(b, `cluster ${k}`).toEqual(a);
    }
    expect(await readParquetRows(join(two.out, 'duplicates', '*.parquet'))).toEqual(await readParquetRows(join(one.out, 'duplicates', '*.parquet')));
    expect(two.summary.probe).toMatchObject({ probe: 2, probe_margin: 0, probed_clips: 0, extra_pairs: 0, pairs_ratio: 1 });
    expect(one.summary.probe).toBeUndefined();
    expect(two.summary.pairs_compared).toBe(one.summary.pairs_compared);
  });

  it.each([
    ['hard', {}, {}],
    ['easy', { whichToKeep: 'easy' as const }, { whichToKeep: 'easy' }],
    ['random', { whichToKeep: 'random' as const }, { whichToKeep: 'random' }],
    ['l2 hard', { distanceMetric: 'l2' as const }, { distanceMetric: 'l2' }],
    ['metadata', { ranking: [{ column: 'duration_s', order: 'desc' as const }, { column: 'video', order: 'asc' as const }] }, { ranking: 'duration_s:desc,video:asc' }],
  ])('ranking %s: --probe 2 equals the brute-force reference', async (_name, ref, flags) => {
    const r = await run({ ...flags, probe: 2, probeMargin: 0.1, pairwiseBatchSize: 13 });
    expectEqualToReference(r.pairwise, { centroids, probeMargin: 0.1, ...ref });
    expect(r.summary.probe!.probed_clips).toBeGreaterThan(rows.length / 4);
    expect(r.summary.probe!.extra_pairs).toBeGreaterThan(0);
    expect(r.summary.pairs_compared).toBe(r.summary.probe!.single_probe_pairs + r.summary.probe!.extra_pairs);
  });

  it('never misses a pair that a shared compared set covers: score(x) >= cos(x, y) for every y ranked before x sharing a set', async () => {
    const margin = 0.1;
    const r = await run({ probe: 2, probeMargin: margin, pairwiseBatchSize: 32 });
    // The run's own view of the sets and the global order, read back from its DuckDB tables.
    const clips = await readParquetRowsFromDb(r.out);
    const x = new Map(rows.map((row) => [row.id, referenceNormalize(row.embedding)]));
    const ref = referenceProbedDedup(rows, { centroids, probeMargin: margin });
    let checked = 0;
    for (const a of clips) {
      expect(a.probe, `probe of ${a.id}`).toBe(ref.get(a.id)!.probe);
      const score = r.pairwise.get(a.id)!.score;
      for (const b of clips) {
        if (b.globalPos >= a.globalPos || !sharesSet(a.centroid, a.probe, b.centroid, b.probe)) continue;
        let dot = 0;
        for (let t = 0; t < DIM; t++) dot += x.get(a.id)![t]! * x.get(b.id)![t]!;
        expect(score, `${a.id} vs ${b.id}`).toBeGreaterThanOrEqual(dot - 1e-6);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(10000);
  });
});

/** id, centroid, probe_centroid (-1 when none) and global_pos of every clip, from semdedup.duckdb. */
async function readParquetRowsFromDb(out: string): Promise<{ id: string; centroid: number; probe: number; globalPos: number; rankPos: number }[]> {
  const { Store } = await import('../../src/store/index.js');
  const store = await Store.open(join(out, 'semdedup.duckdb'));
  try {
    const found = await store.rows('SELECT id, centroid, coalesce(probe_centroid, -1) AS probe, global_pos, rank_pos FROM clips');
    return found.map((r) => ({ id: String(r.id), centroid: r.centroid as number, probe: r.probe as number, globalPos: r.global_pos as number, rankPos: r.rank_pos as number }));
  } finally {
    store.close();
  }
}

/**
 * Brute-force pair recall: every unordered pair with cos >= 1 - eps touching a clip of `sample`
 * (all clips when omitted), covered when the clips share a compared set.
 */
function bruteForceRecall(clips: Awaited<ReturnType<typeof readParquetRowsFromDb>>, eps: number, sample?: Set<string>) {
  const x = new Map(rows.map((row) => [row.id, referenceNormalize(row.embedding)]));
  let pairs = 0;
  let covered = 0;
  let same = 0;
  for (let i = 0; i < clips.length; i++) {
    for (let j = i + 1; j < clips.length; j++) {
      const a = clips[i]!;
      const b = clips[j]!;
      if (sample && !sample.has(a.id) && !sample.has(b.id)) continue;
      let dot = 0;
      for (let t = 0; t < DIM; t++) dot += x.get(a.id)![t]! * x.get(b.id)![t]!;
      if (Math.fround(dot) < 1 - eps) continue;
      pairs++;
      if (a.centroid === b.centroid) same++;
      if (sharesSet(a.centroid, a.probe, b.centroid, b.probe)) covered++;
    }
  }
  return { pairs, covered, same };
}

async function cli(args: string[]): Promise<{ code: number; stdout: string }> {
  let stdout = '';
  const out = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stdout += String(chunk);
    return true;
  });
  try {
    return { code: await main(args), stdout };
  } finally {
    out.mockRestore();
  }
}

describe('semdedup recall', () => {
  // eps 0.05: loose enough that pairs straddle cluster boundaries in this overlapping data.
  const EPS = 0.05;
  const MARGIN = 0.1;

  it('counts equal a brute-force count (all clips and a seeded sample), probe 2 recall >= probe 1, and the what-if predicts the probed run', async () => {
    const inputs = await writeInputs(rows);
    const one = await run({ eps: EPS }, 'one', inputs);
    const two = await run({ eps: EPS, probe: 2, probeMargin: MARGIN }, 'two', inputs);
    const results: RecallResult[] = [];
    for (const r of [one, two]) {
      const clips = await readParquetRowsFromDb(r.out);
      const all = await measureRecall(r.out, { sample: 10_000, backend: 'js', margins: [0, MARGIN], logger: silentLogger() });
      const want = bruteForceRecall(clips, EPS);
      expect(all).toMatchObject({ rows: rows.length, sample: rows.length, eps: EPS, pairs: want.pairs, covered: want.covered, covered_same_cluster: want.same, missed: want.pairs - want.covered });
      expect(all.recall).toBeCloseTo(want.covered / want.pairs, 12);
      expect(all.what_if[0]).toMatchObject({ probe_margin: 0, probed_fraction: 0 });
      expect(all.what_if[0]!.recall).toBeCloseTo(want.same / want.pairs, 12);
      results.push(all);

      // A seeded sample of 60: the picks are positions in (centroid, rank_pos) order.
      const partial = await measureRecall(r.out, { sample: 60, seed: 3, backend: 'js', logger: silentLogger() });
      const ordered = [...clips].sort((a, b) => a.centroid - b.centroid || a.rankPos - b.rankPos);
      const sample = new Set(Array.from(sampleSortedIndices(clips.length, 60, createRng(3, 7)), (i) => ordered[i]!.id));
      const wantPartial = bruteForceRecall(clips, EPS, sample);
      expect(partial).toMatchObject({ sample: 60, seed: 3, pairs: wantPartial.pairs, covered: wantPartial.covered });
    }
    const [r1, r2] = results as [RecallResult, RecallResult];
    expect(r1.pairs).toBe(r2.pairs);
    expect(r1.recall).toBeLessThan(1); // the data has pairs across boundaries
    expect(r2.recall).toBeGreaterThan(r1.recall);
    expect(r2.covered_by_probe).toBeGreaterThan(0);
    expect(r1.covered_by_probe).toBe(0);
    // The probe 1 run's what-if at the margin the probe 2 run used is that run's recall.
    expect(r1.what_if[1]!.recall).toBeCloseTo(r2.recall, 12);

    // --input (normalized like the run) gives the same numbers as kmeans_results.
    const fromInput = await measureRecall(one.out, { sample: 10_000, backend: 'js', input: [inputs.input], logger: silentLogger() });
    expect(fromInput).toMatchObject({ source: 'input', pairs: r1.pairs, covered: r1.covered });
  });

  it('the cpu kernel finds the same pairs; CLI --json, summary.json and inspect (text, --json, HTML) show the result', async () => {
    const r = await run({ eps: EPS, probe: 2, probeMargin: MARGIN });
    const js = await measureRecall(r.out, { sample: 10_000, backend: 'js', logger: silentLogger() });
    const { code, stdout } = await cli(['recall', '--output', r.out, '--sample', '10000', '--backend', 'cpu', '--json']);
    expect(code).toBe(0);
    const cpu = JSON.parse(stdout) as RecallResult;
    expect(cpu.backend).toBe('cpu');
    // float32 GEMM vs float64 sums: only pairs within 1e-6 of the threshold could differ; none here.
    expect(cpu).toMatchObject({ pairs: js.pairs, covered: js.covered, recall: js.recall, probe: 2, probe_margin: MARGIN });
    const summary = JSON.parse(readFileSync(join(r.out, 'summary.json'), 'utf8'));
    expect(summary.recall).toMatchObject({ pairs: js.pairs, covered: js.covered, backend: 'cpu' });
    expect(summary.probe).toMatchObject({ probe: 2, probe_margin: MARGIN });

    const text = await cli(['inspect', '--output', r.out]);
    expect(text.stdout).toContain(`pair recall (--probe 2 --probe-margin ${MARGIN}): ${(js.recall * 100).toFixed(2)}%`);
    const json = JSON.parse((await cli(['inspect', '--output', r.out, '--json'])).stdout);
    expect(json.recall).toMatchObject({ pairs: js.pairs, covered: js.covered });
    expect(json.metadata_columns).toEqual(['duration_s', 'video']);
    const reportPath = join(r.out, 'report.html');
    await cli(['inspect', '--output', r.out, '--report', reportPath]);
    const html = readFileSync(reportPath, 'utf8');
    expect(html).toContain('id="recall"');
    expect(html).toContain(`${(js.recall * 100).toFixed(2)}%`);
  });
});
