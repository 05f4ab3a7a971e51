/**
 * Why the cpu kernel's open graph reduces in blocks: times the ways to get max + first argmax of
 * Q·Cᵀ out of onnxruntime on one pairwise shape, alternating variants so noise hits all alike.
 *
 *   npx tsx bench/kernels_variants.ts [--m 1024] [--n 8192] [--dim 768] [--repeats 5] [--threads 2]
 *
 * Variants: GEMM alone (the floor), GEMM + ReduceMax + ArgMax, GEMM + TopK(k=1), and the
 * blocked reduction the kernel uses (ReduceMax per block, ArgMax over block maxima and inside
 * the winning block) at a few block widths. Each variant's indices are checked against the
 * plain ArgMax.
 */
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { rankedMaxOpenModel } from '../src/kernels/cpu/graphs.js';
import { OnnxType, attr, encodeModel } from '../src/kernels/cpu/onnx-model.js';
import type { OnnxInitializer, OnnxNode, OnnxValueInfo } from '../src/kernels/cpu/onnx-model.js';

const { values: args } = parseArgs({
  options: {
    m: { type: 'string', default: '1024' },
    n: { type: 'string', default: '8192' },
    dim: { type: 'string', default: '768' },
    repeats: { type: 'string', default: '5' },
    threads: { type: 'string', default: '2' },
  },
});
const [m, n, dim, repeats] = [Number(args.m), Number(args.n), Number(args.dim), Number(args.repeats)];
const F = OnnxType.FLOAT;
const I64 = OnnxType.INT64;

function model(nodes: OnnxNode[], outputs: OnnxValueInfo[], initializers: OnnxInitializer[] = []): Uint8Array {
  return encodeModel({
    name: 'variant',
    initializers,
    inputs: [
      { name: 'queries', elemType: F, dims: ['m', 'd'] },
      { name: 'candidates', elemType: F, dims: ['n', 'd'] },
    ],
    outputs,
    nodes: [{ op: 'Gemm', inputs: ['queries', 'candidates'], outputs: ['sim'], attributes: { transB: attr.int(1) } }, ...nodes],
  });
}

const score = { name: 'score', elemType: F, dims: ['m'] } as const;
const variants: Record<string, Uint8Array> = {
  'gemm only (ReduceMax, no argmax)': model([{ op: 'ReduceMax', inputs: ['sim'], outputs: ['score'], attributes: { axes: attr.ints([1]), keepdims: attr.int(0) } }], [score]),
  'ReduceMax + ArgMax': model(
    [
      { op: 'ReduceMax', inputs: ['sim'], outputs: ['score'], attributes: { axes: attr.ints([1]), keepdims: attr.int(0) } },
      { op: 'ArgMax', inputs: ['sim'], outputs: ['index'], attributes: { axis: attr.int(1), keepdims: attr.int(0) } },
    ],
    [score, { name: 'index', elemType: I64, dims: ['m'] }],
  ),
  'TopK k=1': model(
    [
      { op: 'TopK', inputs: ['sim', 'k'], outputs: ['top', 'top_index'], attributes: { axis: attr.int(1) } },
      { op: 'Squeeze', inputs: ['top', 'axis1'], outputs: ['score'] },
      { op: 'Squeeze', inputs: ['top_index', 'axis1'], outputs: ['index'] },
    ],
    [score, { name: 'index', elemType: I64, dims: ['m'] }],
    [
      { name: 'k', elemType: I64, dims: [1], values: [1] },
      { name: 'axis1', elemType: I64, dims: [1], values: [1] },
    ],
  ),
  'blocked (kernel, 128)': rankedMaxOpenModel(),
};

const opts: ort.InferenceSession.SessionOptions = { intraOpNumThreads: Number(args.threads), interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all' };
const sessions = await Promise.all(Object.entries(variants).map(async ([name, bytes]) => [name, await ort.InferenceSession.create(bytes, opts)] as const));
const rand = () => Math.random() - 0.5;
const feeds = {
  queries: new ort.Tensor('float32', Float32Array.from({ length: m * dim }, rand), [m, dim]),
  candidates: new ort.Tensor('float32', Float32Array.from({ length: n * dim }, rand), [n, dim]),
};
const best = new Map<string, number>();
let reference: number[] | undefined;
for (let r = 0; r <= repeats; r++) {
  for (const [name, s] of sessions) {
    const t = process.hrtime.bigint();
    const out = await s.run(feeds);
    const seconds = Number(process.hrtime.bigint() - t) / 1e9;
    if (r === 0) {
      // First round is the warm-up; check indices against plain ArgMax once.
      const idx = out.index ? Array.from(out.index.data as ArrayLike<number | bigint>, Number) : undefined;
      if (name === 'ReduceMax + ArgMax') reference = idx;
      else if (idx && reference && idx.some((v, i) => v !== reference![i])) console.warn(`${name}: indices differ from ArgMax`);
      continue;
    }
    best.set(name, Math.min(best.get(name) ?? Infinity, seconds));
  }
}
const flops = 2 * m * n * dim;
console.log(`${m}×${n}, dim ${dim}, ${args.threads} threads, best of ${repeats}`);
for (const [name, seconds] of best) console.log(`${name.padEnd(36)} ${(seconds * 1e3).toFixed(1).padStart(8)} ms ${(flops / seconds / 1e9).toFixed(1).padStart(7)} GFLOP/s`);
