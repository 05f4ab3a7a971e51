/**
 * Parquet I/O benchmark: the parquet-wasm path against the DuckDB path (and pyarrow, for
 * reference), side by side in one run, repetitions interleaved so machine noise hits all alike.
 *
 *   npx tsx bench/io.ts [--data PATH] [--reps 3] [--write-files 50] [--write-rows 1000]
 *                       [--batch-rows 8192] [--no-python] [--json F]
 *
 * read:  every row of --data (default bench/results/data-50000x768-c50-s1/parquet/, else
 *        generated at .tmp/io50k.parquet: 50k × 768 float32) as RawClipBatches:
 *        `iterateRawBatches` (parquet-wasm) vs `iterateDuckDbRawBatches`;
 *        pyarrow: dataset.to_batches + ids.to_pylist() + embedding values to a float32 matrix
 *        (what bench/numpy_semdedup.py does).
 * write: --write-files files of --write-rows × 768 in the kmeans_results layout (id, embedding,
 *        centroid, l2_dist_to_cent, cosine_dist_to_cent; snappy, row groups of 16384):
 *        `writeParquetFile` (parquet-wasm) vs `writeParquetViaDuckDb`; pyarrow: pq.write_table.
 * MB/s counts the embedding payload (rows × dim × 4 bytes).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DuckDBInstance } from '@duckdb/node-api';
import { writeParquetViaDuckDb } from '../src/sinks/duckdb-parquet.js';
import { writeParquetFile } from '../src/sinks/parquet/index.js';
import type { ColumnSpec } from '../src/sinks/parquet/index.js';
import { iterateDuckDbRawBatches } from '../src/sources/duckdb/index.js';
import { iterateRawBatches, readInputSchema, resolveInputFiles } from '../src/sources/index.js';
import type { RawClipBatch } from '../src/shared/types.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DEFAULT_DATA = path.join(ROOT, 'bench', 'results', 'data-50000x768-c50-s1', 'parquet');
const GENERATED = path.join(ROOT, '.tmp', 'io50k.parquet');
const WORK = path.join(ROOT, '.tmp', 'io-bench');

const { values: args } = parseArgs({
  options: {
    data: { type: 'string' },
    reps: { type: 'string', default: '3' },
    'write-files': { type: 'string', default: '50' },
    'write-rows': { type: 'string', default: '1000' },
    'batch-rows': { type: 'string', default: '8192' },
    'no-python': { type: 'boolean', default: false },
    json: { type: 'string' },
  },
});
const reps = Number(args.reps);
const writeFiles = Number(args['write-files']);
const writeRows = Number(args['write-rows']);
const batchRows = Number(args['batch-rows']);
const fields = { idField: 'id', embeddingField: 'embedding', metadataFields: [] as string[] };

interface Timing {
  readonly name: string;
  readonly ms: number[];
}

function dataPath(): string {
  if (args.data) return args.data;
  if (existsSync(DEFAULT_DATA)) return DEFAULT_DATA;
  if (!existsSync(GENERATED)) {
    console.log(`generating ${GENERATED} ...`);
    const r = spawnSync('npx', ['tsx', 'scripts/generate-sample.ts', '--rows', '50000', '--dim', '768', '--clusters', '50', '--out', GENERATED], {
      cwd: ROOT,
      stdio: 'inherit',
    });
    if (r.status !== 0) throw new Error('generate-sample failed');
  }
  return GENERATED;
}

async function drain(gen: AsyncGenerator<RawClipBatch>): Promise<{ rows: number; floats: number }> {
  let rows = 0;
  let floats = 0;
  for await (const b of gen) {
    rows += b.ids.length;
    floats += b.values.length;
  }
  return { rows, floats };
}

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t0 = performance.now();
  const value = await fn();
  return { ms: performance.now() - t0, value };
}

function python(code: string): Record<string, number> | undefined {
  const r = spawnSync(process.env.PYTHON ?? 'python3', ['-c', code], { encoding: 'utf8', maxBuffer: 1 << 20 });
  if (r.status !== 0) {
    console.log(`pyarrow reference skipped: ${(r.stderr || r.error?.message || '').trim().split('\n').at(-1)}`);
    return undefined;
  }
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Record<string, number>;
}

const PY_READ = (files: string[]): string => `
import json, time, numpy as np, pyarrow as pa, pyarrow.dataset as ds
files = ${JSON.stringify(files)}
t0 = time.perf_counter()
dataset = ds.dataset(files, format="parquet")
rows = 0
for batch in dataset.to_batches(columns=["id", "embedding"], batch_size=${batchRows}, fragment_readahead=1, batch_readahead=2):
    ids = batch.column(0).to_pylist()
    col = batch.column(1)
    values = col.flatten().to_numpy(zero_copy_only=False)
    m = np.asarray(values, dtype=np.float32).reshape(len(batch), -1)
    rows += len(ids)
print(json.dumps({"ms": (time.perf_counter() - t0) * 1000, "rows": rows}))
`;

const PY_WRITE = (dir: string, files: number, n: number, dim: number): string => `
import json, os, time, numpy as np, pyarrow as pa, pyarrow.parquet as pq
rng = np.random.default_rng(1)
e = rng.standard_normal((${n}, ${dim}), dtype=np.float32)
ids = pa.array([f"clip-{i:07d}" for i in range(${n})])
l2 = rng.random(${n}, dtype=np.float32)
t0 = time.perf_counter()
for k in range(${files}):
    offsets = pa.array(np.arange(0, (${n} + 1) * ${dim}, ${dim}, dtype=np.int32))
    emb = pa.ListArray.from_arrays(offsets, pa.array(e.reshape(-1)))
    t = pa.table({"id": ids, "embedding": emb, "centroid": pa.array(np.full(${n}, k, dtype=np.int32)),
                  "l2_dist_to_cent": pa.array(l2), "cosine_dist_to_cent": pa.array(l2)})
    path = os.path.join(${JSON.stringify(dir)}, f"centroid={k}", "part-00000.parquet")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pq.write_table(t, path + ".tmp", compression="snappy", row_group_size=16384)
    os.replace(path + ".tmp", path)
print(json.dumps({"ms": (time.perf_counter() - t0) * 1000}))
`;

function dirBytes(dir: string): number {
  let total = 0;
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) total += statSync(path.join(e.parentPath ?? (e as unknown as { path: string }).path, e.name)).size;
  }
  return total;
}

function summary(t: Timing, payloadBytes: number): string {
  const sorted = [...t.ms].sort((a, b) => a - b);
  const min = sorted[0]!;
  const median = sorted[Math.floor(sorted.length / 2)]!;
  const mbs = payloadBytes / 1e6 / (min / 1000);
  return `${t.name.padEnd(22)} min ${min.toFixed(0).padStart(6)} ms  median ${median.toFixed(0).padStart(6)} ms  ${mbs.toFixed(0).padStart(5)} MB/s   (${t.ms.map((x) => x.toFixed(0)).join(', ')})`;
}

async function main(): Promise<void> {
  const files = await resolveInputFiles([dataPath()]);
  const schema = await readInputSchema(files, fields);
  const dim = schema.dim!;
  const rows = schema.rows!;
  const readBytes = rows * dim * 4;
  console.log(`cpus: ${cpus().length} × ${cpus()[0]?.model ?? '?'}; node ${process.version}`);
  console.log(`read: ${files.length} file(s), ${rows} rows × ${dim}, batchRows ${batchRows}; write: ${writeFiles} × ${writeRows} rows; reps ${reps}\n`);

  // ---- read
  const read: Record<string, Timing> = {
    wasm: { name: 'read parquet-wasm', ms: [] },
    duck: { name: 'read duckdb', ms: [] },
    py: { name: 'read pyarrow', ms: [] },
  };
  for (let r = 0; r < reps; r++) {
    const w = await timed(() => drain(iterateRawBatches(files, { ...fields, batchRows, schema })));
    const d = await timed(() => drain(iterateDuckDbRawBatches(files, { ...fields, batchRows }, schema)));
    if (w.value.rows !== rows || d.value.rows !== rows || w.value.floats !== d.value.floats) {
      throw new Error(`row counts differ: wasm ${JSON.stringify(w.value)}, duckdb ${JSON.stringify(d.value)}, footer ${rows}`);
    }
    read.wasm!.ms.push(w.ms);
    read.duck!.ms.push(d.ms);
    if (!args['no-python']) {
      const py = python(PY_READ(files));
      if (py) read.py!.ms.push(py.ms!);
    }
  }

  // ---- write
  const n = writeRows;
  const emb = new Float32Array(n * dim);
  for (let i = 0; i < emb.length; i++) emb[i] = Math.sin(i * 0.001) * 0.05;
  const ids = Array.from({ length: n }, (_, i) => `clip-${String(i).padStart(7, '0')}`);
  const l2 = Float32Array.from({ length: n }, (_, i) => (i % 97) / 97);
  // Distinct arrays: writeParquetFile fails ("failed to fill whole buffer") when two columns
  // share one typed array.
  const cos = l2.map((x) => 1 - x);
  const clusterColumns = (k: number): ColumnSpec[] => [
    { name: 'id', type: 'utf8', values: ids },
    { name: 'embedding', type: 'fixed-list-float32', values: emb, listSize: dim },
    { name: 'centroid', type: 'int32', values: new Int32Array(n).fill(k) },
    { name: 'l2_dist_to_cent', type: 'float32', values: l2 },
    { name: 'cosine_dist_to_cent', type: 'float32', values: cos },
  ];
  const target = (kind: string, k: number): string => path.join(WORK, kind, 'kmeans_results', `centroid=${k}`, 'part-00000.parquet');
  const write: Record<string, Timing> = {
    wasm: { name: 'write parquet-wasm', ms: [] },
    duck: { name: 'write duckdb', ms: [] },
    py: { name: 'write pyarrow', ms: [] },
  };
  const instance = await DuckDBInstance.create(':memory:', { threads: String(cpus().length) });
  const connection = await instance.connect();
  const bytes: Record<string, number> = {};
  try {
    for (let r = 0; r < reps; r++) {
      rmSync(WORK, { recursive: true, force: true });
      mkdirSync(WORK, { recursive: true });
      const w = await timed(async () => {
        for (let k = 0; k < writeFiles; k++) await writeParquetFile(target('wasm', k), clusterColumns(k));
      });
      const d = await timed(async () => {
        for (let k = 0; k < writeFiles; k++) await writeParquetViaDuckDb(connection, target('duckdb', k), clusterColumns(k));
      });
      write.wasm!.ms.push(w.ms);
      write.duck!.ms.push(d.ms);
      if (!args['no-python']) {
        const py = python(PY_WRITE(path.join(WORK, 'pyarrow', 'kmeans_results'), writeFiles, n, dim));
        if (py) write.py!.ms.push(py.ms!);
      }
      for (const kind of ['wasm', 'duckdb', 'pyarrow']) if (existsSync(path.join(WORK, kind))) bytes[kind] = dirBytes(path.join(WORK, kind));
    }
  } finally {
    connection.closeSync();
    instance.closeSync();
  }

  const writeBytes = writeFiles * n * dim * 4;
  console.log(`read ${(readBytes / 1e6).toFixed(0)} MB of embeddings:`);
  for (const t of Object.values(read)) if (t.ms.length) console.log(`  ${summary(t, readBytes)}`);
  console.log(`write ${(writeBytes / 1e6).toFixed(0)} MB of embeddings (${writeFiles} files):`);
  for (const t of Object.values(write)) if (t.ms.length) console.log(`  ${summary(t, writeBytes)}`);
  console.log(`  file bytes: ${Object.entries(bytes).map(([k, v]) => `${k} ${(v / 1e6).toFixed(1)} MB`).join(', ')}`);
  if (args.json) {
    writeFileSync(args.json, JSON.stringify({ rows, dim, files: files.length, writeFiles, writeRows, batchRows, read, write, bytes }, null, 2));
  }
}

await main();
