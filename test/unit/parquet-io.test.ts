import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as pw from 'parquet-wasm';
import {
  DataType,
  Date_,
  DateUnit,
  Field,
  FixedSizeList,
  Float32,
  Float64,
  Int32,
  Int64,
  LargeList,
  List,
  Table,
  TimeUnit,
  Timestamp,
  Utf8,
  makeData,
  makeVector,
  tableFromIPC,
  tableToIPC,
  vectorFromArray,
} from 'apache-arrow';
import type { Vector } from 'apache-arrow';
import { Subject, concatMap, lastValueFrom, take, tap, toArray } from 'rxjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InputError } from '../../src/shared/errors.js';
import type { RawClipBatch } from '../../src/shared/types.js';
import { openParquetWriter, writeMetadataColumn, writeParquetFile } from '../../src/sinks/parquet/index.js';
import {
  iterateRawBatches,
  readInputSchema,
  readRawBatches,
  resolveInputFiles,
} from '../../src/sources/index.js';
import type { InputFieldOptions } from '../../src/sources/index.js';

const fields: InputFieldOptions = { idField: 'id', embeddingField: 'embedding', metadataFields: [] };
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'semdedup-pq-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

const p = (name: string): string => path.join(dir, name);

async function readAll(files: string[], opts: Partial<InputFieldOptions> & { batchRows?: number } = {}): Promise<RawClipBatch[]> {
  const out: RawClipBatch[] = [];
  for await (const b of iterateRawBatches(files, { ...fields, ...opts })) out.push(b);
  return out;
}

/** Concatenate batches: ids, per-row embeddings (null for null rows), metadata. */
function flatten(batches: RawClipBatch[]): { ids: (string | null)[]; rows: (number[] | null)[]; meta: Record<string, unknown[]> } {
  const ids: (string | null)[] = [];
  const rows: (number[] | null)[] = [];
  const meta: Record<string, unknown[]> = {};
  for (const b of batches) {
    ids.push(...b.ids);
    for (let i = 0; i < b.ids.length; i++) {
      rows.push(b.embeddingNull[i] ? null : Array.from(b.values.subarray(b.offsets[i]!, b.offsets[i + 1]!)));
    }
    for (const [k, v] of Object.entries(b.metadata)) (meta[k] ??= []).push(...v);
  }
  return { ids, rows, meta };
}

/** Write an apache-arrow table with parquet-wasm directly (for layouts our writer does not make). */
async function writeArrowTable(file: string, table: Table): Promise<void> {
  const bytes = pw.writeParquet(pw.Table.fromIPCStream(tableToIPC(table, 'stream')));
  await writeFile(file, bytes);
}

async function expectInputError(promise: Promise<unknown>, ...parts: (string | RegExp)[]): Promise<InputError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(InputError);
  for (const part of parts) expect((err as Error).message).toMatch(part);
  return err as InputError;
}

