/**
 * The DuckDB Parquet source gives the same rows as the parquet-wasm source (`iterateRawBatches`)
 * on files written here: fixed-size and variable lists, float32 and float64, string and integer
 * ids, nulls at every level, metadata of each supported type, several files and row groups.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as pw from 'parquet-wasm';
import {
  Bool,
  Date_,
  DateUnit,
  Field,
  FixedSizeList,
  Float32,
  Float64,
  Int32,
  Int64,
  List,
  Table,
  TimeUnit,
  Timestamp,
  Uint64,
  Utf8,
  makeData,
  makeVector,
  tableToIPC,
  vectorFromArray,
} from 'apache-arrow';
import { DuckDBInstance } from '@duckdb/node-api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InputError } from '../../src/shared/errors.js';
import type { RawClipBatch } from '../../src/shared/types.js';
import { writeParquetFile } from '../../src/sinks/parquet/index.js';
import { iterateRawBatches, readInputSchema, readInputSchemaFor } from '../../src/sources/index.js';
import type { InputFieldOptions } from '../../src/sources/index.js';
import { iterateDuckDbRawBatches } from '../../src/sources/duckdb/index.js';
import type { DuckDbSourceOptions } from '../../src/sources/duckdb/index.js';

const fields: InputFieldOptions = { idField: 'id', embeddingField: 'embedding', metadataFields: [] };
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'semdedup-duckdb-src-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

const p = (name: string): string => path.join(dir, name);

async function collect(gen: AsyncGenerator<RawClipBatch>): Promise<RawClipBatch[]> {
  const out: RawClipBatch[] = [];
  for await (const b of gen) out.push(b);
  return out;
}

/** Per row: file, row number, id, embedding (null when null), metadata; batch boundaries dropped. */
function rowsOf(batches: RawClipBatch[]): { file: string | undefined; row: number; id: string | null; emb: number[] | null; meta: Record<string, unknown> }[] {
  const out: ReturnType<typeof rowsOf> = [];
  for (const b of batches) {
    for (let i = 0; i < b.ids.length; i++) {
      out.push({
        file: b.origin.file,
        row: b.origin.firstRow! + i,
        id: b.ids[i]!,
        emb: b.embeddingNull[i] ? null : Array.from(b.values.subarray(b.offsets[i]!, b.offsets[i + 1]!)),
        meta: Object.fromEntries(Object.entries(b.metadata).map(([k, v]) => [k, v[i]])),
      });
    }
  }
  return out;
}

/** Both sources on the same files: same rows, same id type, batches within one file and in bounds. */
async function expectSameAsParquetWasm(files: string[], opts: Partial<DuckDbSourceOptions> = {}): Promise<RawClipBatch[]> {
  const options = { ...fields, ...opts };
  const wasm = await collect(iterateRawBatches(files, options));
  const duck = await collect(iterateDuckDbRawBatches(files, options));
  expect(rowsOf(duck)).toEqual(rowsOf(wasm));
  const batchRows = opts.batchRows ?? 8192;
  for (const b of duck) {
    expect(b.idType).toBe(wasm[0]!.idType);
    expect(b.ids.length).toBeGreaterThan(0);
    expect(b.ids.length).toBeLessThanOrEqual(batchRows);
    expect(b.offsets.length).toBe(b.ids.length + 1);
    expect(b.embeddingNull.length).toBe(b.ids.length);
    expect(b.values).toBeInstanceOf(Float32Array);
    expect(b.values.length).toBe(b.offsets[b.ids.length]);
  }
  return duck;
}

/** Write an apache-arrow table with parquet-wasm directly (for layouts our writer does not make). */
async function writeArrowTable(file: string, table: Table, rowGroupRows?: number): Promise<void> {
  const props = rowGroupRows ? new pw.WriterPropertiesBuilder().setMaxRowGroupSize(rowGroupRows).build() : undefined;
  await writeFile(file, pw.writeParquet(pw.Table.fromIPCStream(tableToIPC(table, 'stream')), props));
}

async function expectInputError(promise: Promise<unknown>, ...parts: (string | RegExp)[]): Promise<void> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(InputError);
  for (const part of parts) expect((err as Error).message).toMatch(part);
}

