/**
 * `--probe 2` in replay and stream: after any arrival order, the result equals `run --probe 2` on
 * the same clips and centroids (data whose clusters overlap: 7 centroids over 3 wide blobs, so a
 * good share of clips is probed into a second cluster). Also with a state memory budget so small
 * that cluster states are evicted and reloaded all the time.
 */
import { join } from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { writeNpy } from '../../src/assign/npy.js';
import { runBatch, type RunSummary } from '../../src/batch/run.js';
import { runReplay } from '../../src/replay/run.js';
import { silentLogger } from '../../src/runtime/logging.js';
import { createProgress } from '../../src/runtime/progress.js';
import { replayConfigSchema, runConfigSchema } from '../../src/shared/config.js';
import { gaussian, makeRows, prng, readParquetRows, tempDir, writeRowsParquet } from '../helpers/fixtures.js';
import type { RefRow } from '../helpers/reference.js';
import { batchDuplicates, brokersFromEnv, latestVerdicts, produce, shuffled, stream, uniqueName, verdictDifferences, writeFixture } from '../helpers/stream.js';

const quiet = { logger: silentLogger(), progress: createProgress(false) };
const DIM = 8;
const EPS = 0.05;
const MARGIN = 0.1;
const { rows } = makeRows({ n: 300, dim: DIM, centers: 3, seed: 21, spread: 1.2 });
const rand = prng(5);
const centers = Array.from({ length: 7 }, () => {
  const c = Array.from({ length: DIM }, () => gaussian(rand));
  const norm = Math.hypot(...c);
  return c.map((x) => (0.6 * x) / norm);
});

type ById = Map<string, { maxId: string; score: number }>;

async function pairwiseById(out: string): Promise<ById> {
  const got = await readParquetRows(join(out, 'pairwise_results', '*.parquet'));
  return new Map(got.map((r) => [String(r.id), { maxId: String(r.max_id), score: r.cosine_sim_score as number }]));
}

function differences(expected: ById, got: ById): string[] {
  const problems: string[] = [];
  if (got.size !== expected.size) problems.push(`${got.size} clips, expected ${expected.size}`);
  for (const [id, e] of expected) {
    const g = got.get(id);
    if (!g) problems.push(`missing ${id}`);
    else if (g.maxId !== e.maxId || Math.abs(g.score - e.score) > 1e-5) problems.push(`${id}: got ${g.maxId} ${g.score}, expected ${e.maxId} ${e.score}`);
  }
  return problems;
}

async function writeParts(dir: string, data: RefRow[], parts: number, seed: number): Promise<string[]> {
  const mixed = shuffled(data, seed);
  const files: string[] = [];
  for (let p = 0; p < parts; p++) {
    const file = join(dir, `part-${p}.parquet`);
    await writeRowsParquet(file, mixed.filter((_, i) => i % parts === p));
    files.push(file);
  }
  return files;
}

function writeCentroidsNpy(dir: string): string {
  const path = join(dir, 'centroids.npy');
  writeNpy(path, Float32Array.from(centers.flat()), [centers.length, DIM]);
  return path;
}

const rankings: [string, Record<string, unknown>][] = [
  ['hard', {}],
  ['easy', { whichToKeep: 'easy' }],
  ['metadata', { ranking: 'duration_s:desc,video:asc' }],
];

