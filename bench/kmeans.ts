/**
 * k-means timing on 50k × 768 unit vectors around 50 directions, k = 50: init time per init
 * method, time per Lloyd's iteration, and one assignment pass, per kernel backend (js always,
 * cpu when src/kernels/cpu/index.ts exists).
 *
 *   npx tsx bench/kmeans.ts            # env: KMEANS_ROWS, KMEANS_DIM, KMEANS_K, KMEANS_ITERS,
 *                                      #      KMEANS_INITS (comma list), KMEANS_BACKENDS
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { assignToCentroids, createRng, fitKMeans, rowSourceFromArray } from '../src/assign/index.js';
import type { KMeansInit } from '../src/assign/index.js';
import { createKernel } from '../src/kernels/index.js';
import type { BackendName } from '../src/kernels/index.js';

const rows = Number(process.env.KMEANS_ROWS ?? 50_000);
const dim = Number(process.env.KMEANS_DIM ?? 768);
const k = Number(process.env.KMEANS_K ?? 50);
const iters = Number(process.env.KMEANS_ITERS ?? 3);
const inits = (process.env.KMEANS_INITS ?? 'k-means++,k-means||').split(',') as KMeansInit[];

function makeData(): Float32Array {
  const rng = createRng(1);
  const gauss = (): number => Math.sqrt(-2 * Math.log(1 - rng.nextFloat())) * Math.cos(2 * Math.PI * rng.nextFloat());
  const centres = Float32Array.from({ length: k * dim }, gauss);
  const data = new Float32Array(rows * dim);
  for (let i = 0; i < rows; i++) {
    const c = rng.nextInt(k);
    let s = 0;
    for (let j = 0; j < dim; j++) {
      const v = centres[c * dim + j]! + 1.5 * gauss();
      data[i * dim + j] = v;
      s += v * v;
    }
    const inv = 1 / Math.sqrt(s);
    for (let j = 0; j < dim; j++) data[i * dim + j]! *= inv;
  }
  return data;
}

const ms = (t0: number): number => performance.now() - t0;

async function main(): Promise<void> {
  const cpuPath = fileURLToPath(new URL('../src/kernels/cpu/index.ts', import.meta.url));
  const backends = (process.env.KMEANS_BACKENDS?.split(',') as BackendName[] | undefined) ?? (existsSync(cpuPath) ? ['js', 'cpu'] : ['js']);
  const data = makeData();
  const source = rowSourceFromArray(data, dim);
  const gflop = (2 * rows * k * dim) / 1e9; // one nearest-centroid pass, multiply-adds × 2
  console.log(`k-means bench: ${rows} × ${dim}, k=${k}, ${iters} Lloyd iterations (tol 0), node ${process.version}`);
  for (const backend of backends) {
    const kernel = await createKernel(backend);
    try {
      console.log(`\n[${backend}] ${kernel.description}`);
      for (const init of inits) {
        const t0 = performance.now();
        let tInit = -1;
        const perIter: number[] = [];
        let last = 0;
        const fit = await fitKMeans(source, {
          k,
          init,
          maxIter: iters,
          tol: 0,
          kernel,
          onProgress: (iter) => {
            const now = performance.now();
            if (iter === 1) tInit = now - t0; // includes this first iteration; corrected below
            else perIter.push(now - last);
            last = now;
          },
        });
        const total = ms(t0);
        // The first iteration is not separable from the init by callbacks; estimate it by the median.
        const sorted = [...perIter].sort((a, b) => a - b);
        const iterMs = sorted.length ? sorted[Math.floor(sorted.length / 2)]! : tInit;
        const initMs = sorted.length ? tInit - iterMs : NaN;
        console.log(
          `  ${init.padEnd(9)} init ≈ ${initMs.toFixed(0)} ms, ${iterMs.toFixed(0)} ms/iteration ` +
            `(${(gflop / (iterMs / 1000)).toFixed(2)} GFLOP/s), total ${total.toFixed(0)} ms incl. variance + final inertia pass, ` +
            `inertia ${fit.inertia.toFixed(2)}`,
        );
      }
      const centroids = data.slice(0, k * dim);
      const t1 = performance.now();
      await source.forEachChunk(async (chunk) => {
        await assignToCentroids(chunk, centroids, dim, kernel);
      });
      const assignMs = ms(t1);
      console.log(`  assignToCentroids: ${assignMs.toFixed(0)} ms for ${rows} rows (${((rows / assignMs) * 1000).toFixed(0)} rows/s)`);
    } finally {
      await kernel.close();
    }
  }
}

await main();