describe('iterateDuckDbRawBatches', () => {
  it('fixed-size float32, string ids (inline, long, non-ASCII), nulls, metadata types, row groups and files', async () => {
    const d = 6;
    const write = async (name: string, n: number, seed: number): Promise<string> => {
      const file = p(name);
      const emb = Float32Array.from({ length: n * d }, (_, i) => Math.sin(i * 0.37 + seed));
      await writeParquetFile(
        file,
        [
          {
            name: 'id',
            type: 'utf8',
            values: Array.from({ length: n }, (_, i) =>
              i === 9 ? null : i % 7 === 0 ? `clip-é-${seed}-${i}` : i % 5 === 0 ? `a-much-longer-clip-identifier-${'z'.repeat(40)}-${seed}-${i}` : `c${seed}-${i}`,
            ),
          },
          { name: 'embedding', type: 'fixed-list-float32', values: emb, listSize: d, nulls: Uint8Array.from({ length: n }, (_, i) => (i % 11 === 4 ? 1 : 0)) },
          { name: 'video', type: 'utf8', values: Array.from({ length: n }, (_, i) => (i % 3 ? `v${i % 4}` : null)) },
          { name: 'duration', type: 'float64', values: Array.from({ length: n }, (_, i) => (i === 2 ? null : i * 0.25 + seed)) },
          { name: 'frames', type: 'int64', values: Array.from({ length: n }, (_, i) => (i === 3 ? null : BigInt(i * 30) - 2n ** 40n)) },
          { name: 'flag', type: 'bool', values: Array.from({ length: n }, (_, i) => (i === 5 ? null : i % 2 === 0)) },
          { name: 'rank', type: 'int32', values: Int32Array.from({ length: n }, (_, i) => -i), nulls: Uint8Array.from({ length: n }, (_, i) => (i === 6 ? 1 : 0)) },
          { name: 'score', type: 'float32', values: Float32Array.from({ length: n }, (_, i) => i / 3) },
        ],
        { rowGroupRows: 1000 },
      );
      return file;
    };
    // 2 500 rows: several row groups and DuckDB chunks (2048 rows); an empty file in between.
    const files = [await write('a.parquet', 2500, 1), await write('empty.parquet', 0, 2), await write('b.parquet', 37, 3)];
    const meta = ['video', 'duration', 'frames', 'flag', 'rank', 'score'];
    const duck = await expectSameAsParquetWasm(files, { metadataFields: meta, batchRows: 700 });
    // Batches never span files and carry their first row.
    expect(duck.map((b) => [path.basename(b.origin.file!), b.origin.firstRow, b.ids.length])).toEqual([
      ['a.parquet', 0, 700],
      ['a.parquet', 700, 700],
      ['a.parquet', 1400, 700],
      ['a.parquet', 2100, 400],
      ['b.parquet', 0, 37],
    ]);
    // DuckDB reads a Parquet fixed-size list as a list: a null row (row 4) holds no values, where
    // the Arrow layout keeps `d`; validation refuses it by its null flag either way.
    expect(Array.from(duck[4]!.offsets.subarray(0, 7))).toEqual([0, 6, 12, 18, 24, 24, 30]);
    expect(duck[4]!.embeddingNull[4]).toBe(1);
    expect(typeof duck[0]!.metadata.frames![0]).toBe('bigint');
    expect(typeof duck[0]!.metadata.rank![0]).toBe('number');

    // Default batch size: one batch per file here; a shared connection works as well.
    const instance = await DuckDBInstance.create(':memory:', { threads: '1' });
    const connection = await instance.connect();
    try {
      await expectSameAsParquetWasm(files, { metadataFields: meta, connection });
    } finally {
      connection.closeSync();
      instance.closeSync();
    }
  });

  it('variable-length lists with nulls, empty rows and nulls inside; the schema argument', async () => {
    const file = p('list.parquet');
    const rows = [[1, 2, 3], null, [4, 5, 6], [7, 8], [9, 10, 11], [], [12, 13, 14]];
    await writeParquetFile(file, [
      { name: 'id', type: 'utf8', values: rows.map((_, i) => `r${i}`) },
      { name: 'embedding', type: 'list-float32', values: rows },
    ]);
    const inner = p('inner-null.parquet');
    const child = vectorFromArray([1, null, 3, 4, 5, 6], new Float32());
    const vec = makeVector(
      makeData({ type: new List(new Field('item', new Float32(), true)), length: 2, valueOffsets: Int32Array.from([0, 3, 6]), child: child.data[0]! }),
    );
    await writeArrowTable(inner, new Table({ id: vectorFromArray(['a', 'b'], new Utf8()), embedding: vec }));

    const duck = await expectSameAsParquetWasm([file, inner], { batchRows: 3 });
    const b = duck[0]!;
    expect(Array.from(b.embeddingNull)).toEqual([0, 1, 0]);
    expect(Array.from(b.offsets)).toEqual([0, 3, 3, 6]);
    expect(rowsOf(duck).at(-2)!.emb![1]).toBeNaN();

    const schema = await readInputSchema([file, inner], fields);
    expect(rowsOf(await collect(iterateDuckDbRawBatches([file, inner], fields, schema)))).toEqual(rowsOf(duck));
  });

  it('float64 lists and fixed-size lists become float32; int32, int64 and uint64 ids as canonical strings', async () => {
    const n = 5;
    const d = 3;
    const f64 = Float64Array.from({ length: n * d }, (_, i) => i / 3 + 0.5);
    const offsets = Int32Array.from({ length: n + 1 }, (_, i) => i * d);
    const listF64 = makeVector(
      makeData({ type: new List(new Field('item', new Float64(), true)), length: n, valueOffsets: offsets, child: makeData({ type: new Float64(), length: n * d, data: f64 }) }),
    );
    const fixedF64 = makeVector(
      makeData({ type: new FixedSizeList(d, new Field('item', new Float64(), true)), length: n, child: makeData({ type: new Float64(), length: n * d, data: f64 }) }),
    );
    const idVectors = {
      int32: makeVector(Int32Array.from([10, -11, 12, 13, 2147483647])),
      int64: vectorFromArray([0n, -5n, 9007199254740993n, -(2n ** 63n), null], new Int64()),
      uint64: vectorFromArray([0n, 2n ** 64n - 1n, 2n ** 63n, 7n, 1n], new Uint64()),
    };
    for (const [idName, ids] of Object.entries(idVectors)) {
      for (const [embName, emb] of [
        ['list-f64', listF64],
        ['fixed-f64', fixedF64],
      ] as const) {
        const file = p(`${idName}-${embName}.parquet`);
        await writeArrowTable(file, new Table({ id: ids, embedding: emb }));
        const duck = await expectSameAsParquetWasm([file]);
        expect(duck[0]!.idType).toBe('int64');
      }
    }
    const flat = rowsOf(await collect(iterateDuckDbRawBatches([p('uint64-list-f64.parquet')], fields)));
    expect(flat.map((r) => r.id)).toEqual(['0', '18446744073709551615', '9223372036854775808', '7', '1']);
    expect(flat[1]!.emb).toEqual(Array.from(Float32Array.from(f64.subarray(3, 6))));
  });

  it('timestamps and dates as epoch milliseconds, as apache-arrow returns them', async () => {
    const file = p('times.parquet');
    const t = new Table({
      id: vectorFromArray(['a', 'b', 'c'], new Utf8()),
      embedding: vectorFromArray([[1], [2], [3]], new List(new Field('item', new Float32(), true))),
      us: vectorFromArray([1577836801000.5, null, -1000], new Timestamp(TimeUnit.MICROSECOND)),
      ms: vectorFromArray([1577836801123, 0, null], new Timestamp(TimeUnit.MILLISECOND)),
      ns: vectorFromArray([1577836801000.25, 1, null], new Timestamp(TimeUnit.NANOSECOND)),
      tz: vectorFromArray([1577836801000, null, 5], new Timestamp(TimeUnit.MICROSECOND, 'UTC')),
      day: vectorFromArray([1577923200000, 86400000, null], new Date_(DateUnit.DAY)),
      b: vectorFromArray([true, null, false], new Bool()),
      i: vectorFromArray([1, null, -3], new Int32()),
    });
    await writeArrowTable(file, t);
    const meta = ['us', 'ms', 'ns', 'tz', 'day', 'b', 'i'];
    const duck = await expectSameAsParquetWasm([file], { metadataFields: meta });
    expect(duck[0]!.metadata.us).toEqual([1577836801000.5, null, -1000]);
  });

  it('a file with a real column named file_row_number is read on its own, rows counted', async () => {
    const n = 2100;
    const mk = (name: string, extra: boolean): Promise<void> =>
      writeArrowTable(
        p(name),
        new Table({
          id: vectorFromArray(Array.from({ length: n }, (_, i) => `${name}-${i}`), new Utf8()),
          embedding: vectorFromArray(Array.from({ length: n }, (_, i) => [i, -i]), new List(new Field('item', new Float32(), true))),
          ...(extra ? { file_row_number: vectorFromArray(Array.from({ length: n }, () => 'x'), new Utf8()) } : {}),
        }),
        500,
      );
    await mk('plain1.parquet', false);
    await mk('clash.parquet', true);
    await mk('plain2.parquet', false);
    const files = ['plain1.parquet', 'clash.parquet', 'plain2.parquet'].map(p);
    const duck = await expectSameAsParquetWasm(files, { metadataFields: [], batchRows: 1000 });
    expect(duck.map((b) => [path.basename(b.origin.file!), b.origin.firstRow])).toEqual(
      ['plain1', 'clash', 'plain2'].flatMap((f) => [0, 1000, 2000].map((r) => [`${f}.parquet`, r])),
    );
  });

  it('file-level problems are InputErrors naming the file and column', async () => {
    const good = p('good.parquet');
    await writeParquetFile(good, [
      { name: 'id', type: 'utf8', values: ['a', 'b'] },
      { name: 'embedding', type: 'fixed-list-float32', values: new Float32Array(4), listSize: 2 },
      { name: 'when', type: { arrow: new Timestamp(TimeUnit.MILLISECOND) }, values: [1, 2] },
    ]);
    const intIds = p('int-ids.parquet');
    await writeParquetFile(intIds, [
      { name: 'id', type: 'int64', values: ['1', '2'] },
      { name: 'embedding', type: 'fixed-list-float32', values: new Float32Array(4), listSize: 2 },
    ]);
    const otherDim = p('other-dim.parquet');
    await writeParquetFile(otherDim, [
      { name: 'id', type: 'utf8', values: ['c'] },
      { name: 'embedding', type: 'fixed-list-float32', values: new Float32Array(3), listSize: 3 },
    ]);
    const notParquet = p('not.parquet');
    await writeFile(notParquet, 'hello');
    const read = (files: string[], opts: Partial<DuckDbSourceOptions> = {}) => collect(iterateDuckDbRawBatches(files, { ...fields, ...opts }));

    await expectInputError(read([good], { embeddingField: 'emb' }), good, /no embedding column "emb"/);
    await expectInputError(read([good], { idField: 'embedding' }), /id column "embedding" has type FLOAT\[\]/);
    await expectInputError(read([good], { embeddingField: 'id' }), /embedding column "id" has type VARCHAR/);
    await expectInputError(read([good], { metadataFields: ['nope'] }), /no metadata column "nope"/);
    await expectInputError(read([good, intIds]), intIds, /int64 ids but .*good.parquet has string ids/);
    await expectInputError(read([good, otherDim]), otherDim, /other than the input's dimension 2/);
    await expectInputError(read([good, notParquet]), notParquet);
    await expectInputError(read([p('missing.parquet')]), 'missing.parquet');
    await expectInputError(read([p('x.jsonl')]), /Parquet only/);
    // The good file's rows come out before a later file fails (as with the parquet-wasm source,
    // after the failing file's own rows).
    const gen = iterateDuckDbRawBatches([good, otherDim], fields);
    expect((await gen.next()).value?.ids).toEqual(['a', 'b']);
    const drain = async (): Promise<void> => {
      while (!(await gen.next()).done);
    };
    await expectInputError(drain(), otherDim);
  });

  it('stops early without reading the rest (return() closes the private database)', async () => {
    const file = p('many.parquet');
    const n = 5000;
    await writeParquetFile(file, [
      { name: 'id', type: 'utf8', values: Array.from({ length: n }, (_, i) => `k${i}`) },
      { name: 'embedding', type: 'fixed-list-float32', values: new Float32Array(n * 4), listSize: 4 },
    ]);
    const gen = iterateDuckDbRawBatches([file], { ...fields, batchRows: 100 });
    const first = await gen.next();
    expect(first.value?.ids.length).toBe(100);
    expect((await gen.return(undefined)).done).toBe(true);
  });

  it('reuseValues: released buffers are reused, the rows stay the same', async () => {
    const file = p('reuse.parquet');
    const n = 2500;
    const d = 8;
    await writeParquetFile(file, [
      { name: 'id', type: 'utf8', values: Array.from({ length: n }, (_, i) => `r${i}`) },
      { name: 'embedding', type: 'fixed-list-float32', values: Float32Array.from({ length: n * d }, (_, i) => Math.cos(i)), listSize: d },
    ], { rowGroupRows: 1000 });
    const wasm = await collect(iterateRawBatches([file], { ...fields, batchRows: 300 }));
    const copies: RawClipBatch[] = [];
    const buffers = new Set<ArrayBufferLike>();
    for await (const b of iterateDuckDbRawBatches([file], { ...fields, batchRows: 300, reuseValues: true })) {
      expect(b.release).toBeTypeOf('function');
      buffers.add(b.values.buffer);
      copies.push({ ...b, values: b.values.slice() });
      b.release!();
      b.release!(); // twice is harmless
    }
    expect(rowsOf(copies)).toEqual(rowsOf(wasm));
    expect(copies.length).toBe(9);
    expect(buffers.size).toBe(1);
    // Without the option, batches own their values and have no release.
    for await (const b of iterateDuckDbRawBatches([file], { ...fields, batchRows: 300 })) expect(b.release).toBeUndefined();
  });
});

describe('readInputSchemaFor', () => {
  it('answers as readInputSchema, from the footers through DuckDB or by falling back', async () => {
    const write = async (name: string, n: number, d: number, kind: 'fixed' | 'list', ids: 'utf8' | 'int64' = 'utf8'): Promise<string> => {
      const file = p(name);
      const values = Float32Array.from({ length: n * d }, (_, i) => Math.sin(i) + 2);
      await writeParquetFile(file, [
        ids === 'utf8'
          ? { name: 'id', type: 'utf8', values: Array.from({ length: n }, (_, i) => `${name}-${i}`) }
          : { name: 'id', type: 'int64', values: Array.from({ length: n }, (_, i) => BigInt(i)) },
        kind === 'fixed'
          ? { name: 'embedding', type: 'fixed-list-float32', values, listSize: d }
          : { name: 'embedding', type: 'list-float32', values: Array.from({ length: n }, (_, i) => Array.from(values.subarray(i * d, (i + 1) * d))) },
        { name: 'note', type: 'utf8', values: Array.from({ length: n }, () => 'x') },
      ]);
      return file;
    };
    const f1 = await write('s1.parquet', 40, 6, 'fixed');
    const f2 = await write('s2.parquet', 25, 6, 'fixed');
    const f3 = await write('s3.parquet', 10, 5, 'fixed');
    const l1 = await write('s4.parquet', 12, 6, 'list');
    const i1 = await write('s5.parquet', 12, 6, 'fixed', 'int64');
    const empty = await write('s6.parquet', 0, 6, 'fixed');
    const instance = await DuckDBInstance.create(':memory:', { threads: '1' });
    const connection = await instance.connect();
    try {
      const cases: [string[], InputFieldOptions][] = [
        [[f1, f2], fields],
        [[f1, l1], fields],
        [[i1], fields],
        [[f1, empty], fields],
        [[f1, f2], { ...fields, metadataFields: ['note'] }],
        [[f1, f3], fields],
        [[f1, i1], fields],
        [[f1], { ...fields, idField: 'nope' }],
      ];
      for (const [files, opts] of cases) {
        const expected = await readInputSchema(files, opts).then((s) => ({ s }), (e: unknown) => ({ e: String(e) }));
        const got = await readInputSchemaFor(files, { ...opts, reader: 'duckdb', connection }).then((s) => ({ s }), (e: unknown) => ({ e: String(e) }));
        expect(got).toEqual(expected);
      }
      expect(await readInputSchemaFor([f1, f2], { ...fields, reader: 'duckdb', connection })).toEqual({ idType: 'string', metadataTypes: {}, dim: 6, rows: 65 });
    } finally {
      connection.closeSync();
      instance.closeSync();
    }
  });
});
