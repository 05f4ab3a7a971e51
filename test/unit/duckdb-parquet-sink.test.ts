/**
 * `writeParquetViaDuckDb` writes what `writeParquetFile` writes: the same values and Arrow types
 * when read back by parquet-wasm (embedding as a fixed-size list), by our sources, and by DuckDB.
 */
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { DataType, Date_, DateUnit, TimeMillisecond, TimeUnit, Timestamp } from 'apache-arrow';
import { describe, expect, it } from 'vitest';
import { InvariantError } from '../../src/shared/errors.js';
import { writeParquetViaDuckDb } from '../../src/sinks/duckdb-parquet.js';
import { writeParquetFile } from '../../src/sinks/parquet/index.js';
import type { ColumnSpec } from '../../src/sinks/parquet/index.js';
import { iterateRawBatches } from '../../src/sources/index.js';
import { iterateDuckDbRawBatches } from '../../src/sources/duckdb/index.js';
import { collect, columnValues, mixedColumns, parquetScratch, readArrow } from '../helpers/parquet-readback.js';

const scratch = parquetScratch('semdedup-duckdb-sink-');
const p = scratch.path;

const tempTables = async (): Promise<number> =>
  Number((await scratch.connection.runAndReadAll('SELECT count(*) AS n FROM duckdb_tables() WHERE temporary')).getRowObjectsJS()[0]!.n);

describe('writeParquetViaDuckDb', () => {
  it('round trip: same values and Arrow types as writeParquetFile, across chunks and row groups', async () => {
    const n = 4500; // three DuckDB data chunks, five row groups of 1000
    const d = 8;
    const emb = Float32Array.from({ length: n * d }, (_, i) => Math.cos(i * 0.01));
    const columns: ColumnSpec[] = [
      ...mixedColumns(n, d, emb),
      { name: 'var', type: 'list-float32', values: Array.from({ length: n }, (_, i) => (i % 97 === 1 ? null : Array.from({ length: i % 4 }, (_, k) => i + k / 4))) },
      { name: 'm_ts', type: { arrow: new Timestamp(TimeUnit.MILLISECOND) }, values: Array.from({ length: n }, (_, i) => (i % 11 ? 1577836800000 + i * 1001 : null)) },
      { name: 'm_date', type: { arrow: new Date_(DateUnit.DAY) }, values: Array.from({ length: n }, (_, i) => (i % 12 ? 86400000 * (18000 + i) : null)) },
    ];
    const duckFile = p('out', 'duck.parquet');
    const wasmFile = p('wasm.parquet');
    const result = await writeParquetViaDuckDb(scratch.connection, duckFile, columns, { rowGroupRows: 1000 });
    expect(result).toMatchObject({ path: duckFile, rows: n });
    expect(result.bytes).toBeGreaterThan(n * d * 4 * 0.5);
    await writeParquetFile(wasmFile, columns, { rowGroupRows: 1000 });
    expect(readdirSync(path.dirname(duckFile))).toEqual(['duck.parquet']);
    expect(await tempTables()).toBe(0);

    const duck = await readArrow(duckFile);
    const wasm = await readArrow(wasmFile);
    // Same Arrow types (the embedding is a fixed-size list again); only the list child's name and
    // nullability differ (DuckDB writes `element`, optional), which `String(type)` leaves out.
    expect(duck.schema.fields.map((f) => `${f.name}: ${String(f.type)}`)).toEqual(wasm.schema.fields.map((f) => `${f.name}: ${String(f.type)}`));
    expect(DataType.isFixedSizeList(duck.schema.fields[1]!.type)).toBe(true);
    for (const c of columns) expect([c.name, columnValues(duck, c.name)]).toEqual([c.name, columnValues(wasm, c.name)]);
    expect(columnValues(duck, 'embedding')[3000]).toBeNull();
    expect(columnValues(duck, 'num_id')[3]).toBe(3n * 4611686018427387n - 2n ** 62n);

    // Our two sources read it back alike.
    const fields = { idField: 'id', embeddingField: 'embedding', metadataFields: ['m_utf8', 'm_int64', 'm_float64', 'm_bool', 'm_int32', 'm_float32', 'm_ts', 'm_date'] };
    const viaWasm = await collect(iterateRawBatches([duckFile], fields));
    expect(await collect(iterateDuckDbRawBatches([duckFile], fields))).toEqual(viaWasm);
    expect(viaWasm).toEqual(await collect(iterateRawBatches([wasmFile], fields)));

    // DuckDB reads the embedding as FLOAT[] (a Parquet list), with the values written.
    const row = (await scratch.connection.runAndReadAll(`SELECT embedding, typeof(embedding) AS t, num_id FROM read_parquet('${duckFile}') LIMIT 1 OFFSET 1`)).getRowObjectsJS()[0]!;
    expect(row.t).toBe('FLOAT[]');
    expect(row.embedding).toEqual(Array.from(emb.subarray(d, 2 * d)));
  });

  it('zero rows: an empty file with the schema', async () => {
    const file = p('empty.parquet');
    await writeParquetViaDuckDb(scratch.connection, file, [
      { name: 'id', type: 'utf8', values: [] },
      { name: 'embedding', type: 'fixed-list-float32', values: new Float32Array(0), listSize: 4 },
    ]);
    const t = await readArrow(file);
    expect(t.numRows).toBe(0);
    expect(t.schema.fields.map((f) => `${f.name}: ${String(f.type)}`)).toEqual(['id: Utf8', 'embedding: FixedSizeList[4]<Float32>']);
  });

  it('refuses mismatched columns and leaves nothing behind', async () => {
    const file = p('bad.parquet');
    await expect(
      writeParquetViaDuckDb(scratch.connection, file, [
        { name: 'id', type: 'utf8', values: ['a', 'b'] },
        { name: 'embedding', type: 'fixed-list-float32', values: new Float32Array(4), listSize: 4 },
      ]),
    ).rejects.toBeInstanceOf(InvariantError);
    await expect(
      writeParquetViaDuckDb(scratch.connection, file, [{ name: 'clock', type: { arrow: new TimeMillisecond() }, values: [1] }]),
    ).rejects.toBeInstanceOf(InvariantError);
    expect(existsSync(file)).toBe(false);
    expect(readdirSync(scratch.dir).filter((f) => f.includes('.tmp-'))).toEqual([]);
    expect(await tempTables()).toBe(0);
  });
});
