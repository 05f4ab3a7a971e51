import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyNothingBeforeRule, createKernel, pairwiseRankedBlock } from '../../src/kernels/index.js';
import type { RankedMaxInput, RankedMaxResult, SimilarityKernel } from '../../src/kernels/index.js';
import { createCpuKernel } from '../../src/kernels/cpu/index.js';
import { createGpuKernel } from '../../src/kernels/gpu/index.js';
import { createJsKernel, nearestCentroidJs, rankedMaxJs } from '../../src/kernels/js/index.js';

const TOL = 1e-5;

/** Deterministic generator (mulberry32) so failures reproduce. */
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

/** Unit-length rows: what the pipeline feeds the kernels (it normalizes every embedding). */
function unitRows(rows: number, dim: number, rand: () => number): Float32Array {
  const out = new Float32Array(rows * dim);
  for (let r = 0; r < rows; r++) {
    let norm = 0;
    for (let k = 0; k < dim; k++) {
      const v = rand() * 2 - 1;
      out[r * dim + k] = v;
      norm += v * v;
    }
    for (let k = 0; k < dim; k++) out[r * dim + k]! /= Math.sqrt(norm);
  }
  return out;
}

function copyRow(data: Float32Array, dim: number, from: number, to: number, dst = data): void {
  dst.set(data.subarray(from * dim, (from + 1) * dim), to * dim);
}

function dot(a: Float32Array, ai: number, b: Float32Array, bi: number, dim: number): number {
  let s = 0;
  for (let k = 0; k < dim; k++) s += a[ai * dim + k]! * b[bi * dim + k]!;
  return s;
}

/** Sorted distinct positions: `count` of them, spread so queries can fall between candidates. */
function ascendingPositions(count: number, rand: () => number): Int32Array {
  const pos = new Int32Array(count);
  let p = 0;
  for (let i = 0; i < count; i++) pos[i] = p += 1 + Math.floor(rand() * 3);
  return pos;
}

/**
 * Agreement with the js reference: same score within TOL, and the same index — or, for a near
 * tie that float32 summation order can flip, an index whose exact similarity is within TOL of
 * the max and that is ranked before the query. `exact` demands the very same index.
 */
function expectRankedMatches(actual: RankedMaxResult, input: RankedMaxInput, exact = false): void {
  const ref = rankedMaxJs(input);
  const m = input.queryPos.length;
  expect(actual.score).toHaveLength(m);
  expect(actual.index).toHaveLength(m);
  for (let q = 0; q < m; q++) {
    const want = ref.index[q]!;
    const got = actual.index[q]!;
    if (want === -1) {
      expect({ q, index: got, score: actual.score[q] }).toEqual({ q, index: -1, score: -Infinity });
      continue;
    }
    expect(Math.abs(actual.score[q]! - ref.score[q]!), `score of query ${q}`).toBeLessThanOrEqual(TOL);
    if (exact || got === want) {
      expect({ q, index: got }).toEqual({ q, index: want });
    } else {
      expect(got, `index of query ${q}`).toBeGreaterThanOrEqual(0);
      expect(input.candidatePos[got]!).toBeLessThan(input.queryPos[q]!);
      expect(Math.abs(dot(input.queries, q, input.candidates, got, input.dim) - ref.score[q]!)).toBeLessThanOrEqual(TOL);
    }
  }
}

interface Backend {
  label: string;
  /** gpu.js in its CPU mode is a slow interpreter of the kernel code: tiny inputs only. */
  tinyOnly: boolean;
  make: () => Promise<SimilarityKernel>;
}

const backends: Backend[] = [
  { label: 'js', tinyOnly: false, make: async () => createJsKernel() },
  { label: 'cpu', tinyOnly: false, make: () => createCpuKernel({ threads: 2 }) },
  // Tiny matrix budget and query groups: every call splits into many column blocks and groups.
  { label: 'cpu (small blocks)', tinyOnly: false, make: () => createCpuKernel({ threads: 2, maxMatrixElements: 1, groupRows: 3 }) },
  { label: 'gpu (fallback or real)', tinyOnly: false, make: () => createGpuKernel({ threads: 2, warn: () => {} }) },
  { label: 'gpu.js forced cpu mode', tinyOnly: true, make: () => createGpuKernel({ forceMode: 'cpu' }) },
];

