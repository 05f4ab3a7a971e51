/**
 * `writePlainParquetFile` writes what `writeParquetFile` writes: the same Arrow schema and values
 * read back by parquet-wasm, by our two sources and by DuckDB; unsupported types fall back.
 */
import { readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { TimeUnit, Timestamp } from 'apache-arrow';
import { describe, expect, it } from 'vitest';
import { plainParquetSupports, writeParquetFast, writePlainParquetFile } from '../../src/sinks/plain-parquet.js';
import { writeParquetFile } from '../../src/sinks/parquet/index.js';
import type { ColumnSpec } from '../../src/sinks/parquet/index.js';
import { iterateRawBatches } from '../../src/sources/index.js';
import { iterateDuckDbRawBatches } from '../../src/sources/duckdb/index.js';
import { collect, columnValues, mixedColumns, parquetScratch, readArrow } from '../helpers/parquet-readback.js';

const scratch = parquetScratch('semdedup-plain-parquet-');
const p = scratch.path;

const duckRows = async (file: string): Promise<unknown[]> =>
  (await scratch.connection.runAndReadAll(`SELECT * FROM read_parquet('${file}')`)).getRowsJS();

describe('writePlainParquetFile', () => {
  it('round trip: same Arrow schema and values as writeParquetFile, across pages and row groups, with nulls', async () => {
    const n = 4500;
    const d = 8;
    const emb = Float32Array.from({ length: n * d }, (_, i) => Math.cos(i * 0.01));
    const columns: ColumnSpec[] = [
      ...mixedColumns(n, d, emb),
    ];
    expect(plainParquetSupports(columns)).toBe(true);
    const plainFile = p('out', 'plain.parquet');
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
    const file = p('bad', 'x.parquet');
    await expect(writePlainParquetFile(file, [
      { name: 'a', type: 'int32', values: new Int32Array(3) },
      { name: 'b', type: 'int32', values: new Int32Array(2) },
    ])).rejects.toThrow(/rows/);
  });
});
