import { join } from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { writeNpy } from '../../src/assign/npy.js';
import { runBatch } from '../../src/batch/run.js';
import { runReplay } from '../../src/replay/run.js';
import { silentLogger } from '../../src/runtime/logging.js';
import { createProgress } from '../../src/runtime/progress.js';
import { replayConfigSchema, runConfigSchema } from '../../src/shared/config.js';
import { makeRows, prng, readParquetRows, tempDir, writeRowsParquet } from '../helpers/fixtures.js';
import type { RefRow } from '../helpers/reference.js';
import { batchDuplicates, brokersFromEnv, latestVerdicts, produce, shuffled, stream, uniqueName, verdictDifferences, writeCentroids, writeFixture } from '../helpers/stream.js';

const quiet = { logger: silentLogger(), progress: createProgress(false) };

async function writeParts(dir: string, rows: RefRow[], parts: number, seed: number): Promise<string[]> {
  const rand = prng(seed);
  const shuffled = [...rows].sort(() => rand() - 0.5);
  const files: string[] = [];
  for (let p = 0; p < parts; p++) {
    const file = join(dir, `part-${p}.parquet`);
    await writeRowsParquet(file, shuffled.filter((_, i) => i % parts === p));
    files.push(file);
  }
  return files;
}

async function pairwiseById(out: string) {
  const rows = await readParquetRows(join(out, 'pairwise_results', '*.parquet'));
  return new Map(rows.map((r) => [String(r.id), { maxId: String(r.max_id), score: r.cosine_sim_score as number }]));
}

function expectSameResults(a: Map<string, { maxId: string; score: number }>, b: Map<string, { maxId: string; score: number }>) {
  expect(b.size).toBe(a.size);
  for (const [id, v] of a) {
    const w = b.get(id);
    expect(w, id).toBeDefined();
    expect(w!.maxId, `max_id of ${id}`).toBe(v.maxId);
    expect(Math.abs(w!.score - v.score), `score of ${id}`).toBeLessThanOrEqual(1e-5);
  }
}

describe('replay equals run', () => {
  const { rows, centers } = makeRows({ n: 300, dim: 16, centers: 5, seed: 21 });

  it.each([
    ['hard', {}],
    ['easy', { whichToKeep: 'easy' }],
    ['random', { whichToKeep: 'random' }],
    ['l2', { distanceMetric: 'l2' }],
    ['metadata', { ranking: 'duration_s:desc,video:asc' }],
  ])('%s ranking, shuffled files, small flushes', async (_name, ranking) => {
    const dir = tempDir();
    const files = await writeParts(dir, rows, 3, 9);
    const centroids = join(dir, 'c.npy');
    writeNpy(centroids, Float32Array.from(centers.flat()), [centers.length, 16]);
    const common = { centroids, eps: 0.02, backend: 'cpu', metadataFields: ['duration_s', 'video'], ...ranking };
    await runBatch(runConfigSchema.parse({ input: files, output: join(dir, 'run'), ...common }), quiet);
    // Files in reverse order, tiny batches and flushes: the result must not depend on them.
    await runReplay(replayConfigSchema.parse({ input: [...files].reverse(), output: join(dir, 'replay'), batchRows: 7, flushMaxRows: 5, ...common }), quiet);
    expectSameResults(await pairwiseById(join(dir, 'run')), await pairwiseById(join(dir, 'replay')));
    const dupRun = await readParquetRows(join(dir, 'run', 'duplicates', '*.parquet'));
    const dupReplay = await readParquetRows(join(dir, 'replay', 'duplicates', '*.parquet'));
    expect(dupReplay.map((r) => r.id)).toEqual(dupRun.map((r) => r.id));
    expect(dupRun.length).toBeGreaterThan(5);
    const kmRun = await readParquetRows(join(dir, 'run', 'kmeans_results', '*', '*.parquet'), 'ORDER BY id');
    const kmReplay = await readParquetRows(join(dir, 'replay', 'kmeans_results', '*', '*.parquet'), 'ORDER BY id');
    expect(kmReplay.map((r) => [r.id, r.centroid, r.cosine_dist_to_cent, r.l2_dist_to_cent, r.video])).toEqual(kmRun.map((r) => [r.id, r.centroid, r.cosine_dist_to_cent, r.l2_dist_to_cent, r.video]));
  });

  it('a replayed state continued with new clips equals run over old + new', async () => {
    const dir = tempDir();
    const [oldFile, newFile] = [join(dir, 'old.parquet'), join(dir, 'new.parquet')];
    await writeRowsParquet(oldFile, rows.slice(0, 180));
    await writeRowsParquet(newFile, rows.slice(180));
    const centroids = join(dir, 'c.npy');
    writeNpy(centroids, Float32Array.from(centers.flat()), [centers.length, 16]);
    const state = join(dir, 'state');
    await runReplay(replayConfigSchema.parse({ input: [oldFile], output: join(dir, 'r1'), centroids, state, eps: 0.02 }), quiet);
    const second = await runReplay(replayConfigSchema.parse({ input: [newFile], output: join(dir, 'r2'), centroids, state, eps: 0.02 }), quiet);
    expect(second.clips_in_state).toBe(rows.length);
    await runBatch(runConfigSchema.parse({ input: [oldFile, newFile], output: join(dir, 'run'), centroids, eps: 0.02 }), quiet);
    expectSameResults(await pairwiseById(join(dir, 'run')), await pairwiseById(join(dir, 'r2')));
    // The same state refuses other centroids.
    const other = join(dir, 'other.npy');
    writeNpy(other, Float32Array.from(centers.flat().map((x) => x + 1)), [centers.length, 16]);
    await expect(runReplay(replayConfigSchema.parse({ input: [newFile], output: join(dir, 'r3'), centroids: other, state, eps: 0.02 }), quiet)).rejects.toThrow(/centroidsChecksum/);
  });
});