describe.each(backends)('$label kernel agrees with js', ({ make, tinyOnly }) => {
  let kernel: SimilarityKernel;
  beforeAll(async () => {
    kernel = await make();
  });
  afterAll(async () => {
    await kernel.close();
  });

  const dims = tinyOnly ? [7, 64] : [7, 64, 768];

  it.each(dims)('rankedMax on random data, dim %i, interleaved positions', async (dim) => {
    const rand = rng(dim);
    const n = tinyOnly ? 40 : 300;
    const m = tinyOnly ? 12 : 70;
    const candidates = unitRows(n, dim, rand);
    const candidatePos = ascendingPositions(n, rand);
    const queries = unitRows(m, dim, rand);
    const last = candidatePos[n - 1]!;
    const queryPos = Int32Array.from({ length: m }, () => Math.floor(rand() * (last + 5)));
    const input = { queries, queryPos, candidates, candidatePos, dim };
    expectRankedMatches(await kernel.rankedMax(input), input);
  });

  it.each(dims)('exact duplicate candidates resolve to the first-ranked copy, dim %i', async (dim) => {
    const rand = rng(100 + dim);
    // Shapes where MLAS splits the candidates over threads with different K blocking, so copies
    // of a row really do get different float32 dots (observed: about a third of them).
    const n = tinyOnly ? 30 : 80;
    const candidates = unitRows(n, dim, rand);
    const dupOf = [3, 10];
    for (const [k, to] of [n - 5, n - 15, n - 10, n - 1].entries()) copyRow(candidates, dim, dupOf[k % 2]!, to);
    const candidatePos = Int32Array.from({ length: n }, (_, i) => i);
    // Queries equal to the duplicated rows (the max is the duplicated row) plus noisy variants.
    const m = 8;
    const queries = unitRows(m, dim, rand);
    for (let q = 0; q < m; q++) if (q % 2 === 0) copyRow(candidates, dim, dupOf[(q / 2) % 2]!, q, queries);
    const queryPos = Int32Array.from({ length: m }, (_, q) => (q < 4 ? n : n - 3 + (q % 3)));
    const input = { queries, queryPos, candidates, candidatePos, dim };
    const got = await kernel.rankedMax(input);
    expectRankedMatches(got, input);
    for (let q = 0; q < m; q += 2) expect(got.index[q], `query ${q}`).toBe(dupOf[(q / 2) % 2]);
  });

  it('a query identical to many earlier copies points at the first copy, at every position', async () => {
    const dim = tinyOnly ? 7 : 64;
    const rand = rng(7);
    const n = tinyOnly ? 20 : 120;
    const candidates = unitRows(n, dim, rand);
    for (let i = 5; i < n; i += 3) copyRow(candidates, dim, 2, i);
    const candidatePos = Int32Array.from({ length: n }, (_, i) => 10 * i);
    const m = n;
    const queries = new Float32Array(m * dim);
    for (let q = 0; q < m; q++) copyRow(candidates, dim, 2, q, queries);
    const queryPos = Int32Array.from({ length: m }, (_, q) => 10 * q + 5);
    const input = { queries, queryPos, candidates, candidatePos, dim };
    const got = await kernel.rankedMax(input);
    expectRankedMatches(got, input, true);
    for (let q = 3; q < m; q++) expect(got.index[q]).toBe(2);
  });

  it.each(dims)('queries ranked after hundreds of candidates, ties across column blocks, dim %i', async (dim) => {
    // Long unmasked prefixes: the cpu kernel's blocked max/argmax path and its column blocks.
    const rand = rng(300 + dim);
    const n = tinyOnly ? 60 : 700;
    const candidates = unitRows(n, dim, rand);
    const copies = tinyOnly ? [7, 30, 59] : [5, 127, 128, 300, 511, 699];
    for (const c of copies.slice(1)) copyRow(candidates, dim, copies[0]!, c);
    const candidatePos = Int32Array.from({ length: n }, (_, i) => 2 * i);
    const m = tinyOnly ? 6 : 40;
    const queries = unitRows(m, dim, rand);
    for (let q = 0; q < m; q += 3) copyRow(candidates, dim, copies[0]!, q, queries);
    const queryPos = Int32Array.from({ length: m }, (_, q) => n + Math.floor(rand() * n) + (q % 2));
    const input = { queries, queryPos, candidates, candidatePos, dim };
    const got = await kernel.rankedMax(input);
    expectRankedMatches(got, input);
    for (let q = 0; q < m; q += 3) expect(got.index[q], `query ${q}`).toBe(copies[0]);
  });

  it('rankedMax with only negative similarities keeps the least negative', async () => {
    const dim = 64;
    const rand = rng(11);
    const n = 30;
    const base = unitRows(1, dim, rand);
    // Candidates all close to -base; queries close to +base: every similarity is negative.
    const candidates = new Float32Array(n * dim);
    for (let i = 0; i < n; i++) for (let k = 0; k < dim; k++) candidates[i * dim + k] = -base[k]! + 0.2 * (rand() - 0.5);
    const queries = new Float32Array(5 * dim);
    for (let q = 0; q < 5; q++) for (let k = 0; k < dim; k++) queries[q * dim + k] = base[k]! + 0.2 * (rand() - 0.5);
    const candidatePos = Int32Array.from({ length: n }, (_, i) => i);
    const queryPos = Int32Array.from([n, 1, 15, 2, n + 9]);
    const input = { queries, queryPos, candidates, candidatePos, dim };
    const got = await kernel.rankedMax(input);
    expectRankedMatches(got, input);
    for (const s of got.score) expect(s).toBeLessThan(0);
  });

  it('rankedMax with no candidates answers -Infinity / -1', async () => {
    const dim = 7;
    const queries = unitRows(3, dim, rng(1));
    const got = await kernel.rankedMax({ queries, queryPos: Int32Array.from([0, 5, 9]), candidates: new Float32Array(0), candidatePos: new Int32Array(0), dim });
    expect(Array.from(got.score)).toEqual([-Infinity, -Infinity, -Infinity]);
    expect(Array.from(got.index)).toEqual([-1, -1, -1]);
  });

  it('queries ranked before every candidate (or equal to the first) get -Infinity / -1', async () => {
    const dim = 64;
    const rand = rng(3);
    const candidates = unitRows(10, dim, rand);
    const candidatePos = Int32Array.from({ length: 10 }, (_, i) => 100 + i);
    const queries = unitRows(4, dim, rand);
    const input = { queries, queryPos: Int32Array.from([0, 99, 100, 50]), candidates, candidatePos, dim };
    const got = await kernel.rankedMax(input);
    expect(Array.from(got.index)).toEqual([-1, -1, -1, -1]);
    expect(Array.from(got.score)).toEqual([-Infinity, -Infinity, -Infinity, -Infinity]);
  });

  it.each(dims)('rankedMax with a single query (m = 1), dim %i', async (dim) => {
    const rand = rng(50 + dim);
    const n = tinyOnly ? 25 : 200;
    const candidates = unitRows(n, dim, rand);
    const candidatePos = Int32Array.from({ length: n }, (_, i) => i);
    for (const qp of [0, 1, Math.floor(n / 2), n]) {
      const input = { queries: unitRows(1, dim, rand), queryPos: Int32Array.from([qp]), candidates, candidatePos, dim };
      expectRankedMatches(await kernel.rankedMax(input), input);
    }
  });

  it('pairwiseRankedBlock over every block size equals brute force over the ranked cluster', async () => {
    const dim = 16;
    const rand = rng(21);
    const n = tinyOnly ? 13 : 23;
    const ranked = unitRows(n, dim, rand);
    copyRow(ranked, dim, 4, 9);
    copyRow(ranked, dim, 4, n - 1);
    // Brute force: max over every earlier row, first earlier row on ties.
    const want = rankedMaxJs({ queries: ranked, queryPos: Int32Array.from({ length: n }, (_, i) => i), candidates: ranked, candidatePos: Int32Array.from({ length: n }, (_, i) => i), dim });
    for (let block = 1; block <= n; block++) {
      const score = new Float32Array(n);
      const index = new Int32Array(n);
      for (let s = 0; s < n; s += block) {
        const e = Math.min(n, s + block);
        const r = await pairwiseRankedBlock(kernel, ranked, dim, s, e);
        score.set(r.score, s);
        index.set(r.index, s);
      }
      expect(Array.from(index), `block ${block}`).toEqual(Array.from(want.index));
      for (let i = 0; i < n; i++) {
        if (want.index[i] === -1) expect(score[i]).toBe(-Infinity);
        else expect(Math.abs(score[i]! - want.score[i]!), `block ${block}, row ${i}`).toBeLessThanOrEqual(TOL);
      }
    }
  });

  it("reproduces NeMo's reference pairwise case", async () => {
    const raw = [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12], [1, 2, 3], [1, 2, 3]];
    const ranked = new Float32Array(raw.flatMap((r) => { const norm = Math.hypot(...r); return r.map((v) => v / norm); }));
    const r = await pairwiseRankedBlock(kernel, ranked, 3, 0, raw.length);
    const rows = Array.from(r.score, (s, i) => applyNothingBeforeRule(s, r.index[i]!));
    const maxId = rows.map((x, i) => (x.index < 0 ? i : x.index));
    expect(maxId).toEqual([0, 0, 1, 2, 0, 0]);
    [0, 0.974631, 0.99819, 0.999618, 1, 1].forEach((s, i) => expect(rows[i]!.score).toBeCloseTo(s, 5));
  });

  it.each(dims)('nearestCentroid on random data, dim %i', async (dim) => {
    const rand = rng(200 + dim);
    const n = tinyOnly ? 15 : 150;
    const k = tinyOnly ? 6 : 40;
    const x = unitRows(n, dim, rand);
    const centroids = unitRows(k, dim, rand);
    // Centroids are means of unit vectors: shorter than 1.
    for (let i = 0; i < centroids.length; i++) centroids[i]! *= 0.8;
    const got = await kernel.nearestCentroid(x, centroids, dim);
    const ref = nearestCentroidJs(x, centroids, dim);
    for (let i = 0; i < n; i++) {
      expect(Math.abs(got.dist2[i]! - ref.dist2[i]!), `dist2 of row ${i}`).toBeLessThanOrEqual(TOL);
      if (got.index[i] !== ref.index[i]) {
        // Near tie: the chosen centroid must be as close within tolerance.
        const c = got.index[i]!;
        let d2 = 0;
        for (let j = 0; j < dim; j++) d2 += (x[i * dim + j]! - centroids[c * dim + j]!) ** 2;
        expect(Math.abs(d2 - ref.dist2[i]!)).toBeLessThanOrEqual(TOL);
      }
    }
  });

  it('nearestCentroid ties (duplicate centroids) resolve to the lowest index', async () => {
    const dim = tinyOnly ? 7 : 768;
    const rand = rng(9);
    const k = 70;
    const centroids = unitRows(k, dim, rand);
    copyRow(centroids, dim, 4, 33);
    copyRow(centroids, dim, 4, 69);
    copyRow(centroids, dim, 20, 50);
    const n = 12;
    const x = unitRows(n, dim, rand);
    for (let i = 0; i < n; i++) {
      // Rows near centroid 4 or 20 (both duplicated), so the duplicate pair holds the minimum.
      const c = i % 2 === 0 ? 4 : 20;
      for (let j = 0; j < dim; j++) x[i * dim + j] = centroids[c * dim + j]! + (i < 4 ? 0 : 0.01 * (rand() - 0.5));
    }
    const got = await kernel.nearestCentroid(x, centroids, dim);
    expect(Array.from(got.index)).toEqual(Array.from({ length: n }, (_, i) => (i % 2 === 0 ? 4 : 20)));
    const ref = nearestCentroidJs(x, centroids, dim);
    for (let i = 0; i < n; i++) expect(Math.abs(got.dist2[i]! - ref.dist2[i]!)).toBeLessThanOrEqual(TOL);
    for (const d of got.dist2) expect(d).toBeGreaterThanOrEqual(0);
  });

  it.each(dims)('nearestCentroidSums (when the backend has it): nearestCentroid plus per-centroid row sums, dim %i', async (dim) => {
    if (!kernel.nearestCentroidSums) return;
    const rand = rng(300 + dim);
    const n = tinyOnly ? 15 : 300;
    const k = tinyOnly ? 4 : 25;
    const x = unitRows(n, dim, rand);
    const centroids = unitRows(k, dim, rand);
    for (let i = 0; i < centroids.length; i++) centroids[i]! *= 0.8;
    copyRow(centroids, dim, 1, 3); // a duplicate centroid: the lower index takes the rows (and their sum)
    const norms = new Float32Array(n);
    for (let i = 0; i < n; i++) norms[i] = dot(x, i, x, i, dim);
    const got = await kernel.nearestCentroidSums(x, centroids, dim, norms);
    const plain = await kernel.nearestCentroid(x, centroids, dim);
    expect(Array.from(got.index)).toEqual(Array.from(plain.index));
    const ref = nearestCentroidJs(x, centroids, dim);
    const want = new Float64Array(k * dim);
    for (let i = 0; i < n; i++) {
      expect(Math.abs(got.dist2[i]! - ref.dist2[i]!), `dist2 of row ${i}`).toBeLessThanOrEqual(TOL);
      expect(got.index[i]).not.toBe(3);
      const c = got.index[i]!;
      for (let j = 0; j < dim; j++) want[c * dim + j]! += x[i * dim + j]!;
    }
    for (let i = 0; i < want.length; i++) expect(Math.abs(got.sums[i]! - want[i]!), `sum ${i}`).toBeLessThanOrEqual(TOL);
  });

  it.each(dims)('rowDots (when the backend has it) equals the float64 dot products, dim %i', async (dim) => {
    if (!kernel.rowDots) return;
    const rand = rng(400 + dim);
    const n = tinyOnly ? 9 : 500;
    const x = unitRows(n, dim, rand);
    const v = unitRows(1, dim, rand);
    const got = await kernel.rowDots(x, v, dim);
    expect(got).toHaveLength(n);
    for (let i = 0; i < n; i++) expect(Math.abs(got[i]! - dot(x, i, v, 0, dim)), `row ${i}`).toBeLessThanOrEqual(TOL);
    expect(await kernel.rowDots(new Float32Array(0), v, dim)).toHaveLength(0);
  });

  it('nearestCentroid with no rows answers empty arrays', async () => {
    const got = await kernel.nearestCentroid(new Float32Array(0), unitRows(3, 7, rng(1)), 7);
    expect(got.index).toHaveLength(0);
    expect(got.dist2).toHaveLength(0);
  });
});