function python(code: string): string {
  const r = spawnSync('python3', ['-c', code], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return r.stdout;
}

describe('parquet sink + source round trip', () => {
  it('string ids, fixed-size list float32, metadata types preserved, batches and row numbers', async () => {
    const n = 37;
    const d = 5;
    const emb = Float32Array.from({ length: n * d }, (_, i) => i / 7);
    const nulls = Uint8Array.from({ length: n }, (_, i) => (i === 4 ? 1 : 0));
    const file = p('str-fixed.parquet');
    const result = await writeParquetFile(
      file,
      [
        { name: 'id', type: 'utf8', values: Array.from({ length: n }, (_, i) => (i === 9 ? null : `clip-${i}`)) },
        { name: 'embedding', type: 'fixed-list-float32', values: emb, listSize: d, nulls },
        { name: 'video', type: 'utf8', values: Array.from({ length: n }, (_, i) => (i % 3 ? `v${i % 4}` : null)) },
        { name: 'duration', type: 'float64', values: Array.from({ length: n }, (_, i) => (i === 2 ? null : i * 0.25)) },
        { name: 'frames', type: 'int64', values: Array.from({ length: n }, (_, i) => BigInt(i * 30)) },
        { name: 'flag', type: 'bool', values: Array.from({ length: n }, (_, i) => i % 2 === 0) },
        { name: 'rank', type: 'int32', values: Int32Array.from({ length: n }, (_, i) => -i) },
      ],
      { rowGroupRows: 10 },
    );
    expect(result.rows).toBe(n);
    expect(readdirSync(dir).filter((f) => f.includes('.tmp-'))).toEqual([]);

    const meta = ['video', 'duration', 'frames', 'flag', 'rank'];
    const schema = await readInputSchema([file], { ...fields, metadataFields: meta });
    expect(schema.idType).toBe('string');
    expect(schema.dim).toBe(d);
    expect(schema.rows).toBe(n);
    expect(Object.fromEntries(Object.entries(schema.metadataTypes).map(([k, t]) => [k, String(t)]))).toEqual({
      video: 'Utf8',
      duration: 'Float64',
      frames: 'Int64',
      flag: 'Bool',
      rank: 'Int32',
    });

    const batches = await readAll([file], { metadataFields: meta, batchRows: 4 });
    // Row groups of 10 rows read 4 at a time: 4,4,2 per group; batches never span groups.
    expect(batches.map((b) => b.ids.length)).toEqual([4, 4, 2, 4, 4, 2, 4, 4, 2, 4, 3]);
    expect(batches.map((b) => b.origin.firstRow)).toEqual([0, 4, 8, 10, 14, 18, 20, 24, 28, 30, 34]);
    expect(batches.every((b) => b.origin.file === file && b.idType === 'string')).toBe(true);
    const flat = flatten(batches);
    expect(flat.ids[9]).toBeNull();
    expect(flat.ids[10]).toBe('clip-10');
    expect(flat.rows[4]).toBeNull();
    expect(flat.rows[6]).toEqual(Array.from(emb.subarray(30, 35)));
    expect(flat.meta.video![0]).toBeNull();
    expect(flat.meta.video![1]).toBe('v1');
    expect(flat.meta.duration![2]).toBeNull();
    expect(flat.meta.duration![3]).toBe(0.75);
    expect(flat.meta.frames![3]).toBe(90n);
    expect(flat.meta.flag!.slice(0, 2)).toEqual([true, false]);
    expect(flat.meta.rank![5]).toBe(-5);
    // Fixed-size list offsets are i * size; float32 values are taken without conversion.
    expect(Array.from(batches[1]!.offsets)).toEqual([0, 5, 10, 15, 20]);
    expect(batches[1]!.values).toBeInstanceOf(Float32Array);
  });

  it('int64 ids round trip as canonical strings, beyond 2^53 too', async () => {
    const file = p('int-ids.parquet');
    const ids = ['0', '-5', '42', '9007199254740993', '-9223372036854775808'];
    await writeParquetFile(file, [
      { name: 'id', type: 'int64', values: ids },
      { name: 'embedding', type: 'fixed-list-float32', values: new Float32Array(ids.length * 2).fill(1), listSize: 2 },
    ]);
    const schema = await readInputSchema([file], fields);
    expect(schema.idType).toBe('int64');
    const flat = flatten(await readAll([file]));
    expect(flat.ids).toEqual(ids);
    const batches = await readAll([file]);
    expect(batches[0]!.idType).toBe('int64');
  });

  it('variable-length list float32 with nulls and odd rows passes rows through', async () => {
    const file = p('list.parquet');
    const rows = [[1, 2, 3], null, [4, 5, 6], [7, 8], [9, 10, 11], []];
    await writeParquetFile(file, [
      { name: 'id', type: 'utf8', values: rows.map((_, i) => `r${i}`) },
      { name: 'embedding', type: 'list-float32', values: rows },
    ]);
    const schema = await readInputSchema([file], fields);
    expect(schema.dim).toBe(3);
    const batches = await readAll([file]);
    const b = batches[0]!;
    expect(Array.from(b.embeddingNull)).toEqual([0, 1, 0, 0, 0, 0]);
    expect(Array.from(b.offsets)).toEqual([0, 3, 3, 6, 8, 11, 11]);
    expect(Array.from(b.values)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);

    // Flat values + offsets give the same file contents.
    const file2 = p('list-flat.parquet');
    await writeParquetFile(file2, [
      { name: 'id', type: 'utf8', values: rows.map((_, i) => `r${i}`) },
      {
        name: 'embedding',
        type: 'list-float32',
        values: Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]),
        offsets: Int32Array.from([0, 3, 3, 6, 8, 11, 11]),
        nulls: Uint8Array.from([0, 1, 0, 0, 0, 0]),
      },
    ]);
    expect(flatten(await readAll([file2]))).toEqual(flatten(batches));
  });

  it('float64 list, float64 fixed-size list and float32 large list become float32; int32 ids', async () => {
    const n = 4;
    const d = 3;
    const f64 = Float64Array.from({ length: n * d }, (_, i) => i + 0.5);
    const ids = makeVector(Int32Array.from([10, 11, 12, 13]));
    const offsets = Int32Array.from({ length: n + 1 }, (_, i) => i * d);
    const listF64 = makeVector(
      makeData({
        type: new List(new Field('item', new Float64(), true)),
        length: n,
        valueOffsets: offsets,
        child: makeData({ type: new Float64(), length: n * d, data: f64 }),
      }),
    );
    const fixedF64 = makeVector(
      makeData({
        type: new FixedSizeList(d, new Field('item', new Float64(), true)),
        length: n,
        child: makeData({ type: new Float64(), length: n * d, data: f64 }),
      }),
    );
    const largeF32 = makeVector(
      makeData({
        type: new LargeList(new Field('item', new Float32(), true)),
        length: n,
        valueOffsets: BigInt64Array.from(offsets, (x) => BigInt(x)),
        child: makeData({ type: new Float32(), length: n * d, data: Float32Array.from(f64) }),
      } as never),
    );
    const expected = Array.from({ length: n }, (_, i) => Array.from(f64.subarray(i * d, (i + 1) * d)));
    for (const [name, vec] of [
      ['list-f64', listF64],
      ['fixed-f64', fixedF64],
      ['large-f32', largeF32],
    ] as const) {
      const file = p(`${name}.parquet`);
      await writeArrowTable(file, new Table({ id: ids, embedding: vec as Vector }));
      const schema = await readInputSchema([file], fields);
      expect(schema.idType).toBe('int64');
      expect(schema.dim).toBe(d);
      const batches = await readAll([file]);
      expect(batches[0]!.values).toBeInstanceOf(Float32Array);
      const flat = flatten(batches);
      expect(flat.ids).toEqual(['10', '11', '12', '13']);
      expect(flat.rows).toEqual(expected);
    }
  });

  it('a null inside an embedding becomes NaN (validation refuses it as non-finite)', async () => {
    const file = p('inner-null.parquet');
    const child = vectorFromArray([1, null, 3, 4, 5, 6], new Float32());
    const vec = makeVector(
      makeData({
        type: new List(new Field('item', new Float32(), true)),
        length: 2,
        valueOffsets: Int32Array.from([0, 3, 6]),
        child: child.data[0]!,
      }),
    );
    await writeArrowTable(file, new Table({ id: vectorFromArray(['a', 'b'], new Utf8()), embedding: vec }));
    const flat = flatten(await readAll([file]));
    expect(flat.rows[0]![1]).toBeNaN();
    expect(flat.rows[1]).toEqual([4, 5, 6]);
  });

  it('metadata written back with the types read keeps values (timestamp, date, int64, utf8)', async () => {
    const file = p('meta-types.parquet');
    const ts = new Timestamp(TimeUnit.MICROSECOND);
    const date = new Date_(DateUnit.DAY);
    const t = new Table({
      id: vectorFromArray(['a', 'b', 'c'], new Utf8()),
      embedding: vectorFromArray([[1], [2], [3]], new List(new Field('item', new Float32(), true))),
      ts: vectorFromArray([1577836801000, null, 0], ts),
      day: vectorFromArray([1577923200000, 86400000, null], date),
      n: vectorFromArray([1n, null, -(2n ** 62n)], new Int64()),
      s: vectorFromArray(['x', 'y', null], new Utf8()),
    });
    await writeArrowTable(file, t);
    const meta = ['ts', 'day', 'n', 's'];
    const schema = await readInputSchema([file], { ...fields, metadataFields: meta });
    const flat = flatten(await readAll([file], { metadataFields: meta }));
    const out = p('meta-types-out.parquet');
    await writeParquetFile(out, [
      { name: 'id', type: 'utf8', values: flat.ids },
      ...meta.map((name) => ({
        name,
        type: { arrow: schema.metadataTypes[name] as DataType },
        values: flat.meta[name]! as never[],
      })),
      { name: 'embedding', type: 'list-float32' as const, values: flat.rows },
    ]);
    const schema2 = await readInputSchema([out], { ...fields, metadataFields: meta });
    expect(meta.map((m) => String(schema2.metadataTypes[m]))).toEqual(meta.map((m) => String(schema.metadataTypes[m])));
    expect(flatten(await readAll([out], { metadataFields: meta })).meta).toEqual(flat.meta);
    expect(flat.meta.ts).toEqual([1577836801000, null, 0]);
    expect(flat.meta.n).toEqual([1n, null, -(2n ** 62n)]);
  });

  it('writeMetadataColumn converts values to the target type', () => {
    expect(writeMetadataColumn([1, null, 3n], new Int64()).toArray()).toEqual(BigInt64Array.from([1n, 0n, 3n]));
    expect(writeMetadataColumn([1n, 2], new Int32()).get(0)).toBe(1);
    expect(writeMetadataColumn(['a', null], new Utf8()).get(1)).toBeNull();
  });

  it('streaming writer: many writes, row groups of rowGroupRows, zero-row file, abort leaves nothing', async () => {
    const file = p('streamed.parquet');
    const w = await openParquetWriter(file, { rowGroupRows: 8 });
    for (let k = 0; k < 5; k++) {
      await w.write([
        { name: 'id', type: 'utf8', values: Array.from({ length: 7 }, (_, i) => `c${k * 7 + i}`) },
        { name: 'embedding', type: 'fixed-list-float32', values: new Float32Array(14).fill(k), listSize: 2 },
      ]);
    }
    const r = await w.close();
    expect(r.rows).toBe(35);
    const pf = await pw.ParquetFile.fromFile(new Blob([await readFile(file)]));
    expect(pf.metadata().numRowGroups()).toBe(5);
    pf.free();
    expect(flatten(await readAll([file])).ids.slice(-2)).toEqual(['c33', 'c34']);

    const empty = p('empty-rows.parquet');
    await writeParquetFile(empty, [
      { name: 'id', type: 'utf8', values: [] },
      { name: 'embedding', type: 'fixed-list-float32', values: new Float32Array(0), listSize: 4 },
    ]);
    await expectInputError(readInputSchema([empty], fields), /empty input/, empty);

    const aborted = p('aborted.parquet');
    const w2 = await openParquetWriter(aborted);
    await w2.write([{ name: 'id', type: 'utf8', values: ['a'] }]);
    await w2.abort();
    expect(readdirSync(dir).filter((f) => f.startsWith('aborted'))).toEqual([]);
  });

  it('pyarrow reads our files and we read pyarrow files (large list, dictionary ids, float64)', async () => {
    const ours = p('for-pyarrow.parquet');
    await writeParquetFile(ours, [
      { name: 'id', type: 'int64', values: ['1', '2', '9007199254740993'] },
      { name: 'embedding', type: 'fixed-list-float32', values: Float32Array.from([1, 2, 3, 4, 5, 6]), listSize: 2 },
      { name: 'video_id', type: 'utf8', values: ['a', null, 'c'] },
    ]);
    const seen = JSON.parse(
      python(
        `import pyarrow.parquet as pq, json; t = pq.read_table(${JSON.stringify(ours)}); ` +
          `print(json.dumps({'schema': [str(f.type) for f in t.schema], 'id': [str(x) for x in t['id'].to_pylist()], ` +
          `'emb': t['embedding'].to_pylist(), 'v': t['video_id'].to_pylist()}))`,
      ),
    ) as { schema: string[]; id: string[]; emb: number[][]; v: (string | null)[] };
    expect(seen.schema[0]).toBe('int64');
    expect(seen.schema[1]).toMatch(/fixed_size_list<.*float.*>\[2\]/);
    expect(seen.id).toEqual(['1', '2', '9007199254740993']);
    expect(seen.emb).toEqual([[1, 2], [3, 4], [5, 6]]);
    expect(seen.v).toEqual(['a', null, 'c']);

    const theirs = p('from-pyarrow.parquet');
    python(
      `import pyarrow as pa, pyarrow.parquet as pq\n` +
        `t = pa.table({'id': pa.array(['x', 'y', 'x2']).dictionary_encode(), ` +
        `'embedding': pa.array([[0.5, 1.5], None, [2.5, 3.5]], pa.large_list(pa.float64())), ` +
        `'score': pa.array([1.0, None, 2.0], pa.float32())})\n` +
        `pq.write_table(t, ${JSON.stringify(theirs)}, row_group_size=2)`,
    );
    const schema = await readInputSchema([theirs], { ...fields, metadataFields: ['score'] });
    expect(schema.idType).toBe('string');
    expect(String(schema.metadataTypes.score)).toBe('Float32');
    const flat = flatten(await readAll([theirs], { metadataFields: ['score'] }));
    expect(flat.ids).toEqual(['x', 'y', 'x2']);
    expect(flat.rows).toEqual([[0.5, 1.5], null, [2.5, 3.5]]);
    expect(flat.meta.score).toEqual([1, null, 2]);
  });
});

