/**
 * Reading written Parquet back for the writer tests: through parquet-wasm as an Arrow table,
 * column values as plain JS, and our sources' raw batches as rows; a scratch folder and an
 * in-memory DuckDB connection per test file.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import type { DuckDBConnection } from '@duckdb/node-api';
import { afterAll, beforeAll } from 'vitest';
import * as pw from 'parquet-wasm';
import { Bool, Float32, Float64, Int32, Int64, Utf8, tableFromIPC } from 'apache-arrow';
import type { Table } from 'apache-arrow';
import type { ColumnSpec } from '../../src/sinks/parquet/index.js';
import type { RawClipBatch } from '../../src/shared/types.js';

/** The whole file through parquet-wasm. */
export async function readArrow(file: string): Promise<Table> {
  const pf = await pw.ParquetFile.fromFile(new Blob([await readFile(file)]));
  try {
    return tableFromIPC((await pf.read()).intoIPCStream());
  } finally {
    pf.free();
  }
}

/** Column values as plain JS (typed rows as arrays) for deep comparison. */
export function columnValues(t: Table, name: string): unknown[] {
  const out: unknown[] = [];
  const col = t.getChild(name)!;
  for (let i = 0; i < col.length; i++) {
    const v = col.get(i) as unknown;
    out.push(v !== null && typeof v === 'object' && 'toArray' in v ? Array.from((v as { toArray(): ArrayLike<unknown> }).toArray()) : v);
  }
  return out;
}

/** Rows [id, embedding | null, ...metadata] of a source's raw batches. */
export async function collect(gen: AsyncGenerator<RawClipBatch>): Promise<unknown[]> {
  const rows: unknown[] = [];
  for await (const b of gen) {
    for (let i = 0; i < b.ids.length; i++) {
      rows.push([b.ids[i], b.embeddingNull[i] ? null : Array.from(b.values.subarray(b.offsets[i]!, b.offsets[i + 1]!)), ...Object.values(b.metadata).map((v) => v[i])]);
    }
  }
  return rows;
}

/**
 * A scratch folder (`prefix` in the temp dir) and an in-memory DuckDB connection (2 threads) for
 * the calling test file, made before its tests and removed after them.
 */
export function parquetScratch(prefix: string): { readonly dir: string; readonly connection: DuckDBConnection; path(...parts: string[]): string } {
  let dir = '';
  let instance: DuckDBInstance | null = null;
  let connection: DuckDBConnection | null = null;
  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), prefix));
    instance = await DuckDBInstance.create(':memory:', { threads: '2' });
    connection = await instance.connect();
  });
  afterAll(() => {
    connection?.closeSync();
    instance?.closeSync();
    rmSync(dir, { recursive: true, force: true });
  });
  return {
    get dir() {
      return dir;
    },
    get connection() {
      return connection!;
    },
    path: (...parts) => path.join(dir, ...parts),
  };
}

/**
 * n rows of each column type both writers take, with nulls (and ids and int64s at the edges):
 * `id`, the `embedding` (n × d `emb`, second), fixed types, then `m_*` metadata by Arrow type.
 */
export function mixedColumns(n: number, d: number, emb: Float32Array): ColumnSpec[] {
  return [
    { name: 'id', type: 'utf8', values: Array.from({ length: n }, (_, i) => (i === 7 ? null : i % 3 ? `clip-${i}` : `a-long-identifier-é-${i}-${'q'.repeat(i % 50)}`)) },
    { name: 'embedding', type: 'fixed-list-float32', values: emb, listSize: d, nulls: Uint8Array.from({ length: n }, (_, i) => (i === 3000 ? 1 : 0)) },
    { name: 'num_id', type: 'int64', values: Array.from({ length: n }, (_, i) => (i === 2 ? null : String(BigInt(i) * 4611686018427387n - 2n ** 62n))) },
    { name: 'num_id2', type: 'int64', values: BigInt64Array.from({ length: n }, (_, i) => BigInt(-i)) },
    { name: 'centroid', type: 'int32', values: new Int32Array(n).fill(41) },
    { name: 'l2_dist_to_cent', type: 'float32', values: Float32Array.from({ length: n }, (_, i) => i / 9), nulls: Uint8Array.from({ length: n }, (_, i) => (i === 2049 ? 1 : 0)) },
    { name: 'score64', type: 'float64', values: Array.from({ length: n }, (_, i) => (i === 5 ? null : i / 7)) },
    { name: 'flag', type: 'bool', values: Array.from({ length: n }, (_, i) => (i === 1 ? null : i % 3 === 0)) },
    { name: 'm_utf8', type: { arrow: new Utf8() }, values: Array.from({ length: n }, (_, i) => (i % 5 ? `v${i % 13}` : null)) },
    { name: 'm_int64', type: { arrow: new Int64() }, values: Array.from({ length: n }, (_, i) => (i % 6 ? BigInt(i) * 10000000000n : null)) },
    { name: 'm_float64', type: { arrow: new Float64() }, values: Array.from({ length: n }, (_, i) => (i % 7 ? i * 0.5 : null)) },
    { name: 'm_bool', type: { arrow: new Bool() }, values: Array.from({ length: n }, (_, i) => (i % 8 ? i % 2 === 1 : null)) },
    { name: 'm_int32', type: { arrow: new Int32() }, values: Array.from({ length: n }, (_, i) => (i % 9 ? -i : null)) },
    { name: 'm_float32', type: { arrow: new Float32() }, values: Array.from({ length: n }, (_, i) => (i % 10 ? Math.fround(i / 3) : null)) },
  ];
}