describe('gpu backend selection', () => {
  it('without a GPU adapter it warns and returns a kernel that reports cpu', async () => {
    const warnings: string[] = [];
    const kernel = await createKernel('gpu', { warn: (m) => warnings.push(m) });
    try {
      if (kernel.name === 'gpu') {
        // A machine with a real GPU: nothing to fall back from.
        expect(warnings).toEqual([]);
        expect(kernel.description).toMatch(/^gpu\.js (headlessgl|webgl2?|webgpu)$/);
        return;
      }
      expect(kernel.name).toBe('cpu');
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatch(/^gpu backend: no GPU adapter found by gpu\.js \(mode [\w-]+.*\); falling back to cpu$/);
      expect(kernel.description).toMatch(/^gpu requested, fell back to cpu: no GPU adapter found by gpu\.js/);
      expect(kernel.description).toContain('onnxruntime');
    } finally {
      await kernel.close();
    }
  });

  it('SEMDEDUP_GPU_FORCE_MODE runs the gpu.js kernels in the named mode', async () => {
    const before = process.env.SEMDEDUP_GPU_FORCE_MODE;
    process.env.SEMDEDUP_GPU_FORCE_MODE = 'cpu';
    const warnings: string[] = [];
    try {
      const kernel = await createGpuKernel({ warn: (m) => warnings.push(m) });
      expect(kernel.name).toBe('gpu');
      expect(kernel.description).toBe('gpu.js cpu (forced, not auto-detected)');
      expect(warnings).toEqual([]);
      const dim = 7;
      const rand = rng(5);
      const input = { queries: unitRows(4, dim, rand), queryPos: Int32Array.from([3, 0, 9, 6]), candidates: unitRows(8, dim, rand), candidatePos: Int32Array.from({ length: 8 }, (_, i) => i), dim };
      expectRankedMatches(await kernel.rankedMax(input), input);
      await kernel.close();
    } finally {
      if (before === undefined) delete process.env.SEMDEDUP_GPU_FORCE_MODE;
      else process.env.SEMDEDUP_GPU_FORCE_MODE = before;
    }
  });

  it('a forced mode gpu.js cannot run here is an InputError naming the setting', async () => {
    await expect(createGpuKernel({ forceMode: 'no-such-mode' })).rejects.toThrow(/gpu\.js mode "no-such-mode" is not available/);
  });
});

