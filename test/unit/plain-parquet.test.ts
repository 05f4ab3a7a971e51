/**
 * `writePlainParquetFile` writes what `writeParquetFile` writes: the same Arrow schema and values
 * read back by parquet-wasm, by our two sources and by DuckDB; unsupported types fall back.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Bool, Float32, Float64, Int32, Int64, TimeUnit, Timestamp, Utf8 } from 'apache-arrow';
import { DuckDBInstance } from '@duckdb/node-api';
import type { DuckDBConnection } from '@duckdb/node-api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { plainParquetSupports, writeParquetFast, writePlainParquetFile } from '../../src/sinks/plain-parquet.js';
import { writeParquetFile } from '../../src/sinks/parquet/index.js';
import type { ColumnSpec } from '../../src/sinks/parquet/index.js';
import { iterateRawBatches } from '../../src/sources/index.js';
import { iterateDuckDbRawBatches } from '../../src/sources/duckdb/index.js';
import { collect, columnValues, readArrow } from '../helpers/parquet-readback.js';

let dir: string;
let instance: DuckDBInstance;
let connection: DuckDBConnection;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'semdedup-plain-parquet-'));
  instance = await DuckDBInstance.create(':memory:', { threads: '2' });
  connection = await instance.connect();
});
afterAll(() => {
  connection.closeSync();
  instance.closeSync();
  rmSync(dir, { recursive: true, force: true });
});

const p = (name: string): string => path.join(dir, name);

const duckRows = async (file: string): Promise<unknown[]> =>
  (await connection.runAndReadAll(`SELECT * FROM read_parquet('${file}')`)).getRowsJS();

describe('writePlainParquetFile', () => {
  it('round trip: same Arrow schema and values as writeParquetFile, across pages and row groups, with nulls', async () => {
    const n = 4500;
    const d = 8;
    const emb = Float32Array.from({ length: n * d }, (_, i) => Math.cos(i * 0.01));
    const columns: ColumnSpec[] = [
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
    expect(plainParquetSupports(columns)).toBe(true);
    const plainFile = path.join(dir, 'out', 'plain.parquet');
    const wasmFile = p('wasm.parquet');
    // Small pages and row groups: every column spans several of each.
    const result = await writePlainParquetFile(plainFile, columns, { rowGroupRows: 1000, pageBytes: 700 });
    expect(result).toMatchObject({ path: plainFile, rows: n });
    expect(result.bytes).toBe((await readFile(plainFile)).length);
    expect(readdirSync(path.dirname(plainFile))).toEqual(['plain.parquet']);
    await writeParquetFile(wasmFile, columns, { rowGroupRows: 1000 });

    const plain = await readArrow(plainFile);
    const wasm = await readArrow(wasmFile);
    expect(plain.schema.fields.map((f) => `${f.name}: ${String(f.type)} ${f.nullable}`)).toEqual(wasm.schema.fields.map((f) => `${f.name}: ${String(f.type)} ${f.nullable}`));
    for (const c of columns) expect([c.name, columnValues(plain, c.name)]).toEqual([c.name, columnValues(wasm, c.name)]);
    expect(columnValues(plain, 'embedding')[3000]).toBeNull();

    const fields = { idField: 'id', embeddingField: 'embedding', metadataFields: ['m_utf8', 'm_int64', 'm_float64', 'm_bool', 'm_int32', 'm_float32'] };
    const viaWasm = await collect(iterateRawBatches([wasmFile], fields));
    expect(await collect(iterateRawBatches([plainFile], fields))).toEqual(viaWasm);
    expect(await collect(iterateDuckDbRawBatches([plainFile], fields))).toEqual(viaWasm);
    expect(await duckRows(plainFile)).toEqual(await duckRows(wasmFile));
  });

  it('zero rows: a file with the schema and no row groups', async () => {
    const file = p('empty.parquet');
    await writePlainParquetFile(file, [
      { name: 'id', type: 'utf8', values: [] },
      { name: 'embedding', type: 'fixed-list-float32', values: new Float32Array(0), listSize: 4 },
    ]);
    const t = await readArrow(file);
    expect(t.numRows).toBe(0);
    expect(t.schema.fields.map((f) => `${f.name}: ${String(f.type)}`)).toEqual(['id: Utf8', 'embedding: FixedSizeList[4]<Float32>']);
    expect(await duckRows(file)).toEqual([]);
  });

  it('writeParquetFast falls back to writeParquetFile for types it does not cover', async () => {
    const columns: ColumnSpec[] = [
      { name: 'id', type: 'utf8', values: ['a', 'b'] },
      { name: 'ts', type: { arrow: new Timestamp(TimeUnit.MILLISECOND) }, values: [1577836800000, null] },
    ];
    expect(plainParquetSupports(columns)).toBe(false);
    const file = p('fallback.parquet');
    await writeParquetFast(file, columns);
    const wasm = p('fallback-wasm.parquet');
    await writeParquetFile(wasm, columns);
    expect(await duckRows(file)).toEqual(await duckRows(wasm));
  });

  it('refuses columns of different lengths and leaves nothing behind', async () => {
    const file = path.join(dir, 'bad', 'x.parquet');
    await expect(writePlainParquetFile(file, [
      { name: 'a', type: 'int32', values: new Int32Array(3) },
      { name: 'b', type: 'int32', values: new Int32Array(2) },
    ])).rejects.toThrow(/rows/);
  });
});
