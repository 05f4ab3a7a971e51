/**
 * Kernel benchmark: our pairwise (ranked triangle) and assignment kernels against NumPy/OpenBLAS
 * on the same shapes, side by side in one run. `python3 bench/kernels_numpy.py` runs as a child
 * process and single repetitions alternate (ours, numpy, ours, ...), so noise from other work on
 * the machine hits both alike; each side reports its best repetition.
 *
 *   npx tsx bench/kernels.ts [--rows 1000,4000,10000] [--dims 768,512] [--block 1024[,2048...]]
 *                            [--centroids 50,1000] [--repeats 5] [--threads 2] [--backend cpu]
 *                            [--settle-ms 300] [--out F]
 *
 * Each timed repetition starts after --settle-ms of idle (see `settleMs`).
 *
 * FLOPs: 2·d per (query, candidate) pair actually multiplied. NumPy's pairwise multiplies, per
 * block [s, e), (e - s) queries × (e - 1) candidates (the whole diagonal block, then masks it);
 * ours is counted from the GEMMs the cpu kernel reports (onGemm), which skip most of the masked
 * half. Assignment: 2·d·rows·centroids on both. GFLOP/s = FLOPs / best-of-N seconds; the ratio
 * column compares wall times (numpy / ours: above 1 means ours is faster). Writes
 * bench/results/kernels.json.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createCpuKernel } from '../src/kernels/cpu/index.js';
import { createKernel, pairwiseRankedBlock } from '../src/kernels/index.js';
import type { BackendName, SimilarityKernel } from '../src/kernels/index.js';

const here = dirname(fileURLToPath(import.meta.url));

const { values: args } = parseArgs({
  options: {
    rows: { type: 'string', default: '1000,4000,10000' },
    dims: { type: 'string', default: '768,512' },
    block: { type: 'string', default: '1024' },
    centroids: { type: 'string', default: '50,1000' },
    repeats: { type: 'string', default: '5' },
    threads: { type: 'string', default: '2' },
    'settle-ms': { type: 'string', default: '300' },
    backend: { type: 'string', default: 'cpu' },
    out: { type: 'string', default: join(here, 'results', 'kernels.json') },
  },
});
const list = (s: string) => s.split(',').filter(Boolean).map(Number);
const threads = Number(args.threads);
const repeats = Number(args.repeats);
/**
 * Pause before each timed repetition of either side. OpenBLAS's worker threads busy-wait after a
 * call (OPENBLAS_THREAD_TIMEOUT: 2^28 cycles by default, ~0.1 s) before they sleep, so without a
 * pause they hold both cores while our run right after NumPy's starts; onnxruntime's threads do
 * not spin (allow_spinning=0), so the penalty only ever hit our side.
 */
const settleMs = Number(args['settle-ms']);
const settle = () => new Promise<void>((resolve) => setTimeout(resolve, settleMs));

/** Seeded unit-length rows (mulberry32 + Box–Muller): deterministic data, like the real input. */
function unitRows(rows: number, dim: number, seed: number): Float32Array {
  let a = seed >>> 0;
  const rand = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out = new Float32Array(rows * dim);
  for (let r = 0; r < rows; r++) {
    let norm = 0;
    for (let k = 0; k < dim; k++) {
      const v = Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
      out[r * dim + k] = v;
      norm += v * v;
    }
    const inv = 1 / Math.sqrt(norm);
    for (let k = 0; k < dim; k++) out[r * dim + k]! *= inv;
  }
  return out;
}

async function seconds(fn: () => Promise<unknown>): Promise<number> {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e9;
}

interface Case {
  kind: 'pairwise' | 'assign';
  rows: number;
  dim: number;
  block?: number;
  centroids?: number;
}

function caseFlops(c: Case): number {
  if (c.kind === 'assign') return 2 * c.dim * c.rows * c.centroids!;
  let pairs = 0;
  for (let s = 0; s < c.rows; s += c.block!) {
    const e = Math.min(c.rows, s + c.block!);
    pairs += (e - s) * Math.max(e - 1, 0);
  }
  return 2 * c.dim * pairs;
}

/** The job for one case on our kernel (data built once, outside the timing). */
function oursJob(kernel: SimilarityKernel, c: Case): () => Promise<unknown> {
  if (c.kind === 'pairwise') {
    const ranked = unitRows(c.rows, c.dim, 1);
    return async () => {
      for (let s = 0; s < c.rows; s += c.block!) await pairwiseRankedBlock(kernel, ranked, c.dim, s, Math.min(c.rows, s + c.block!));
    };
  }
  const x = unitRows(c.rows, c.dim, 1);
  const cent = unitRows(c.centroids!, c.dim, 2);
  return () => kernel.nearestCentroid(x, cent, c.dim);
}