describe('replay with Kafka', () => {
  const brokers = brokersFromEnv(inject('kafkaBrokers'));

  it('--from-topic replays a topic (JSON and Arrow records, 4 partitions, shuffled) to the run result', async () => {
    const { rows, centers } = makeRows({ n: 260, dim: 16, centers: 4, seed: 44 });
    const dir = tempDir();
    const all = await writeFixture(dir, 'all', rows);
    const centroids = writeCentroids(dir, centers);
    const topic = uniqueName('history');
    await produce(brokers, await writeFixture(dir, 'a', shuffled(rows.slice(0, 130), 1)), topic, 'json');
    await produce(brokers, await writeFixture(dir, 'b', shuffled(rows.slice(130), 2)), topic, 'arrow');
    const eps = 0.02;
    const summary = await runReplay(replayConfigSchema.parse({ fromTopic: topic, brokers, output: join(dir, 'replayed'), centroids, eps, metadataFields: ['duration_s', 'video'] }), quiet);
    expect(summary).toMatchObject({ rows: 260, clips_in_state: 260, rejected_rows: 0 });
    await runBatch(runConfigSchema.parse({ input: [all], output: join(dir, 'run'), centroids, eps, metadataFields: ['duration_s', 'video'] }), quiet);
    expectSameResults(await pairwiseById(join(dir, 'run')), await pairwiseById(join(dir, 'replayed')));
    const km = await readParquetRows(join(dir, 'replayed', 'kmeans_results', '*', '*.parquet'), 'ORDER BY id');
    expect(km.length).toBe(260);
    expect(typeof km[0]!.duration_s).toBe('number');
  });

  it('--output-topic publishes the duplicate verdicts; their latest values equal the run duplicates', async () => {
    const { rows, centers } = makeRows({ n: 240, dim: 16, centers: 4, seed: 45 });
    const dir = tempDir();
    const parts = await writeParts(dir, rows, 3, 7);
    const all = await writeFixture(dir, 'all', rows);
    const centroids = writeCentroids(dir, centers);
    const outputTopic = uniqueName('replay-dups');
    const eps = 0.02;
    const summary = await runReplay(replayConfigSchema.parse({ input: parts, output: join(dir, 'replayed'), centroids, eps, outputTopic, brokers, flushMaxRows: 16, batchRows: 50 }), quiet);
    expect(summary.verdicts_published).toBeGreaterThan(0);
    const expected = await batchDuplicates(all, join(dir, 'batch'), centroids, eps);
    expect(expected.size).toBeGreaterThan(5);
    expect(verdictDifferences(await latestVerdicts(brokers, outputTopic), expected)).toEqual([]);
  });

  it('history replayed into a state, continued by `semdedup stream` on new clips, equals run over old + new', async () => {
    const { rows, centers } = makeRows({ n: 320, dim: 16, centers: 4, seed: 33 });
    const dir = tempDir();
    const old = await writeFixture(dir, 'old', rows.slice(0, 200));
    const fresh = await writeFixture(dir, 'fresh', shuffled(rows.slice(200), 4));
    const all = await writeFixture(dir, 'all', rows);
    const centroids = writeCentroids(dir, centers);
    const state = join(dir, 'state');
    const eps = 0.02;
    await runReplay(replayConfigSchema.parse({ input: [old], output: join(dir, 'history'), centroids, state, eps, metadataFields: ['duration_s', 'video'] }), quiet);
    const inputTopic = uniqueName('clips');
    const outputTopic = uniqueName('dups');
    await produce(brokers, fresh, inputTopic, 'arrow');
    const summary = await stream(brokers, { inputTopic, outputTopic, group: uniqueName('group'), centroids, state, eps, flushMaxRows: 32 });
    expect(summary).toMatchObject({ clipsIn: 120, stateSize: 320 });
    const expected = await batchDuplicates(all, join(dir, 'batch'), centroids, eps);
    const history = await readParquetRows(join(dir, 'history', 'duplicates', '*.parquet'));
    const published = await latestVerdicts(brokers, outputTopic);
    // The stream publishes what the new clips changed; with the history's duplicates that is the batch answer.
    for (const id of expected.keys()) expect(published.has(id) || history.some((h) => String(h.id) === id), id).toBe(true);
    for (const [id, v] of published) {
      const e = expected.get(id);
      expect(e, id).toBeDefined();
      expect(v.maxId).toBe(e!.maxId);
      expect(Math.abs(v.score - e!.score)).toBeLessThanOrEqual(1e-5);
    }
  });
});
