import { describe, expect, it } from 'vitest';
import { createRng, fitKMeans, rowSourceFromArray } from '../../src/assign/index.js';
import { createCpuKernel } from '../../src/kernels/cpu/index.js';

// Same input + seed must give the same bytes. The cpu kernel's fused Lloyd's pass once summed
// rows with a multi-threaded ORT ScatterND that raced (lost updates, different on every call), so
// `semdedup run --backend cpu` fitted different centroids in different processes. The race needs
// a chunk big enough for ORT to split across threads: 16k × 768, as in a real run.
const ROWS = 16_384;
const DIM = 768;

function clusteredUnitRows(rows: number, dim: number, blobs: number, seed: number): Float32Array {
  const rng = createRng(seed);
  const centres = Float32Array.from({ length: blobs * dim }, () => rng.nextFloat() - 0.5);
  const data = new Float32Array(rows * dim);
  for (let r = 0; r < rows; r++) {
    const c = rng.nextInt(blobs);
    let s = 0;
    for (let j = 0; j < dim; j++) {
      const v = centres[c * dim + j]! + 0.3 * (rng.nextFloat() - 0.5);
      data[r * dim + j] = v;
      s += v * v;
    }
    const inv = 1 / Math.sqrt(s);
    for (let j = 0; j < dim; j++) data[r * dim + j]! *= inv;
  }
  return data;
}

const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

describe('cpu k-means is deterministic (same input and seed → same bytes)', () => {
  const data = clusteredUnitRows(ROWS, DIM, 24, 11);

  it('nearestCentroidSums gives the same, exact sums on every call', async () => {
    const kernel = await createCpuKernel({ threads: 2 });
    try {
      const k = 24;
      const centroids = data.slice(0, k * DIM);
      const norms = new Float32Array(ROWS).fill(1);
      const first = await kernel.nearestCentroidSums!(data, centroids, DIM, norms);
      const want = new Float64Array(k * DIM);
      for (let r = 0; r < ROWS; r++) {
        const c = first.index[r]!;
        for (let j = 0; j < DIM; j++) want[c * DIM + j]! += data[r * DIM + j]!;
      }
      let worst = 0;
      for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(first.sums[i]! - want[i]!));
      expect(worst, 'largest |sum − float64 sum|').toBeLessThan(1e-2); // a lost row would be ~0.04 or more
      for (let call = 0; call < 3; call++) {
        const again = await kernel.nearestCentroidSums!(data, centroids, DIM, norms);
        expect(bytes(again.sums).equals(bytes(first.sums)), `call ${call + 2}`).toBe(true);
      }
    } finally {
      await kernel.close();
    }
  });

  it('fitKMeans twice with fresh kernels gives byte-identical centroids, iterations and inertia', async () => {
    const fit = async () => {
      const kernel = await createCpuKernel({ threads: 2 });
      try {
        return await fitKMeans(rowSourceFromArray(data, DIM), { k: 24, kernel, init: 'k-means++', seed: 7, maxIter: 15, tol: 1e-4 });
      } finally {
        await kernel.close();
      }
    };
    const a = await fit();
    const b = await fit();
    expect(b.iterations).toBe(a.iterations);
    expect(b.inertia).toBe(a.inertia);
    expect(bytes(b.centroids).equals(bytes(a.centroids))).toBe(true);
  });
});