/** The NumPy side: one long-lived python3 child speaking JSON lines. */
function startNumpy() {
  const env = { ...process.env, OPENBLAS_NUM_THREADS: String(threads), OMP_NUM_THREADS: String(threads), MKL_NUM_THREADS: String(threads) };
  const child = spawn('python3', [join(here, 'kernels_numpy.py')], { env, stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  let exited: string | undefined;
  child.on('exit', (code) => (exited = `kernels_numpy.py exited with ${code} (is numpy installed? python3 -c 'import numpy')`));
  const ask = async (msg: object): Promise<Record<string, unknown>> => {
    if (exited) throw new Error(exited);
    child.stdin.write(`${JSON.stringify(msg)}\n`);
    const { value, done } = await lines.next();
    if (done) throw new Error(exited ?? 'kernels_numpy.py closed its output');
    return JSON.parse(value) as Record<string, unknown>;
  };
  return {
    setup: async (c: Case) => (await ask({ op: 'setup', case: c })).numpy as string,
    run: async () => (await ask({ op: 'run' })).seconds as number,
    close: () => child.stdin.end(),
  };
}

const cases: Case[] = [];
for (const dim of list(args.dims)) {
  for (const block of list(args.block)) for (const rows of list(args.rows)) cases.push({ kind: 'pairwise', rows, dim, block });
  for (const rows of list(args.rows)) for (const centroids of list(args.centroids)) cases.push({ kind: 'assign', rows, dim, centroids });
}

const loadBefore = os.loadavg()[0]!;
// FLOPs our kernel actually ran (cpu backend only; others are charged numpy's count).
let ourFlops = 0;
const kernel =
  args.backend === 'cpu'
    ? await createCpuKernel({ threads, onGemm: (rows, columns, dim) => (ourFlops += 2 * rows * columns * dim) })
    : await createKernel(args.backend as BackendName, { threads, warn: (m) => console.warn(m) });
const numpy = startNumpy();
const results = [];
let numpyVersion = '';
console.log(`backend: ${kernel.description}; numpy with OPENBLAS_NUM_THREADS=${threads}; best of ${repeats}\n`);
const header = ['kernel', 'shape', 'ours ms', 'numpy ms', 'speed vs numpy', 'ours GFLOP/s', 'numpy GFLOP/s', 'ours FLOPs / numpy FLOPs'];
console.log(`| ${header.join(' | ')} |`);
console.log(`|${header.map(() => '---').join('|')}|`);
for (const c of cases) {
  const flops = caseFlops(c);
  const job = oursJob(kernel, c);
  ourFlops = 0;
  await job(); // warm-up (session arenas, first-touch pages); also counts our FLOPs
  const oursFlops = args.backend === 'cpu' ? ourFlops : flops;
  numpyVersion = await numpy.setup(c);
  let ours = Infinity;
  let theirs = Infinity;
  for (let r = 0; r < repeats; r++) {
    await settle();
    ours = Math.min(ours, await seconds(job));
    await settle();
    theirs = Math.min(theirs, await numpy.run());
  }
  const np = { seconds: theirs };
  const shape = c.kind === 'pairwise' ? `${c.rows}×${c.dim}, block ${c.block}` : `${c.rows}×${c.dim} → ${c.centroids} centroids`;
  const row = {
    ...c,
    shape,
    numpy_gflop: flops / 1e9,
    ours_gflop: oursFlops / 1e9,
    ours_seconds: ours,
    numpy_seconds: np.seconds,
    ours_gflops: oursFlops / ours / 1e9,
    numpy_gflops: flops / np.seconds / 1e9,
    speed_vs_numpy: np.seconds / ours,
  };
  results.push(row);
  const cells = [
    c.kind,
    shape,
    (ours * 1e3).toFixed(1),
    (np.seconds * 1e3).toFixed(1),
    `${row.speed_vs_numpy.toFixed(2)}×`,
    row.ours_gflops.toFixed(1),
    row.numpy_gflops.toFixed(1),
    (oursFlops / flops).toFixed(2),
  ];
  console.log(`| ${cells.join(' | ')} |`);
}
await kernel.close();
numpy.close();

mkdirSync(dirname(args.out), { recursive: true });
writeFileSync(
  args.out,
  `${JSON.stringify(
    {
      date: new Date().toISOString(),
      // Load average (1 min) around the run: the cores are shared, so say how busy they were.
      machine: { cpu: os.cpus()[0]?.model ?? 'unknown', logicalCpus: os.cpus().length, node: process.version, loadBefore, loadAfter: os.loadavg()[0] },
      backend: kernel.name,
      description: kernel.description,
      threads,
      repeats,
      numpy: numpyVersion,
      results,
    },
    null,
    2,
  )}\n`,
);
console.log(`\nload average (1 min) before/after: ${loadBefore.toFixed(2)} / ${os.loadavg()[0]!.toFixed(2)}; wrote ${args.out}`);