describe('resolveInputFiles', () => {
  it('expands folders (recursive, sorted, skipping _/. entries), globs and files; dedupes', async () => {
    const root = p('tree');
    mkdirSync(path.join(root, 'b', 'deep'), { recursive: true });
    mkdirSync(path.join(root, '_temporary'), { recursive: true });
    for (const f of ['b/deep/z.parquet', 'b/a.jsonl', 'a.parquet', 'c.parquet', 'notes.txt', '_SUCCESS', '.x.parquet', '_temporary/t.parquet']) {
      writeFileSync(path.join(root, f), '');
    }
    const j = (...s: string[]): string => path.join(root, ...s);
    expect(await resolveInputFiles([root])).toEqual([j('a.parquet'), j('b/a.jsonl'), j('b/deep/z.parquet'), j('c.parquet')]);
    expect(await resolveInputFiles([`${root}/*.parquet`])).toEqual([j('a.parquet'), j('c.parquet')]);
    expect(await resolveInputFiles([`${root}/**/*.parquet`])).toEqual([j('a.parquet'), j('b/deep/z.parquet'), j('c.parquet')]);
    expect(await resolveInputFiles([`${root}/b/**`])).toEqual([j('b/a.jsonl'), j('b/deep/z.parquet')]);
    expect(await resolveInputFiles([`${root}/[ab].parquet`, j('c.parquet'), j('a.parquet')])).toEqual([j('a.parquet'), j('c.parquet')]);
    expect(await resolveInputFiles([j('notes.txt')])).toEqual([j('notes.txt')]);
  });

  it('refuses missing paths, empty folders and globs matching nothing', async () => {
    await expectInputError(resolveInputFiles([p('nope.parquet')]), /does not exist/, p('nope.parquet'));
    await expectInputError(resolveInputFiles([`${dir}/tree/*.none`]), /no input files/);
    mkdirSync(p('empty-dir'), { recursive: true });
    await expectInputError(resolveInputFiles([p('empty-dir')]), /no input files/, p('empty-dir'));
    await expectInputError(resolveInputFiles([]), /no input files/);
  });
});