describe('replay --probe 2 equals run --probe 2', () => {
  it.each(rankings)('%s ranking: shuffled files, tiny batches and flushes', async (_name, ranking) => {
    const dir = tempDir('semdedup-probe-replay-');
    const files = await writeParts(dir, rows, 3, 9);
    const centroids = writeCentroidsNpy(dir);
    const common = { centroids, eps: EPS, backend: 'cpu', metadataFields: ['duration_s', 'video'], probe: 2, probeMargin: MARGIN, ...ranking };
    const run = await runBatch(runConfigSchema.parse({ input: files, output: join(dir, 'run'), ...common }), quiet);
    expect(run.probe!.probed_clips).toBeGreaterThan(30);
    const one = await runBatch(runConfigSchema.parse({ input: files, output: join(dir, 'run1'), ...common, probe: 1 }), quiet);
    await runReplay(replayConfigSchema.parse({ input: [...files].reverse(), output: join(dir, 'replay'), batchRows: 7, flushMaxRows: 5, ...common }), quiet);
    const expected = await pairwiseById(join(dir, 'run'));
    expect(differences(expected, await pairwiseById(join(dir, 'replay')))).toEqual([]);
    // Probing changed some verdicts, so the equality says something.
    expect(differences(expected, await pairwiseById(join(dir, 'run1'))).length).toBeGreaterThan(0);
    expect(await duplicateIds(join(dir, 'replay'))).toEqual(await duplicateIds(join(dir, 'run')));
    expect(dupCount(one)).toBeLessThan(dupCount(run));
    const km = (out: string) => readParquetRows(join(out, 'kmeans_results', '*', '*.parquet'), 'ORDER BY id');
    const kmRun = await km(join(dir, 'run'));
    expect((await km(join(dir, 'replay'))).map((r) => [r.id, r.centroid, r.cosine_dist_to_cent])).toEqual(kmRun.map((r) => [r.id, r.centroid, r.cosine_dist_to_cent]));
  });

  it('a tiny --state-memory-mb (states evicted and reloaded all the time) gives the same result; a state continued equals run over old + new', async () => {
    const dir = tempDir('semdedup-probe-budget-');
    const files = await writeParts(dir, rows, 3, 4);
    const centroids = writeCentroidsNpy(dir);
    const common = { centroids, eps: EPS, backend: 'cpu', metadataFields: ['duration_s', 'video'], probe: 2, probeMargin: MARGIN };
    await runBatch(runConfigSchema.parse({ input: files, output: join(dir, 'run'), ...common }), quiet);
    const expected = await pairwiseById(join(dir, 'run'));
    // 0.002 MiB ≈ 2 kB: one or two small cluster states at a time.
    await runReplay(replayConfigSchema.parse({ input: files, output: join(dir, 'budget'), batchRows: 11, flushMaxRows: 4, stateMemoryMb: 0.002, ...common }), quiet);
    expect(differences(expected, await pairwiseById(join(dir, 'budget')))).toEqual([]);
    // Continued in three steps through one state folder with the tiny budget.
    const state = join(dir, 'state');
    for (const [i, f] of files.entries()) {
      await runReplay(replayConfigSchema.parse({ input: [f], output: join(dir, `step-${i}`), state, batchRows: 13, flushMaxRows: 6, stateMemoryMb: 0.002, ...common }), quiet);
    }
    expect(differences(expected, await pairwiseById(join(dir, 'step-2')))).toEqual([]);
    // The state refuses other probe settings.
    await expect(runReplay(replayConfigSchema.parse({ input: [files[0]!], output: join(dir, 'other'), state, ...common, probe: 1 }), quiet)).rejects.toThrow(/probe/);
  });
});

async function duplicateIds(out: string): Promise<string[]> {
  return (await readParquetRows(join(out, 'duplicates', '*.parquet'))).map((r) => String(r.id));
}

function dupCount(s: RunSummary): number {
  return s.duplicates ?? 0;
}

const brokers = brokersFromEnv(inject('kafkaBrokers'));

describe.skipIf(brokers.length === 0)('stream --probe 2 on a real broker equals run --probe 2', () => {
  it.each([...rankings.slice(0, 2), ['hard, tiny state budget', { stateMemoryMb: 0.002 }] as [string, Record<string, unknown>]])(
    '%s: 4 partitions, shuffled, small checkpoints',
    async (_name, flags) => {
      const dir = tempDir('semdedup-probe-stream-');
      const all = await writeFixture(dir, 'all', rows);
      const centroids = writeCentroidsNpy(dir);
      const { stateMemoryMb, ...ranking } = flags as Record<string, unknown> & { stateMemoryMb?: number };
      const expected = await batchDuplicates(all, join(dir, 'batch'), centroids, EPS, { probe: 2, probeMargin: MARGIN, ...ranking });
      const single = await batchDuplicates(all, join(dir, 'batch1'), centroids, EPS, ranking);
      expect(expected.size).toBeGreaterThan(single.size);
      const inputTopic = uniqueName('probe-clips');
      await produce(brokers, await writeFixture(dir, 'shuffled', shuffled(rows, 7)), inputTopic, 'arrow', { batchRows: 16 });
      const outputTopic = uniqueName('probe-dups');
      const settings = { inputTopic, outputTopic, group: uniqueName('group'), centroids, state: join(dir, 'state'), eps: EPS, flushMaxRows: 23, probe: 2, probeMargin: MARGIN, ...flags };
      const summary = await stream(brokers, settings);
      expect(summary).toMatchObject({ clipsIn: rows.length, deadLetters: 0, stateSize: rows.length });
      expect(summary.checkpoints).toBeGreaterThan(1);
      expect(verdictDifferences(await latestVerdicts(brokers, outputTopic), expected)).toEqual([]);
      if (stateMemoryMb !== undefined) {
        // Restart on the same state with the group's offsets reset: the state is ahead of the
        // commits, so every duplicate verdict is re-published from the store (states not resident).
        const again = uniqueName('probe-dups-again');
        const second = await stream(brokers, { ...settings, outputTopic: again, group: uniqueName('group') });
        expect(second.verdictsRepublished).toBe(expected.size);
        expect(verdictDifferences(await latestVerdicts(brokers, again), expected)).toEqual([]);
      }
    },
  );
});
