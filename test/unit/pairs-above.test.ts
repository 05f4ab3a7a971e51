import { describe, expect, it } from 'vitest';
import { createKernel, similarityPairsAbove } from '../../src/kernels/index.js';
import type { PairsAboveResult, SimilarityKernel } from '../../src/kernels/index.js';
import { createCpuPairsAbove } from '../../src/kernels/cpu/index.js';
import { similarityPairsAboveJs } from '../../src/kernels/js/index.js';

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Unit rows in a few tight groups, so many pairs clear a high threshold. */
function groupedUnitRows(rows: number, dim: number, seed: number): Float32Array {
  const rand = rng(seed);
  const centers = Array.from({ length: 5 }, () => Float32Array.from({ length: dim }, () => rand() * 2 - 1));
  const out = new Float32Array(rows * dim);
  for (let r = 0; r < rows; r++) {
    const c = centers[Math.floor(rand() * centers.length)]!;
    let norm = 0;
    for (let k = 0; k < dim; k++) {
      const v = c[k]! + 0.15 * (rand() * 2 - 1);
      out[r * dim + k] = v;
      norm += v * v;
    }
    for (let k = 0; k < dim; k++) out[r * dim + k]! /= Math.sqrt(norm);
  }
  return out;
}

/** Every pair of `expected` is in `actual` with a score within 1e-5, except pairs within 1e-5 of the threshold. */
function expectSamePairs(actual: PairsAboveResult, expected: PairsAboveResult, threshold: number): void {
  const key = (r: PairsAboveResult, i: number) => `${r.query[i]}:${r.candidate[i]}`;
  const got = new Map(Array.from(actual.query, (_, i) => [key(actual, i), actual.score[i]!] as const));
  const want = new Map(Array.from(expected.query, (_, i) => [key(expected, i), expected.score[i]!] as const));
  for (const [k, s] of want) {
    if (!got.has(k)) expect(s - threshold, `missing ${k}`).toBeLessThan(1e-5);
    else expect(Math.abs(got.get(k)! - s), k).toBeLessThan(1e-5);
  }
  for (const [k, s] of got) if (!want.has(k)) expect(s - threshold, `extra ${k}`).toBeLessThan(1e-5);
  // Sorted by (query, candidate).
  for (let i = 1; i < actual.query.length; i++) {
    const order = actual.query[i - 1]! - actual.query[i]! || actual.candidate[i - 1]! - actual.candidate[i]!;
    expect(order).toBeLessThan(0);
  }
}

describe('similarityPairsAbove', () => {
  const dim = 24;
  const rows = groupedUnitRows(370, dim, 1);
  const queries = rows.subarray(0, 70 * dim);
  const candidates = rows.subarray(70 * dim);
  const threshold = 0.9;
  const reference = similarityPairsAboveJs(queries, candidates, dim, threshold);

  it('js reference: exactly the pairs whose float32 score reaches the threshold', () => {
    expect(reference.query.length).toBeGreaterThan(500);
    let count = 0;
    for (let q = 0; q < 70; q++) {
      for (let c = 0; c < 300; c++) {
        let dot = 0;
        for (let k = 0; k < dim; k++) dot += queries[q * dim + k]! * candidates[c * dim + k]!;
        if (Math.fround(dot) >= threshold) count++;
      }
    }
    expect(reference.query.length).toBe(count);
    expect(Math.min(...reference.score)).toBeGreaterThanOrEqual(threshold);
  });

  it.each([
    ['one block', 1 << 24],
    ['row blocks', 64 * 300],
    ['row and column blocks, sorted afterwards', 64 * 50],
  ])('cpu (ORT GEMM + JS scan), %s, equals js', async (_name, maxMatrixElements) => {
    const cpu = createCpuPairsAbove({ maxMatrixElements });
    try {
      expectSamePairs(await cpu.similarityPairsAbove(queries, candidates, dim, threshold), reference, threshold);
    } finally {
      await cpu.close();
    }
  });

  it('every backend through createKernel, and the js fallback for a kernel without it', async () => {
    for (const backend of ['js', 'cpu'] as const) {
      const kernel = await createKernel(backend);
      try {
        expectSamePairs(await similarityPairsAbove(kernel, queries, candidates, dim, threshold), reference, threshold);
      } finally {
        await kernel.close();
      }
    }
    const js = await createKernel('js');
    const bare: SimilarityKernel = { name: 'js', description: 'no pairs method', rankedMax: js.rankedMax, nearestCentroid: js.nearestCentroid, close: js.close };
    expectSamePairs(await similarityPairsAbove(bare, queries, candidates, dim, threshold), reference, threshold);
    const empty = await similarityPairsAbove(bare, queries.subarray(0, 0), candidates, dim, threshold);
    expect(empty.query.length).toBe(0);
  });
});
