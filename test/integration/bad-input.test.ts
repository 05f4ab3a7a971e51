import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { main } from '../../src/cli/main.js';
import { makeRows, readParquetRows, tempDir, writeRowsParquet } from '../helpers/fixtures.js';

/** Run the CLI in-process, capturing stderr/stdout. */
async function cli(args: string[]): Promise<{ code: number; stderr: string; stdout: string }> {
  let stderr = '';
  let stdout = '';
  const errSpy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => ((stderr += String(chunk)), true));
  const outSpy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => ((stdout += String(chunk)), true));
  try {
    const code = await main(args);
    return { code, stderr, stdout };
  } finally {
    errSpy.mockRestore();
    outSpy.mockRestore();
  }
}

describe('bad input: clear one-line errors, nothing lost, no partial outputs', () => {
  let dir: string;
  beforeEach(() => {
    dir = tempDir();
    process.env.SEMDEDUP_LOG_LEVEL = 'silent';
  });
  afterEach(() => {
    delete process.env.SEMDEDUP_LOG_LEVEL;
  });

  const runArgs = (input: string, out = join(dir, 'out')) => ['run', '--input', input, '--output', out, '--n-clusters', '2', '--eps', '0.01', '--backend', 'js'];

  it('a missing path exits 2 naming it', async () => {
    const r = await cli(runArgs(join(dir, 'nope.parquet')));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/nope\.parquet/);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });

  it('a file that is not Parquet exits 2 naming the file, and leaves no outputs', async () => {
    const bad = join(dir, 'bad.parquet');
    writeFileSync(bad, 'this is not parquet');
    const r = await cli(runArgs(bad));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/bad\.parquet/);
    const out = join(dir, 'out');
    expect(existsSync(out) ? readdirSync(out) : []).toEqual([]);
  });

  it('a missing embedding column exits 2 naming the column', async () => {
    const { rows } = makeRows({ n: 10, dim: 4, centers: 1, seed: 1 });
    const file = join(dir, 'x.parquet');
    await writeRowsParquet(file, rows);
    const r = await cli([...runArgs(file), '--embedding-field', 'vector']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/vector/);
  });

  it('bad rows go to rejected/ with a reason and are counted; the run goes on', async () => {
    const lines = [
      { id: 'a', embedding: [1, 0, 0] },
      { id: 'b', embedding: [0.9, 0.1, 0] },
      { id: 'c', embedding: [0, 0, 0] },
      { id: 'd', embedding: [1, 'NaN', 0] },
      { id: 'e', embedding: [1, 0] },
      { id: null, embedding: [0, 1, 0] },
      { id: 'a', embedding: [0, 1, 0] },
      { id: 'f', embedding: [0, 1, 0.1] },
    ];
    const file = join(dir, 'clips.jsonl');
    writeFileSync(file, lines.map((l) => JSON.stringify(l)).join('\n') + '\nnot json at all\n');
    const r = await cli([...runArgs(file), '--json']);
    expect(r.code, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout);
    expect(summary.rows).toBe(3);
    expect(summary.rejected_rows).toBe(6);
    const rejected = await readParquetRows(join(dir, 'out', 'rejected', '*.parquet'));
    const reasons = rejected.map((x) => String(x.reason)).join('\n');
    for (const pattern of [/zero vector/, /non-number/, /dimension/, /id is null/, /duplicate id a/, /JSON/i]) expect(reasons).toMatch(pattern);
    expect(rejected.filter((x) => x.source_file !== null).length).toBe(6);
  });

  it('NaN and Inf in a Parquet embedding are refused rows', async () => {
    const file = join(dir, 'nan.parquet');
    const db = await DuckDBInstance.create(':memory:');
    const conn = await db.connect();
    await conn.run(`COPY (SELECT * FROM (VALUES ('a', [1, 0, 0]::FLOAT[3]), ('b', [1, 'nan'::FLOAT, 0]::FLOAT[3]), ('c', [0, 'inf'::FLOAT, 1]::FLOAT[3]), ('d', [0, 1, 0]::FLOAT[3])) t(id, embedding)) TO '${file}' (FORMAT parquet)`);
    conn.closeSync();
    db.closeSync();
    const r = await cli([...runArgs(file), '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ rows: 2, rejected_rows: 2 });
    const rejected = await readParquetRows(join(dir, 'out', 'rejected', '*.parquet'), 'ORDER BY id');
    expect(rejected.map((x) => [x.id, x.source_row])).toEqual([['b', 1], ['c', 2]]);
    expect(String(rejected[0]!.reason)).toMatch(/NaN/);
    expect(String(rejected[1]!.reason)).toMatch(/Inf/);
  });

  it('an invalid config names the field', async () => {
    const cfg = join(dir, 'c.yaml');
    writeFileSync(cfg, 'which-to-keep: sometimes\nn-clusters: 3\n');
    const r = await cli(['run', '--config', cfg, '--input', 'x', '--output', join(dir, 'o')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/which-to-keep/);
  });

  it('an existing output is refused with --no-clear-output and replaced by default', async () => {
    const { rows } = makeRows({ n: 40, dim: 4, centers: 2, seed: 2 });
    const file = join(dir, 'x.parquet');
    await writeRowsParquet(file, rows);
    expect((await cli(runArgs(file))).code).toBe(0);
    const refused = await cli([...runArgs(file), '--no-clear-output']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/already holds results/);
    expect((await cli(runArgs(file))).code).toBe(0);
    expect(readdirSync(join(dir, 'out')).sort()).toEqual(['duplicates', 'kmeans_centroids.npy', 'kmeans_results', 'pairwise_results', 'semdedup.duckdb', 'summary.json']);
  });
});