describe('file-level input errors name the file and the problem', () => {
  const good = (): string => p('good.parquet');
  beforeAll(async () => {
    await writeParquetFile(good(), [
      { name: 'id', type: 'utf8', values: ['a', 'b'] },
      { name: 'embedding', type: 'fixed-list-float32', values: Float32Array.from([1, 2, 3, 4]), listSize: 2 },
      { name: 'video_id', type: 'utf8', values: ['v', 'w'] },
    ]);
  });

  it('non-Parquet file', async () => {
    const f = p('not-parquet.parquet');
    writeFileSync(f, 'this is not a parquet file\n');
    const err = await expectInputError(readInputSchema([f], fields), f, /not a readable Parquet file/);
    expect(err.context.file).toBe(f);
  });

  it('missing embedding column, listing the columns present', async () => {
    const f = p('no-embedding.parquet');
    await writeParquetFile(f, [
      { name: 'id', type: 'utf8', values: ['a'] },
      { name: 'vector', type: 'fixed-list-float32', values: Float32Array.from([1, 2]), listSize: 2 },
    ]);
    const err = await expectInputError(readInputSchema([good(), f], fields), f, /no embedding column "embedding"/, /columns: id, vector/);
    expect(err.context.field).toBe('embedding');
  });

  it('string embedding column, integer-typed id column of wrong kind, missing metadata column', async () => {
    const f = p('string-embedding.parquet');
    await writeParquetFile(f, [
      { name: 'id', type: 'utf8', values: ['a'] },
      { name: 'embedding', type: 'utf8', values: ['[1, 2]'] },
    ]);
    await expectInputError(readInputSchema([f], fields), f, /embedding column "embedding" has type Utf8/);

    const g = p('float-id.parquet');
    await writeParquetFile(g, [
      { name: 'id', type: 'float64', values: [1.5] },
      { name: 'embedding', type: 'fixed-list-float32', values: Float32Array.from([1, 2]), listSize: 2 },
    ]);
    await expectInputError(readInputSchema([g], fields), g, /id column "id" has type Float64/);
    await expectInputError(readInputSchema([good()], { ...fields, metadataFields: ['duration'] }), good(), /no metadata column "duration"/);
  });

  it('id types and metadata types differing across files', async () => {
    const ints = p('int-ids-2.parquet');
    await writeParquetFile(ints, [
      { name: 'id', type: 'int64', values: ['1'] },
      { name: 'embedding', type: 'fixed-list-float32', values: Float32Array.from([1, 2]), listSize: 2 },
      { name: 'video_id', type: 'int32', values: [7] },
    ]);
    await expectInputError(readInputSchema([good(), ints], fields), ints, /int64 ids/, good());
    const meta = p('meta-int.parquet');
    await writeParquetFile(meta, [
      { name: 'id', type: 'utf8', values: ['z'] },
      { name: 'embedding', type: 'fixed-list-float32', values: Float32Array.from([1, 2]), listSize: 2 },
      { name: 'video_id', type: 'int32', values: [7] },
    ]);
    await expectInputError(
      readInputSchema([good(), meta], { ...fields, metadataFields: ['video_id'] }),
      meta,
      /metadata column "video_id" has type Int32/,
    );
  });

  it('a whole file of another embedding dimension; single odd rows pass', async () => {
    const wide = p('dim4.parquet');
    await writeParquetFile(wide, [
      { name: 'id', type: 'utf8', values: ['c', 'd'] },
      { name: 'embedding', type: 'fixed-list-float32', values: new Float32Array(8), listSize: 4 },
    ]);
    await expectInputError(readInputSchema([good(), wide], fields), wide, /length 4/, /dimension is 2/);
    const wideList = p('dim4-list.parquet');
    await writeParquetFile(wideList, [
      { name: 'id', type: 'utf8', values: ['c', 'd'] },
      { name: 'embedding', type: 'list-float32', values: [[1, 2, 3, 4], [1, 2, 3, 4]] },
    ]);
    await expectInputError(readInputSchema([good(), wideList], fields), wideList, /no embedding of length 2/);
    // Skipping the up-front check still fails at the end of the file.
    const schema = await readInputSchema([good()], fields);
    await expectInputError(readAllWith([good(), wideList], schema), wideList, /other than the input's dimension 2/);

    const oneOdd = p('one-odd.parquet');
    await writeParquetFile(oneOdd, [
      { name: 'id', type: 'utf8', values: ['e', 'f'] },
      { name: 'embedding', type: 'list-float32', values: [[1, 2, 3], [1, 2]] },
    ]);
    const flat = flatten(await readAll([good(), oneOdd]));
    expect(flat.rows.slice(2)).toEqual([[1, 2, 3], [1, 2]]);
  });
});

async function readAllWith(files: string[], schema: Awaited<ReturnType<typeof readInputSchema>>): Promise<RawClipBatch[]> {
  const out: RawClipBatch[] = [];
  for await (const b of iterateRawBatches(files, { ...fields, schema })) out.push(b);
  return out;
}

describe('readRawBatches (rxjs)', () => {
  let file: string;
  beforeAll(async () => {
    file = p('many-batches.parquet');
    const n = 100;
    await writeParquetFile(
      file,
      [
        { name: 'id', type: 'utf8', values: Array.from({ length: n }, (_, i) => `c${i}`) },
        { name: 'embedding', type: 'fixed-list-float32', values: new Float32Array(n * 2), listSize: 2 },
      ],
      { rowGroupRows: 10 },
    );
  });

  it('is lazy, completes, and can be cut short', async () => {
    const obs = readRawBatches([file], { ...fields, batchRows: 10 });
    const first = await lastValueFrom(obs.pipe(take(2), toArray()));
    expect(first.map((b) => b.origin.firstRow)).toEqual([0, 10]);
    const all = await lastValueFrom(obs.pipe(toArray()));
    expect(all).toHaveLength(10);
  });

  /** Largest number of batches emitted but not yet processed by a slow async consumer. */
  const maxReadAhead = async (withDemand: boolean): Promise<number> => {
    let emitted = 0;
    let processed = 0;
    let maxAhead = 0;
    const demand = new Subject<void>();
    await lastValueFrom(
      readRawBatches([file], { ...fields, batchRows: 10, ...(withDemand ? { demand } : {}) }).pipe(
        tap(() => {
          emitted++;
          maxAhead = Math.max(maxAhead, emitted - processed);
        }),
        concatMap(async (b) => {
          await new Promise((r) => setTimeout(r, 10));
          processed++;
          if (withDemand) demand.next();
          return b;
        }),
        toArray(),
      ),
    );
    expect(processed).toBe(10);
    return maxAhead;
  };

  it('with a demand signal a slow async consumer bounds read-ahead; without it the reader runs ahead', async () => {
    expect(await maxReadAhead(true)).toBe(1);
    // Documented limitation: concatMap accepts and queues everything, so the reader is not paced.
    expect(await maxReadAhead(false)).toBeGreaterThan(3);
  });

  it('errors flow down the stream as InputError', async () => {
    const bad = p('bad-for-rx.parquet');
    writeFileSync(bad, 'nope');
    const err = await lastValueFrom(readRawBatches([bad], fields)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    expect((err as Error).message).toContain(bad);
  });
});

describe('reading a Parquet file does not load it whole', () => {
  it('reads with projection: unrequested columns are not decoded', async () => {
    const file = p('projection.parquet');
    const n = 50;
    await writeParquetFile(file, [
      { name: 'id', type: 'utf8', values: Array.from({ length: n }, (_, i) => `c${i}`) },
      { name: 'embedding', type: 'fixed-list-float32', values: new Float32Array(n * 4), listSize: 4 },
      { name: 'blob', type: 'utf8', values: Array.from({ length: n }, () => 'x'.repeat(1000)) },
    ]);
    const batches = await readAll([file]);
    expect(Object.keys(batches[0]!.metadata)).toEqual([]);
    // The arrow schema seen by the reader for the projected read has only the needed columns.
    const pf = await pw.ParquetFile.fromFile(new Blob([await readFile(file)]));
    const t = tableFromIPC((await pf.read({ columns: ['id', 'embedding'] })).intoIPCStream());
    expect(t.schema.fields.map((f) => f.name)).toEqual(['id', 'embedding']);
    pf.free();
  });
});

describe('JSONL source', () => {
  it('reads records in batches; bad lines come through as rows with rowErrors', async () => {
    const file = p('clips.jsonl');
    const lines = [
      '{"id": "a", "embedding": [1, 2, 3], "video_id": "v1", "duration_s": 2.5, "frame_count": 75}',
      '',
      '{"id": "b", "embedding": [4, 5, 6], "video_id": null, "duration_s": 3, "frame_count": 90}\r',
      'this is not json',
      '{"id": "c", "video_id": "v3"}',
      '[1, 2, 3]',
      '{"id": 7, "embedding": [1, "x", 3], "frame_count": "many"}',
      '{"id": "d", "embedding": null, "duration_s": 4.25, "frame_count": 9007199254740993}',
      '{"id": null, "embedding": [7, 8]}',
    ];
    writeFileSync(file, `${lines.join('\n')}\n`);
    const meta = ['video_id', 'duration_s', 'frame_count'];
    const schema = await readInputSchema([file], { ...fields, metadataFields: meta });
    expect(schema.idType).toBe('string');
    expect(schema.dim).toBe(3);
    expect(schema.rows).toBeUndefined();
    expect(Object.values(schema.metadataTypes).map(String)).toEqual(['Utf8', 'Float64', 'Int64']);

    const batches = await readAll([file], { metadataFields: meta, batchRows: 3 });
    expect(batches.map((b) => b.origin.firstRow)).toEqual([0, 3, 6]);
    const flat = flatten(batches);
    const errors = batches.flatMap((b) => b.rowErrors ?? b.ids.map(() => null));
    expect(flat.ids).toEqual(['a', 'b', null, 'c', null, null, 'd', null]);
    expect(flat.rows).toEqual([[1, 2, 3], [4, 5, 6], null, null, null, null, null, [7, 8]]);
    expect(errors[0]).toBeNull();
    expect(errors[1]).toBeNull();
    expect(errors[2]).toMatch(/^line 4: invalid JSON/);
    expect(errors[3]).toMatch(/^line 5: no field "embedding"/);
    expect(errors[4]).toMatch(/^line 6: not a JSON object/);
    expect(errors[5]).toMatch(/^line 7: .*"id" is 7; this input's ids are strings.*non-number element.*"frame_count" is "many"; expected an integer/);
    expect(errors[6]).toBeNull(); // a null embedding is for validation to refuse
    expect(errors[7]).toBeNull(); // so is a null id
    expect(flat.meta.frame_count).toEqual([75n, 90n, null, null, null, null, 9007199254740993n, null]);
    expect(flat.meta.duration_s![1]).toBe(3);
    expect(flat.meta.video_id!.slice(0, 4)).toEqual(['v1', null, null, 'v3']);
  });

  it('integer ids (exact beyond 2^53), mixed with Parquet of the same schema', async () => {
    const file = p('int-ids.jsonl');
    writeFileSync(file, '{"id": 9007199254740993, "embedding": [1, 2]}\n{"id": 5, "embedding": [3, 4]}');
    const pq = p('int-ids-3.parquet');
    await writeParquetFile(pq, [
      { name: 'id', type: 'int64', values: ['6'] },
      { name: 'embedding', type: 'fixed-list-float32', values: Float32Array.from([5, 6]), listSize: 2 },
    ]);
    const schema = await readInputSchema([file, pq], fields);
    expect(schema.idType).toBe('int64');
    const flat = flatten(await readAll([file, pq]));
    expect(flat.ids).toEqual(['9007199254740993', '5', '6']);
    expect(flat.rows).toEqual([[1, 2], [3, 4], [5, 6]]);
  });

  it('file-level JSONL problems: not JSONL, missing fields, id types across files, empty input', async () => {
    const junk = p('junk.jsonl');
    writeFileSync(junk, 'PAR1\u0000\u0001binary\nmore junk\n');
    await expectInputError(readInputSchema([junk], fields), junk, /is not JSONL/);
    const noEmb = p('no-emb.jsonl');
    writeFileSync(noEmb, '{"id": "a", "vector": [1]}\n');
    await expectInputError(readInputSchema([noEmb], fields), noEmb, /no embedding field "embedding"/, /fields: id, vector/);
    const strIds = p('str-ids.jsonl');
    writeFileSync(strIds, '{"id": "a", "embedding": [1, 2]}\n');
    const intIds = p('int-ids-2.jsonl');
    writeFileSync(intIds, '{"id": 1, "embedding": [1, 2]}\n');
    await expectInputError(readInputSchema([strIds, intIds], fields), intIds, /int64 ids/);
    const blank = p('blank.jsonl');
    writeFileSync(blank, '\n\n');
    await expectInputError(readInputSchema([blank], fields), /empty input/, blank);
  });
});
