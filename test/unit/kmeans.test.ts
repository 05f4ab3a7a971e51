import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  assignToCentroids,
  createFileRowSource,
  createRng,
  fitKMeans,
  meanFeatureVariance,
  rowSourceFromArray,
  sampleSortedIndices,
} from '../../src/assign/index.js';
import type { KMeansInit, RowSource } from '../../src/assign/index.js';
import { createJsKernel } from '../../src/kernels/index.js';
import { InputError } from '../../src/shared/errors.js';

const kernel = createJsKernel();

function normalizeRows(data: Float32Array, dim: number): Float32Array {
  for (let o = 0; o < data.length; o += dim) {
    let s = 0;
    for (let j = 0; j < dim; j++) s += data[o + j]! * data[o + j]!;
    const inv = 1 / Math.sqrt(s);
    for (let j = 0; j < dim; j++) data[o + j]! *= inv;
  }
  return data;
}

function gaussian(rng: ReturnType<typeof createRng>): number {
  return Math.sqrt(-2 * Math.log(1 - rng.nextFloat())) * Math.cos(2 * Math.PI * rng.nextFloat());
}

/** Unit vectors around `blobs` orthogonal directions, rows interleaved so blobs are not contiguous. */
function makeBlobs(blobs: number, perBlob: number, dim: number, noise: number, seed = 7): { data: Float32Array; labels: Int32Array } {
  const rng = createRng(seed);
  const n = blobs * perBlob;
  const data = new Float32Array(n * dim);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const b = i % blobs;
    labels[i] = b;
    for (let j = 0; j < dim; j++) data[i * dim + j] = (j === b ? 1 : 0) + noise * gaussian(rng);
  }
  return { data: normalizeRows(data, dim), labels };
}

function randomSphere(n: number, dim: number, seed: number): Float32Array {
  const rng = createRng(seed);
  return normalizeRows(Float32Array.from({ length: n * dim }, () => gaussian(rng)), dim);
}

/** True when the fitted clusters and the blobs correspond one to one (100% purity). */
async function isPerfectRecovery(data: Float32Array, labels: Int32Array, centroids: Float32Array, dim: number): Promise<boolean> {
  const { centroid } = await assignToCentroids(data, centroids, dim, kernel);
  const blobToCluster = new Map<number, number>();
  const clusterToBlob = new Map<number, number>();
  for (let i = 0; i < labels.length; i++) {
    const b = labels[i]!;
    const c = centroid[i]!;
    if ((blobToCluster.get(b) ?? c) !== c || (clusterToBlob.get(c) ?? b) !== b) return false;
    blobToCluster.set(b, c);
    clusterToBlob.set(c, b);
  }
  return true;
}