describe('cpu crossRankedMax: rank-order walk, position tests and column blocks agree with brute force', () => {
  /** Both directions by brute force in float64: per query the earlier rows, per row the earlier queries. */
  function crossBruteForce(queries: Float32Array, queryPos: Int32Array, rows: Float32Array, rowPos: Int32Array, dim: number) {
    const m = queryPos.length;
    const n = rowPos.length;
    const q = { score: new Float64Array(m).fill(-Infinity), index: new Int32Array(m).fill(-1) };
    const r = { score: new Float64Array(n).fill(-Infinity), index: new Int32Array(n).fill(-1) };
    for (let j = 0; j < m; j++) {
      for (let i = 0; i < n; i++) {
        const s = dot(queries, j, rows, i, dim);
        if (rowPos[i]! < queryPos[j]! && (s > q.score[j]! || (s === q.score[j]! && rowPos[i]! < rowPos[q.index[j]!]!))) {
          q.score[j] = s;
          q.index[j] = i;
        }
        if (rowPos[i]! > queryPos[j]! && s > r.score[i]!) {
          r.score[i] = s;
          r.index[i] = j;
        }
      }
    }
    return { q, r };
  }

  it('with exact copies among the rows, in arrival order, every variant picks the first-ranked copy', async () => {
    const dim = 24;
    const rand = rng(77);
    const n = 300;
    const rows = unitRows(n, dim, rand);
    // Copies: row i repeats an earlier row for every 7th i, so ties between identical rows are common.
    for (let i = 7; i < n; i += 7) copyRow(rows, dim, Math.floor(rand() * i), i);
    // Ranks are a random permutation (rows lie in arrival order); 40 of the rows are the new clips.
    const rowOrder = Int32Array.from({ length: n }, (_, i) => i).sort(() => rand() - 0.5);
    const rowPos = new Int32Array(n);
    rowOrder.forEach((r, p) => (rowPos[r] = p));
    const picked = Int32Array.from({ length: n }, (_, i) => i).filter(() => rand() < 0.15);
    const newSlots = Int32Array.from(picked).sort((a, b) => rowPos[a]! - rowPos[b]!);
    const m = newSlots.length;
    const queries = new Float32Array(m * dim);
    newSlots.forEach((slot, j) => copyRow(rows, dim, slot, j, queries));
    // Exact ties between rows that are not copies: every 9th row starts 0.9, 0 × 10, and every 5th
    // new clip is 0.5·e0 + 0.5·e(1 + t) (t distinct), so its dot with each such row is exactly
    // 0.5 · 0.9 whatever the summation order, and beats any other row: the first-ranked must win,
    // in both directions (no repair for identical rows applies).
    for (let i = 0; i < n; i += 9) rows.fill(0, i * dim, i * dim + 11).fill(0.9, i * dim, i * dim + 1);
    newSlots.forEach((slot, j) => {
      if (j % 5 === 0 && j < 50) rows.fill(0, slot * dim, (slot + 1) * dim).fill(0.5, slot * dim, slot * dim + 1).fill(0.5, slot * dim + 1 + j / 5, slot * dim + 2 + j / 5);
    });
    newSlots.forEach((slot, j) => copyRow(rows, dim, slot, j, queries));
    const queryPos = Int32Array.from(newSlots, (slot) => rowPos[slot]!);
    const ref = crossBruteForce(queries, queryPos, rows, rowPos, dim);
    const tie = 0.5 * Math.fround(0.9);

    const kernels = [await createCpuKernel({ threads: 2 }), await createCpuKernel({ threads: 2, maxMatrixElements: 64 })];
    try {
      const results = [];
      for (const kernel of kernels) {
        results.push(await kernel.crossRankedMax!({ queries, queryPos, rows, rowPos, rowOrder, dim }));
        results.push(await kernel.crossRankedMax!({ queries, queryPos, rows, rowPos, dim }));
      }
      for (const res of results) {
        for (const [got, want] of [
          [res.forQueries, ref.q],
          [res.forRows, ref.r],
        ] as const) {
          for (let i = 0; i < want.index.length; i++) {
            if (want.index[i] === -1) {
              expect({ i, index: got.index[i], score: got.score[i] }).toEqual({ i, index: -1, score: -Infinity });
              continue;
            }
            expect(Math.abs(got.score[i]! - want.score[i]!), `score ${i}`).toBeLessThanOrEqual(TOL);
            // Those ties are exact in float32 too: the first-ranked of the tie, exactly.
            if (want.score[i] === tie) expect({ i, index: got.index[i] }).toEqual({ i, index: want.index[i] });
            // Exact copies tie exactly in float64; a float32 near-tie may pick an equally good one.
            if (got.index[i] !== want.index[i]) {
              const alt = got === res.forQueries ? dot(queries, i, rows, got.index[i]!, dim) : dot(queries, got.index[i]!, rows, i, dim);
              expect(Math.abs(alt - want.score[i]!), `index ${i}: ${got.index[i]} for ${want.index[i]}`).toBeLessThanOrEqual(1e-6);
            }
          }
        }
      }
      const exactTies = [...ref.q.score, ...ref.r.score].filter((x) => x === tie).length;
      expect(exactTies).toBeGreaterThan(5);
      // The walk in rank order and the per-element position test give the same answer bit for bit.
      expect(results[0]).toEqual(results[1]);
      expect(results[2]).toEqual(results[3]);
    } finally {
      for (const k of kernels) await k.close();
    }
  });
});
