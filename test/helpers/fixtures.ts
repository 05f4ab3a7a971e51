import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { mulberry32 } from '../../src/sources/sample.js';
import type { RefRow } from './reference.js';

export function tempDir(prefix = 'semdedup-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Seeded PRNG so fixtures are reproducible (the sample generator's mulberry32). */
export const prng = mulberry32;

export function gaussian(rand: () => number): number {
  return Math.sqrt(-2 * Math.log(rand() + 1e-12)) * Math.cos(2 * Math.PI * rand());
}

/**
 * Clustered rows with exact copies, near copies and single-point outliers; `spread` large gives
 * many negative similarities inside a cluster.
 */
export function makeRows(opts: { n: number; dim: number; centers: number; seed: number; spread?: number; intIds?: boolean }): { rows: RefRow[]; centers: number[][] } {
  const rand = prng(opts.seed);
  const centers = Array.from({ length: opts.centers }, () => Array.from({ length: opts.dim }, () => gaussian(rand)));
  const rows: RefRow[] = [];
  for (let i = 0; i < opts.n; i++) {
    const id = opts.intIds ? String(1000 + ((i * 7919) % 100003)) : `clip-${String(i).padStart(5, '0')}`;
    let embedding: number[];
    if (i > 3 && rand() < 0.15) embedding = [...rows[Math.floor(rand() * rows.length)]!.embedding]; // exact copy
    else if (i > 3 && rand() < 0.15) embedding = rows[Math.floor(rand() * rows.length)]!.embedding.map((x) => x + 1e-3 * gaussian(rand));
    else {
      const c = centers[Math.floor(rand() * centers.length)]!;
      embedding = c.map((x) => x + (opts.spread ?? 0.6) * gaussian(rand));
    }
    rows.push({ id, embedding, meta: { duration_s: Math.round(rand() * 20) / 2, video: `v${Math.floor(rand() * 5)}` } });
  }
  return { rows, centers };
}

/** Write rows to Parquet with DuckDB (an independent writer), embedding as FLOAT[dim] or DOUBLE[]. */
export async function writeRowsParquet(path: string, rows: RefRow[], opts: { intIds?: boolean; embeddingType?: 'fixed-float' | 'list-double' } = {}): Promise<void> {
  const jsonl = `${path}.jsonl`;
  writeFileSync(jsonl, rows.map((r) => JSON.stringify({ id: r.id, embedding: r.embedding, ...r.meta })).join('\n') + '\n');
  const dim = rows[0]!.embedding.length;
  const embType = opts.embeddingType === 'list-double' ? 'DOUBLE[]' : `FLOAT[${dim}]`;
  const idExpr = opts.intIds ? 'id::BIGINT' : 'id::VARCHAR';
  const db = await DuckDBInstance.create(':memory:');
  const conn = await db.connect();
  try {
    await conn.run(
      `COPY (SELECT ${idExpr} AS id, embedding::${embType} AS embedding, duration_s::DOUBLE AS duration_s, video::VARCHAR AS video
             FROM read_json('${jsonl}', format='newline_delimited', columns={id: 'VARCHAR', embedding: 'DOUBLE[]', duration_s: 'DOUBLE', video: 'VARCHAR'}))
       TO '${path}' (FORMAT parquet, ROW_GROUP_SIZE 64)`,
    );
  } finally {
    conn.closeSync();
    db.closeSync();
  }
}

/** Read a Parquet file/glob with DuckDB into row objects. */
export async function readParquetRows(glob: string, orderBy = ''): Promise<Record<string, unknown>[]> {
  const db = await DuckDBInstance.create(':memory:');
  const conn = await db.connect();
  try {
    const reader = await conn.runAndReadAll(`SELECT * FROM read_parquet('${glob}', hive_partitioning=false) ${orderBy}`);
    return reader.getRowObjectsJS() as Record<string, unknown>[];
  } finally {
    conn.closeSync();
    db.closeSync();
  }
}