describe('fitKMeans', () => {
  const dim = 16;
  const blobs = makeBlobs(6, 60, dim, 0.02);

  it.each<[KMeansInit, number]>([
    ['k-means++', 1],
    ['k-means||', 1],
    // Random init can land two seeds in one blob (a local minimum), hence restarts.
    ['random', 10],
  ])('recovers well-separated blobs with init %s', async (init, nInit) => {
    const fit = await fitKMeans(rowSourceFromArray(blobs.data, dim), { k: 6, init, nInit, kernel });
    expect(fit.centroids.length).toBe(6 * dim);
    expect(fit.converged).toBe(true);
    expect(await isPerfectRecovery(blobs.data, blobs.labels, fit.centroids, dim)).toBe(true);
  });

  it('does not normalize centroids (NeMo semantics)', async () => {
    const fit = await fitKMeans(rowSourceFromArray(blobs.data, dim), { k: 6, init: 'k-means++', kernel });
    for (let c = 0; c < 6; c++) {
      let s = 0;
      for (let j = 0; j < dim; j++) s += fit.centroids[c * dim + j]! ** 2;
      expect(Math.sqrt(s)).toBeLessThan(1);
    }
  });

  it.each<KMeansInit>(['k-means++', 'k-means||', 'random'])('gives identical centroids for the same seed (%s)', async (init) => {
    const data = randomSphere(300, 8, 3);
    const a = await fitKMeans(rowSourceFromArray(data, 8), { k: 7, init, seed: 5, kernel });
    const b = await fitKMeans(rowSourceFromArray(data, 8), { k: 7, init, seed: 5, kernel });
    const c = await fitKMeans(rowSourceFromArray(data, 8), { k: 7, init, seed: 6, kernel });
    expect(b.centroids).toEqual(a.centroids);
    expect(b.inertia).toBe(a.inertia);
    expect(c.centroids).not.toEqual(a.centroids);
  });

  it('keeps the restart with the lowest inertia for nInit > 1', async () => {
    const data = randomSphere(400, 6, 11);
    const single = [];
    for (let i = 0; i < 4; i++) single.push(await fitKMeans(rowSourceFromArray(data, 6), { k: 9, init: 'random', seed: 100 + i, kernel }));
    const inertias = single.map((f) => f.inertia);
    expect(new Set(inertias).size).toBeGreaterThan(1); // restarts do differ on this data
    const best = await fitKMeans(rowSourceFromArray(data, 6), { k: 9, init: 'random', seed: 100, nInit: 4, kernel });
    const winner = inertias.indexOf(Math.min(...inertias));
    expect(best.inertia).toBe(Math.min(...inertias));
    expect(best.bestRun).toBe(winner);
    expect(best.centroids).toEqual(single[winner]!.centroids);
  });

  it('fits on a seeded sample with fitFraction < 1', async () => {
    const full = rowSourceFromArray(blobs.data, dim);
    const requested: number[] = [];
    const spy: RowSource = {
      rows: full.rows,
      dim,
      forEachChunk: () => Promise.reject(new Error('a sampled fit must not stream the full data')),
      readRows: (indices) => {
        requested.push(...indices);
        return full.readRows(indices);
      },
    };
    const fit = await fitKMeans(spy, { k: 6, init: 'k-means++', fitFraction: 0.25, kernel });
    expect(fit.fitRows).toBe(90);
    const sampled = requested.slice(0, 90);
    expect(new Set(sampled).size).toBe(90);
    expect(sampled).toEqual([...sampled].sort((a, b) => a - b));
    expect(await isPerfectRecovery(blobs.data, blobs.labels, fit.centroids, dim)).toBe(true);
    const again = await fitKMeans(full, { k: 6, init: 'k-means++', fitFraction: 0.25, kernel });
    expect(again.centroids).toEqual(fit.centroids);
    await expect(fitKMeans(full, { k: 6, fitFraction: 0.01, kernel })).rejects.toThrow(/fit_fraction/);
  });

  describe('empty clusters', () => {
    // Three distinct points, each three times.
    const pts = [
      [1, 0, 0],
      [0, 1, 0],
      [0, 0, 1],
    ];
    const data = Float32Array.from([0, 1, 2, 0, 1, 2, 0, 1, 2].flatMap((p) => pts[p]!));

    it('re-seeds an empty cluster with the point farthest from its centroid', async () => {
      // Two identical seeds: the second gets no rows in the first iteration.
      const init = Float32Array.from([...pts[0]!, ...pts[0]!, ...pts[1]!]);
      const fit = await fitKMeans(rowSourceFromArray(data, 3), { k: 3, init, kernel });
      expect(fit.emptyClustersReseeded).toBeGreaterThanOrEqual(1);
      expect(fit.inertia).toBe(0);
      const found = Array.from({ length: 3 }, (_, c) => Array.from(fit.centroids.subarray(c * 3, c * 3 + 3)));
      expect(found.sort()).toEqual([...pts].sort());
    });

    it.each<KMeansInit>(['k-means++', 'k-means||', 'random'])('k = number of distinct points with duplicates (%s)', async (init) => {
      const fit = await fitKMeans(rowSourceFromArray(data, 3), { k: 3, init, nInit: init === 'random' ? 5 : 1, kernel });
      expect(fit.inertia).toBe(0);
      expect(fit.centroids.every(Number.isFinite)).toBe(true);
    });

    it('survives k above the number of distinct points', async () => {
      const fit = await fitKMeans(rowSourceFromArray(data, 3), { k: 5, init: 'k-means++', kernel });
      expect(fit.inertia).toBe(0);
      expect(fit.centroids.every(Number.isFinite)).toBe(true);
    });
  });

  it('stops when the centroid shift falls to tol × mean feature variance', async () => {
    const data = randomSphere(500, 8, 21);
    const source = rowSourceFromArray(data, 8);
    const shifts: number[] = [];
    const free = await fitKMeans(source, { k: 12, init: 'random', tol: 0, maxIter: 50, kernel, onProgress: (_i, shift) => shifts.push(shift) });
    expect(free.iterations).toBeGreaterThan(4);

    // Brute-force mean per-feature variance.
    const n = 500;
    let meanVar = 0;
    for (let j = 0; j < 8; j++) {
      let m = 0;
      for (let i = 0; i < n; i++) m += data[i * 8 + j]!;
      m /= n;
      let v = 0;
      for (let i = 0; i < n; i++) v += (data[i * 8 + j]! - m) ** 2;
      meanVar += v / n / 8;
    }
    expect(await meanFeatureVariance(source, 33)).toBeCloseTo(meanVar, 12);

    // A tol whose threshold lies between the 3rd and the 4th shifts stops after the 4th iteration.
    const threshold = Math.sqrt(shifts[2]! * shifts[3]!);
    expect(shifts[3]!).toBeLessThan(threshold);
    const stopAt = shifts.findIndex((s) => s <= threshold) + 1;
    const early = await fitKMeans(source, { k: 12, init: 'random', tol: threshold / meanVar, kernel });
    expect(early.iterations).toBe(stopAt);
    expect(early.converged).toBe(true);
    expect(early.iterations).toBeLessThan(free.iterations);

    const capped = await fitKMeans(source, { k: 12, init: 'random', tol: 0, maxIter: 2, kernel });
    expect(capped.iterations).toBe(2);
    expect(capped.converged).toBe(false);
  });

  it('rejects k above the number of rows with an InputError naming n_clusters', async () => {
    const source = rowSourceFromArray(randomSphere(5, 4, 1), 4);
    const err = await fitKMeans(source, { k: 6, kernel }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    expect((err as InputError).message).toMatch(/n_clusters/);
    expect((err as InputError).context.field).toBe('n_clusters');
  });
});

describe('assignToCentroids', () => {
  it('matches a brute-force float64 reference and does not depend on the batch', async () => {
    const dim = 24;
    const data = randomSphere(257, dim, 9);
    const rng = createRng(4);
    const centroids = Float32Array.from({ length: 10 * dim }, () => gaussian(rng) * 0.3);
    const got = await assignToCentroids(data, centroids, dim, kernel);
    for (let i = 0; i < 257; i++) {
      let best = Infinity;
      let bestC = -1;
      for (let c = 0; c < 10; c++) {
        let d2 = 0;
        for (let j = 0; j < dim; j++) d2 += (data[i * dim + j]! - centroids[c * dim + j]!) ** 2;
        if (d2 < best) [best, bestC] = [d2, c];
      }
      let dot = 0;
      let cc = 0;
      for (let j = 0; j < dim; j++) {
        dot += data[i * dim + j]! * centroids[bestC * dim + j]!;
        cc += centroids[bestC * dim + j]! ** 2;
      }
      expect(got.centroid[i]).toBe(bestC);
      expect(got.l2DistToCent[i]).toBe(Math.fround(Math.sqrt(best)));
      expect(got.cosineDistToCent[i]).toBe(Math.fround(1 - dot / Math.sqrt(cc)));
    }
    // Same clips in other batches: bit-identical distances.
    for (const [from, to] of [
      [0, 1],
      [100, 101],
      [5, 200],
      [256, 257],
    ] as const) {
      const part = await assignToCentroids(data.subarray(from * dim, to * dim), centroids, dim, kernel);
      expect(part.l2DistToCent).toEqual(got.l2DistToCent.subarray(from, to));
      expect(part.cosineDistToCent).toEqual(got.cosineDistToCent.subarray(from, to));
      expect(part.centroid).toEqual(got.centroid.subarray(from, to));
    }
  });
});

describe('row sources', () => {
  let dir: string;
  const dim = 12;
  const data = randomSphere(1000, dim, 13);

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kmeans-test-'));
    await writeFile(join(dir, 'emb.f32'), new Uint8Array(data.buffer));
    await writeFile(join(dir, 'bad.f32'), new Uint8Array(dim * 4 + 2));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads the same rows from a file as from memory', async () => {
    const file = createFileRowSource(join(dir, 'emb.f32'), dim);
    expect(file.rows).toBe(1000);
    const seen = new Float32Array(data.length);
    const firsts: number[] = [];
    await file.forEachChunk((chunk, first) => {
      firsts.push(first);
      seen.set(chunk, first * dim);
    }, 300);
    expect(firsts).toEqual([0, 300, 600, 900]);
    expect(seen).toEqual(data);
    const idx = Int32Array.from([999, 3, 4, 5, 5, 0, 500, 4]);
    expect(await file.readRows(idx)).toEqual(await rowSourceFromArray(data, dim).readRows(idx));
  });

  it.each<KMeansInit>(['k-means++', 'k-means||'])('fits the same centroids from a chunked file as from memory (%s)', async (init) => {
    const file = createFileRowSource(join(dir, 'emb.f32'), dim);
    const fromFile = await fitKMeans(file, { k: 8, init, chunkRows: 77, kernel });
    const fromMemory = await fitKMeans(rowSourceFromArray(data, dim), { k: 8, init, kernel });
    expect(fromFile.centroids).toEqual(fromMemory.centroids);
    expect(fromFile.iterations).toBe(fromMemory.iterations);
  });

  it('refuses a file whose size is not whole rows', () => {
    expect(() => createFileRowSource(join(dir, 'bad.f32'), dim)).toThrow(InputError);
    expect(() => createFileRowSource(join(dir, 'missing.f32'), dim)).toThrow(InputError);
  });

  it('samples distinct sorted rows', () => {
    const s = sampleSortedIndices(100, 37, createRng(1));
    expect(s.length).toBe(37);
    for (let i = 1; i < s.length; i++) expect(s[i]!).toBeGreaterThan(s[i - 1]!);
    expect(sampleSortedIndices(10, 10, createRng(2))).toEqual(Int32Array.from({ length: 10 }, (_, i) => i));
  });
});
