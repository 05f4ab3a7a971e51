/**
 * Nothing taken from the data forms a path: ids and metadata values that look like paths
 * (`../..`, absolute, with separators) stay values in the Parquet columns, and a run writes only
 * inside its output folder (and, while it runs, the partial-run folder beside it, removed after).
 * File names a run builds come from fixed names and integer cluster numbers only
 * (src/sinks/nemo-layout.ts: `kmeans_results/centroid=K`, `pairwise_results/cluster_K.parquet`).
 */
import { readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runBatch } from '../../src/batch/run.js';
import { silentLogger } from '../../src/runtime/logging.js';
import { createProgress } from '../../src/runtime/progress.js';
import { runConfigSchema } from '../../src/shared/config.js';
import { makeRows, readParquetRows, tempDir, writeRowsParquet } from '../helpers/fixtures.js';

function tree(root: string): string[] {
  const out: string[] = [];
  const visit = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      out.push(relative(root, p));
      if (e.isDirectory()) visit(p);
    }
  };
  visit(root);
  return out.sort();
}

describe('output paths are confined to the output folder', () => {
  it('path-like ids and metadata values are data, never file names', async () => {
    const dir = tempDir();
    const { rows } = makeRows({ n: 120, dim: 8, centers: 3, seed: 7 });
    const hostile = ['../../escaped', '/tmp/absolute-id', 'a/b/../../c', '..', '.', 'cluster_0.parquet', 'centroid=0', '..\\..\\win', '%2e%2e%2fenc'];
    hostile.forEach((id, i) => {
      rows[i]!.id = id;
      rows[i]!.meta = { ...rows[i]!.meta, video: `../../${id}` };
    });
    const input = join(dir, 'in.parquet');
    await writeRowsParquet(input, rows);
    const before = tree(dir);
    const out = join(dir, 'out');
    const config = runConfigSchema.parse({ input: [input], output: out, nClusters: 3, eps: 0.01, backend: 'js', metadataFields: ['video', 'duration_s'], ranking: 'video:desc,duration_s:asc' });
    await runBatch(config, { logger: silentLogger(), progress: createProgress(false) });

    const added = tree(dir).filter((p) => !before.includes(p));
    expect(added.length).toBeGreaterThan(0);
    for (const p of added) expect(p === 'out' || p.startsWith('out/'), p).toBe(true);
    const names = tree(out);
    for (const p of names) expect(p, p).toMatch(/^(kmeans_results(\/centroid=\d+(\/part-\d+\.parquet)?)?|pairwise_results(\/cluster_\d+\.parquet)?|duplicates(\/part-\d+\.parquet)?|kmeans_centroids\.npy|semdedup\.duckdb|summary\.json)$/);

    const ids = (await readParquetRows(join(out, 'pairwise_results', '*.parquet'))).map((r) => String(r.id));
    for (const id of hostile) expect(ids).toContain(id);
    const videos = (await readParquetRows(join(out, 'kmeans_results', '*', '*.parquet'))).map((r) => String(r.video));
    expect(videos).toContain('../../../../escaped');
  }, 60_000);
});
