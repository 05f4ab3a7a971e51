/**
 * k-means on unit-normalized embeddings with NeMo Curator / cuML semantics: Euclidean Lloyd's
 * iterations, centroids left unnormalized, k-means++ / k-means|| / random init, `tol` relative to
 * the data's mean per-feature variance, `n_init` restarts and an optional fit on a sample.
 *
 * Every nearest-centroid search goes through `SimilarityKernel.nearestCentroid`, so a fast
 * backend speeds up init and iterations alike. Data is read through a `RowSource`, chunk by
 * chunk, so a spilled file is streamed rather than held in memory a second time. Per-row state
 * is at most 16 bytes a row (row norms |x|², float64 and float32, computed once per fit; D² in
 * k-means++, D² and owner in k-means||).
 */
import type { SimilarityKernel } from '../kernels/types.js';
import { InputError, invariant } from '../shared/errors.js';
import { DEFAULT_CHUNK_ROWS, rowSourceFromArray } from './row-source.js';
import type { RowSource } from './row-source.js';

export type KMeansInit = 'k-means++' | 'k-means||' | 'random';

export interface KMeansOptions {
  /** Number of clusters (`n_clusters`); at most the number of rows fitted. */
  readonly k: number;
  readonly kernel: SimilarityKernel;
  /**
   * Default `'k-means||'` (NeMo's choice, via cuML). A k × dim Float32Array starts Lloyd's from
   * those centroids instead (nInit is then ignored, as in scikit-learn).
   */
  readonly init?: KMeansInit | Float32Array;
  /** Lloyd's iterations at most. Default 300. */
  readonly maxIter?: number;
  /**
   * Relative tolerance. Default 1e-4. Stops once the squared Frobenius norm of the centroid shift
   * is ≤ tol × (mean over features of the data's variance), as scikit-learn and cuML do.
   */
  readonly tol?: number;
  /** Seeds the sample, the inits and the restarts (run i uses seed + i). Default 42. */
  readonly seed?: number;
  /** Restarts from fresh inits; the lowest inertia wins (the first among equals). Default 1. */
  readonly nInit?: number;
  /** Fit on a seeded uniform sample of round(rows × fitFraction) rows, held in memory. Default 1. */
  readonly fitFraction?: number;
  /** k-means||: candidates drawn per round ≈ oversamplingFactor × k. Default 2 (cuML's). */
  readonly oversamplingFactor?: number;
  /** k-means||: sampling rounds. Default 5. */
  readonly parallelRounds?: number;
  /** Rows per chunk handed to the kernel. Default: the source's default (16384). */
  readonly chunkRows?: number;
  /** After each Lloyd's iteration (1-based) of restart `run` (0-based): shift and inertia before the update. */
  readonly onProgress?: (iter: number, shift: number, inertia: number, run: number) => void;
}

export interface KMeansResult {
  /** k × dim, row-major, not normalized. */
  readonly centroids: Float32Array;
  /** Lloyd's iterations run by the winning restart. */
  readonly iterations: number;
  /** Sum of squared distances of the fitted rows to their nearest final centroid. */
  readonly inertia: number;
  /** Whether the shift fell to the tolerance before maxIter. */
  readonly converged: boolean;
  /** Empty clusters re-seeded during the winning restart. */
  readonly emptyClustersReseeded: number;
  /** Rows the fit used (all rows, or the fitFraction sample). */
  readonly fitRows: number;
  /** Which restart won; its seed was seed + bestRun. */
  readonly bestRun: number;
}

export interface CentroidAssignment {
  /** Index of the nearest centroid, as the kernel chose it. */
  readonly centroid: Int32Array;
  /** |x − c|, computed exactly (see `assignToCentroids`). */
  readonly l2DistToCent: Float32Array;
  /** 1 − x·c/|c| (x unit length), computed exactly. */
  readonly cosineDistToCent: Float32Array;
}

// ---------------------------------------------------------------------------------------------
// Deterministic PRNG: xoshiro128** seeded through splitmix32. 32-bit integer arithmetic only
// (no BigInt), so the O(rows) draws of k-means|| and sampling stay cheap; floats carry 53 bits
// so D² sampling over millions of rows is not quantized.

export interface Rng {
  /** Uniform integer in [0, 2^32). */
  nextUint32(): number;
  /** Uniform double in [0, 1) with 53 random bits. */
  nextFloat(): number;
  /** Uniform integer in [0, bound). */
  nextInt(bound: number): number;
}

/** Independent streams per purpose, so e.g. sampling rows does not shift the init's draws. */
const STREAM_SAMPLE = 1;
const STREAM_INIT = 2;

export function createRng(seed: number, stream = 0): Rng {
  let sm = (seed >>> 0) ^ Math.imul(Math.floor(seed / 4294967296) >>> 0, 0x9e3779b1) ^ Math.imul(stream + 1, 0x85ebca77);
  const splitmix32 = (): number => {
    sm = (sm + 0x9e3779b9) | 0;
    let z = sm;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
  let s0 = splitmix32();
  let s1 = splitmix32();
  let s2 = splitmix32();
  let s3 = splitmix32();
  if ((s0 | s1 | s2 | s3) === 0) s0 = 1; // the all-zero state is a fixed point
  const nextUint32 = (): number => {
    const r = Math.imul(s1, 5);
    const rot = (r << 7) | (r >>> 25);
    const result = Math.imul(rot, 9) >>> 0;
    const t = s1 << 9;
    s2 ^= s0;
    s3 ^= s1;
    s1 ^= s2;
    s0 ^= s3;
    s2 ^= t;
    s3 = (s3 << 11) | (s3 >>> 21);
    return result;
  };
  const nextFloat = (): number => ((nextUint32() >>> 5) * 67108864 + (nextUint32() >>> 6)) / 9007199254740992;
  return {
    nextUint32,
    nextFloat,
    nextInt: (bound) => Math.floor(nextFloat() * bound),
  };
}

// ---------------------------------------------------------------------------------------------
// Row sampling helpers.

/** m distinct indices of [0, n), uniform, ascending (Knuth's selection sampling, one pass). */
export function sampleSortedIndices(n: number, m: number, rng: Rng): Int32Array {
  invariant(m >= 0 && m <= n, `cannot sample ${m} of ${n} rows`);
  const out = new Int32Array(m);
  let needed = m;
  for (let i = 0; i < n && needed > 0; i++) {
    if (rng.nextFloat() * (n - i) < needed) out[m - needed--] = i;
  }
  return out;
}

/** A row not in `taken`: a uniform start, then the next free row (only used in degenerate cases). */
function pickFreeRow(n: number, taken: Set<number>, rng: Rng): number {
  invariant(taken.size < n, 'no free row left');
  let r = rng.nextInt(n);
  while (taken.has(r)) r = (r + 1) % n;
  return r;
}

// ---------------------------------------------------------------------------------------------
// Data statistics.

/**
 * Mean over features of the per-feature (population) variance, in one pass. Sums are taken
 * relative to the first row (shifted data) in float64, in row order, so the result does not
 * depend on the chunk size and does not suffer from cancellation when means dwarf variances.
 */
export async function meanFeatureVariance(source: RowSource, chunkRows?: number): Promise<number> {
  const { rows, dim } = source;
  if (rows === 0) return 0;
  const shiftBy = new Float64Array(dim);
  const s1 = new Float64Array(dim);
  const s2 = new Float64Array(dim);
  await source.forEachChunk((chunk, first) => {
    if (first === 0) for (let j = 0; j < dim; j++) shiftBy[j] = chunk[j]!;
    const n = chunk.length / dim;
    for (let r = 0; r < n; r++) {
      const o = r * dim;
      for (let j = 0; j < dim; j++) {
        const d = chunk[o + j]! - shiftBy[j]!;
        s1[j]! += d;
        s2[j]! += d * d;
      }
    }
  }, chunkRows);
  let total = 0;
  for (let j = 0; j < dim; j++) {
    const mean = s1[j]! / rows;
    total += Math.max(s2[j]! / rows - mean * mean, 0);
  }
  return total / dim;
}

// ---------------------------------------------------------------------------------------------
// Inits. Each returns k × dim centroids.

async function initRandom(source: RowSource, k: number, rng: Rng): Promise<Float32Array> {
  // Floyd's algorithm: k distinct rows in O(k), then ascending for sequential reads.
  const n = source.rows;
  const taken = new Set<number>();
  for (let j = n - k; j < n; j++) {
    const t = rng.nextInt(j + 1);
    taken.add(taken.has(t) ? j : t);
  }
  const rows = Int32Array.from(taken).sort();
  return source.readRows(rows);
}

/**
 * Standard k-means++ (Arthur & Vassilvitskii): the first centre uniform (or ∝ weight), each next
 * one drawn ∝ weight × D², D² being the squared distance to the nearest centre so far. D² is
 * updated incrementally, against the newly added centre only, so the cost is O(n·k·d) in k − 1
 * passes. Returns the chosen row indices in order of choice. D² is float64 from the row norms and
 * the dot products (float32 from a backend's `rowDots`, float64 from the JS loop), so backends may
 * differ in the last bits of D², and rarely in a draw.
 */
async function seedPlusPlus(
  source: RowSource,
  k: number,
  rng: Rng,
  kernel: SimilarityKernel,
  chunkRows: number | undefined,
  weights?: Float64Array,
  knownRowNorms?: Float64Array,
): Promise<Int32Array> {
  const { rows: n, dim } = source;
  const chosen = new Int32Array(k);
  const taken = new Set<number>();
  const minD2 = new Float32Array(n).fill(Infinity);
  // |x|² per row: given by the caller (computed once per fit) or in the first pass below.
  const rowNorms = knownRowNorms ?? new Float64Array(n);
  const mass = (i: number): number => (weights ? weights[i]! : 1) * minD2[i]!;

  let pick: number;
  if (weights) {
    let total = 0;
    for (let i = 0; i < n; i++) total += weights[i]!;
    pick = total > 0 ? drawProportional(n, (i) => weights[i]!, total, rng) : pickFreeRow(n, taken, rng);
  } else {
    pick = rng.nextInt(n);
  }
  for (let step = 0; ; step++) {
    chosen[step] = pick;
    taken.add(pick);
    if (step === k - 1) break;
    const centre = await source.readRows(Int32Array.of(pick));
    let cc = 0;
    for (let j = 0; j < dim; j++) cc += centre[j]! * centre[j]!;
    // One centre at a time is a matrix-vector product, memory-bound: the kernel's `rowDots` (MLAS
    // GEMV, ~7 ms per 50k × 768 pass) when it has one, else a tight JS loop (~45 ms a pass).
    await source.forEachChunk(async (chunk, first) => {
      const rows = chunk.length / dim;
      if (step === 0 && !knownRowNorms) for (let r = 0; r < rows; r++) rowNorms[first + r] = dotRows(chunk, r * dim, chunk, r * dim, dim);
      const dots = kernel.rowDots ? await kernel.rowDots(chunk, centre, dim) : null;
      for (let r = 0; r < rows; r++) {
        const dot = dots ? dots[r]! : dotRows(chunk, r * dim, centre, 0, dim);
        const d2 = rowNorms[first + r]! - 2 * dot + cc;
        const d = d2 > 0 ? d2 : 0;
        if (d < minD2[first + r]!) minD2[first + r] = d;
      }
    }, chunkRows);
    // A chosen row must never be drawn again, even if a backend's rounding leaves it at 1e-7.
    minD2[pick] = 0;
    let total = 0;
    if (weights) for (let i = 0; i < n; i++) total += mass(i);
    else for (let i = 0; i < n; i++) total += minD2[i]!; // the same sum without a call per row
    // No mass left: fewer distinct rows than k. Pad with unused rows; Lloyd's re-seeds the empties.
    if (!(total > 0)) pick = pickFreeRow(n, taken, rng);
    else pick = weights ? drawProportional(n, mass, total, rng) : drawProportionalTo(minD2, total, rng);
  }
  return chosen;
}

/** Dot product of a[ao..ao+dim) and b[bo..bo+dim), four accumulators (float64). */
function dotRows(a: Float32Array, ao: number, b: Float32Array, bo: number, dim: number): number {
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let k = 0;
  for (; k + 3 < dim; k += 4) {
    s0 += a[ao + k]! * b[bo + k]!;
    s1 += a[ao + k + 1]! * b[bo + k + 1]!;
    s2 += a[ao + k + 2]! * b[bo + k + 2]!;
    s3 += a[ao + k + 3]! * b[bo + k + 3]!;
  }
  for (; k < dim; k++) s0 += a[ao + k]! * b[bo + k]!;
  return s0 + s1 + s2 + s3;
}

/** Index i drawn with probability mass(i) / total (cumulative float64 sums in index order). */
function drawProportional(n: number, mass: (i: number) => number, total: number, rng: Rng): number {
  const target = rng.nextFloat() * total;
  let acc = 0;
  let lastPositive = -1;
  for (let i = 0; i < n; i++) {
    const m = mass(i);
    if (m <= 0) continue;
    acc += m;
    lastPositive = i;
    if (acc > target) return i;
  }
  invariant(lastPositive >= 0, 'drawProportional called without positive mass');
  return lastPositive; // rounding left target ≥ the running sum
}

/** `drawProportional` with mass(i) = values[i]: the same draw, without a call per row (hot loop). */
function drawProportionalTo(values: Float32Array, total: number, rng: Rng): number {
  const target = rng.nextFloat() * total;
  let acc = 0;
  let lastPositive = -1;
  for (let i = 0; i < values.length; i++) {
    const m = values[i]!;
    if (m <= 0) continue;
    acc += m;
    lastPositive = i;
    if (acc > target) return i;
  }
  invariant(lastPositive >= 0, 'drawProportionalTo called without positive mass');
  return lastPositive;
}

/**
 * k-means|| (Bahmani et al., "Scalable K-Means++"): one uniform centre, then `rounds` rounds in
 * which every row joins the candidates independently with probability min(1, ℓ·D²/φ), ℓ =
 * oversamplingFactor × k, φ = ΣD². Each candidate is weighted by the rows nearest to it, and
 * weighted k-means++ on the candidates (in memory) picks the k centroids. The owner of each row
 * is tracked incrementally, so weights need no extra pass over all candidates.
 */
async function initParallel(
  source: RowSource,
  k: number,
  rng: Rng,
  kernel: SimilarityKernel,
  chunkRows: number | undefined,
  oversamplingFactor: number,
  rounds: number,
): Promise<Float32Array> {
  const { rows: n, dim } = source;
  const minD2 = new Float32Array(n).fill(Infinity);
  const owner = new Int32Array(n);
  const candidates: number[] = [];

  const addCandidates = async (newRows: Int32Array): Promise<void> => {
    const offset = candidates.length;
    for (const r of newRows) candidates.push(r);
    const centres = await source.readRows(newRows);
    await source.forEachChunk(async (chunk, first) => {
      const { index, dist2 } = await kernel.nearestCentroid(chunk, centres, dim);
      for (let r = 0; r < dist2.length; r++) {
        const d = dist2[r]! > 0 ? dist2[r]! : 0;
        // Strictly closer only: among equals the earlier candidate keeps the row.
        if (d < minD2[first + r]!) {
          minD2[first + r] = d;
          owner[first + r] = offset + index[r]!;
        }
      }
    }, chunkRows);
    for (let q = 0; q < newRows.length; q++) {
      minD2[newRows[q]!] = 0;
      owner[newRows[q]!] = offset + q;
    }
  };

  await addCandidates(Int32Array.of(rng.nextInt(n)));
  const ell = oversamplingFactor * k;
  for (let round = 0; round < rounds; round++) {
    let phi = 0;
    for (let i = 0; i < n; i++) phi += minD2[i]!;
    if (!(phi > 0)) break; // every row sits on a candidate
    const picked: number[] = [];
    for (let i = 0; i < n; i++) {
      // One draw per row whatever its D², so the stream position never depends on rounding.
      if (rng.nextFloat() * phi < ell * minD2[i]!) picked.push(i);
    }
    if (picked.length > 0) await addCandidates(Int32Array.from(picked));
  }

  const m = candidates.length;
  const candidateRows = Int32Array.from(candidates);
  const candidateData = await source.readRows(candidateRows);
  if (m <= k) {
    // Too few candidates (tiny or highly duplicated data): take them all, pad with unused rows.
    const taken = new Set(candidates);
    const extra = new Int32Array(k - m);
    for (let i = 0; i < extra.length; i++) {
      extra[i] = pickFreeRow(n, taken, rng);
      taken.add(extra[i]!);
    }
    const out = new Float32Array(k * dim);
    out.set(candidateData);
    out.set(await source.readRows(extra), m * dim);
    return out;
  }
  const weights = new Float64Array(m);
  for (let i = 0; i < n; i++) weights[owner[i]!]! += 1;
  const picks = await seedPlusPlus(rowSourceFromArray(candidateData, dim), k, rng, kernel, chunkRows, weights);
  return rowSourceFromArray(candidateData, dim).readRows(picks);
}

// ---------------------------------------------------------------------------------------------
// Lloyd's iterations.

/**
 * The `cap` rows farthest from their centroid seen in one pass (distance descending, row
 * ascending among equals), kept in a heap whose root is the weakest entry.
 */
class FarthestRows {
  readonly #cap: number;
  readonly #d: Float64Array;
  readonly #row: Float64Array;
  readonly #cluster: Int32Array;
  #size = 0;

  constructor(cap: number) {
    this.#cap = cap;
    this.#d = new Float64Array(cap);
    this.#row = new Float64Array(cap);
    this.#cluster = new Int32Array(cap);
  }

  /** Rows must be offered in ascending order: an equal distance then loses to the kept row. */
  offer(d: number, row: number, cluster: number): void {
    if (this.#size < this.#cap) {
      let i = this.#size++;
      this.#set(i, d, row, cluster);
      while (i > 0) {
        const parent = (i - 1) >> 1;
        if (!this.#weaker(i, parent)) break;
        this.#swap(i, parent);
        i = parent;
      }
      return;
    }
    if (this.#cap === 0 || d <= this.#d[0]!) return;
    this.#set(0, d, row, cluster);
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let w = i;
      if (l < this.#size && this.#weaker(l, w)) w = l;
      if (r < this.#size && this.#weaker(r, w)) w = r;
      if (w === i) break;
      this.#swap(i, w);
      i = w;
    }
  }

  /** Entries, farthest first, ties by lower row. */
  sorted(): Array<{ d: number; row: number; cluster: number }> {
    const out = [];
    for (let i = 0; i < this.#size; i++) out.push({ d: this.#d[i]!, row: this.#row[i]!, cluster: this.#cluster[i]! });
    return out.sort((a, b) => b.d - a.d || a.row - b.row);
  }

  #weaker(a: number, b: number): boolean {
    const da = this.#d[a]!;
    const db = this.#d[b]!;
    return da < db || (da === db && this.#row[a]! > this.#row[b]!);
  }

  #set(i: number, d: number, row: number, cluster: number): void {
    this.#d[i] = d;
    this.#row[i] = row;
    this.#cluster[i] = cluster;
  }

  #swap(a: number, b: number): void {
    const d = this.#d[a]!;
    const row = this.#row[a]!;
    const cluster = this.#cluster[a]!;
    this.#set(a, this.#d[b]!, this.#row[b]!, this.#cluster[b]!);
    this.#set(b, d, row, cluster);
  }
}

interface LloydParams {
  readonly k: number;
  /** |x|² per row (float32), for the kernel's `nearestCentroidSums`; null: sum rows in JS. */
  readonly rowNorm2: Float32Array | null;
  readonly maxIter: number;
  readonly tolAbs: number;
  readonly kernel: SimilarityKernel;
  readonly chunkRows: number | undefined;
  readonly run: number;
  readonly onProgress: KMeansOptions['onProgress'];
}

interface LloydResult {
  readonly centroids: Float32Array;
  readonly iterations: number;
  readonly inertia: number;
  readonly converged: boolean;
  readonly emptyClustersReseeded: number;
}

async function lloyd(source: RowSource, initial: Float32Array, p: LloydParams): Promise<LloydResult> {
  const { k, kernel } = p;
  const dim = source.dim;
  let centroids = initial;
  let iterations = 0;
  let converged = false;
  let lastShift = Infinity;
  let lastInertia = 0;
  let reseeded = 0;

  while (iterations < p.maxIter) {
    iterations++;
    const sums = new Float64Array(k * dim);
    const counts = new Float64Array(k);
    const far = new FarthestRows(Math.min(k, source.rows));
    let inertia = 0;
    const current = centroids;
    const rowNorm2 = p.rowNorm2;
    await source.forEachChunk(async (chunk, first) => {
      const rows = chunk.length / dim;
      // The kernel's fused pass (assignment + per-centroid sums, float32 per chunk, added up in
      // float64 here, as the NumPy port's one-hot sgemm does), else sums in a float64 JS loop.
      const fused = kernel.nearestCentroidSums && rowNorm2 ? await kernel.nearestCentroidSums(chunk, current, dim, rowNorm2.subarray(first, first + rows)) : null;
      const { index, dist2 } = fused ?? (await kernel.nearestCentroid(chunk, current, dim));
      if (fused) for (let i = 0; i < sums.length; i++) sums[i]! += fused.sums[i]!;
      for (let r = 0; r < index.length; r++) {
        const c = index[r]!;
        if (!(c >= 0 && c < k)) invariant(false, `kernel returned centroid ${c} for k=${k}`); // message built only on failure (hot loop)
        const d = dist2[r]! > 0 ? dist2[r]! : 0;
        inertia += d;
        counts[c]! += 1;
        if (!fused) addRow(sums, c * dim, chunk, r * dim, dim);
        far.offer(d, first + r, c);
      }
    }, p.chunkRows);

    reseeded += await reseedEmptyClusters(source, sums, counts, far, dim);

    const next = new Float32Array(k * dim);
    for (let c = 0; c < k; c++) {
      const o = c * dim;
      const count = counts[c]!;
      // A cluster that stayed empty (no row could be moved to it) keeps its centroid.
      if (count > 0) for (let j = 0; j < dim; j++) next[o + j] = sums[o + j]! / count;
      else next.set(current.subarray(o, o + dim), o);
    }
    let shift = 0;
    for (let i = 0; i < next.length; i++) {
      const diff = next[i]! - current[i]!;
      shift += diff * diff;
    }
    centroids = next;
    lastShift = shift;
    lastInertia = inertia;
    p.onProgress?.(iterations, shift, inertia, p.run);
    if (shift <= p.tolAbs) {
      converged = true;
      break;
    }
  }

  // Report the inertia of the centroids returned (as scikit-learn does); when nothing moved it
  // is the last pass's.
  const inertia = lastShift === 0 ? lastInertia : await inertiaOf(source, centroids, kernel, p.chunkRows);
  return { centroids, iterations, inertia, converged, emptyClustersReseeded: reseeded };
}

/** |x|² of every row (float64), once per fit: for k-means++ and (as float32) `nearestCentroidSums`. */
async function rowNormsSquared(source: RowSource, chunkRows: number | undefined): Promise<Float64Array> {
  const { rows, dim } = source;
  const out = new Float64Array(rows);
  await source.forEachChunk((chunk, first) => {
    const n = chunk.length / dim;
    for (let r = 0; r < n; r++) out[first + r] = dotRows(chunk, r * dim, chunk, r * dim, dim);
  }, chunkRows);
  return out;
}

/** sums[so..so+dim) += x[xo..xo+dim); unrolled by 4, which V8 runs ~1.6× faster (hot loop). */
function addRow(sums: Float64Array, so: number, x: Float32Array, xo: number, dim: number): void {
  let j = 0;
  for (; j + 3 < dim; j += 4) {
    sums[so + j]! += x[xo + j]!;
    sums[so + j + 1]! += x[xo + j + 1]!;
    sums[so + j + 2]! += x[xo + j + 2]!;
    sums[so + j + 3]! += x[xo + j + 3]!;
  }
  for (; j < dim; j++) sums[so + j]! += x[xo + j]!;
}

/**
 * scikit-learn's rule for empty clusters: move the rows farthest from their centroid into them,
 * one row per empty cluster, farthest first (ties: lower row), taking each row out of its old
 * cluster's sum. Deviation: a row that is the last member of its cluster is skipped, since moving
 * it only moves the hole. Clusters left without a candidate keep their previous centroid and are
 * retried next iteration. Returns how many clusters were re-seeded.
 */
async function reseedEmptyClusters(
  source: RowSource,
  sums: Float64Array,
  counts: Float64Array,
  far: FarthestRows,
  dim: number,
): Promise<number> {
  const empty: number[] = [];
  for (let c = 0; c < counts.length; c++) if (counts[c] === 0) empty.push(c);
  if (empty.length === 0) return 0;
  const moves: Array<{ row: number; from: number; to: number }> = [];
  const left = Float64Array.from(counts);
  for (const cand of far.sorted()) {
    if (moves.length === empty.length) break;
    if (left[cand.cluster]! <= 1) continue;
    left[cand.cluster]! -= 1;
    moves.push({ row: cand.row, from: cand.cluster, to: empty[moves.length]! });
  }
  if (moves.length === 0) return 0;
  const data = await source.readRows(Int32Array.from(moves, (m) => m.row));
  moves.forEach((m, q) => {
    const xo = q * dim;
    const fo = m.from * dim;
    const to = m.to * dim;
    for (let j = 0; j < dim; j++) {
      const x = data[xo + j]!;
      sums[fo + j]! -= x;
      sums[to + j] = x;
    }
    counts[m.from]! -= 1;
    counts[m.to] = 1;
  });
  return moves.length;
}

async function inertiaOf(source: RowSource, centroids: Float32Array, kernel: SimilarityKernel, chunkRows: number | undefined): Promise<number> {
  let inertia = 0;
  await source.forEachChunk(async (chunk) => {
    const { dist2 } = await kernel.nearestCentroid(chunk, centroids, source.dim);
    for (let r = 0; r < dist2.length; r++) if (dist2[r]! > 0) inertia += dist2[r]!;
  }, chunkRows);
  return inertia;
}

// ---------------------------------------------------------------------------------------------
// Public entry points.

function checkOption(ok: boolean, field: string, message: string): void {
  if (!ok) throw new InputError(`${field}: ${message}`, { context: { field } });
}

/** Fit k-means on the rows of `source` (unit-normalized embeddings). See `KMeansOptions`. */
export async function fitKMeans(source: RowSource, options: KMeansOptions): Promise<KMeansResult> {
  const { k, kernel, chunkRows, onProgress } = options;
  const init = options.init ?? 'k-means||';
  const maxIter = options.maxIter ?? 300;
  const tol = options.tol ?? 1e-4;
  const seed = options.seed ?? 42;
  const nInit = init instanceof Float32Array ? 1 : (options.nInit ?? 1);
  const fitFraction = options.fitFraction ?? 1;
  const oversamplingFactor = options.oversamplingFactor ?? 2;
  const parallelRounds = options.parallelRounds ?? 5;
  const { rows, dim } = source;

  checkOption(Number.isInteger(k) && k >= 1, 'n_clusters', `must be a positive integer, got ${k}`);
  checkOption(k <= rows, 'n_clusters', `n_clusters=${k} is larger than the number of rows (${rows})`);
  checkOption(Number.isInteger(maxIter) && maxIter >= 1, 'max_iter', `must be a positive integer, got ${maxIter}`);
  checkOption(Number.isFinite(tol) && tol >= 0, 'tol', `must be a finite number ≥ 0, got ${tol}`);
  checkOption(Number.isSafeInteger(seed) && seed >= 0, 'seed', `must be a non-negative integer, got ${seed}`);
  checkOption(Number.isInteger(nInit) && nInit >= 1, 'n_init', `must be a positive integer, got ${nInit}`);
  checkOption(fitFraction > 0 && fitFraction <= 1, 'fit_fraction', `must be in (0, 1], got ${fitFraction}`);
  checkOption(oversamplingFactor > 0, 'oversampling_factor', `must be > 0, got ${oversamplingFactor}`);
  checkOption(Number.isInteger(parallelRounds) && parallelRounds >= 1, 'parallel_rounds', `must be a positive integer, got ${parallelRounds}`);
  if (init instanceof Float32Array) {
    checkOption(init.length === k * dim, 'init', `initial centroids must be k × dim = ${k * dim} floats, got ${init.length}`);
  } else {
    checkOption(init === 'k-means++' || init === 'k-means||' || init === 'random', 'init', `must be k-means++, k-means|| or random, got ${String(init)}`);
  }

  let fitSource = source;
  if (fitFraction < 1) {
    const m = Math.round(rows * fitFraction);
    checkOption(m >= k, 'fit_fraction', `fit_fraction=${fitFraction} of ${rows} rows is ${m} rows, fewer than n_clusters=${k}`);
    const indices = sampleSortedIndices(rows, m, createRng(seed, STREAM_SAMPLE));
    const data = new Float32Array(m * dim);
    const step = chunkRows ?? DEFAULT_CHUNK_ROWS;
    for (let at = 0; at < m; at += step) {
      data.set(await source.readRows(indices.subarray(at, Math.min(at + step, m))), at * dim);
    }
    fitSource = rowSourceFromArray(data, dim);
  }

  // tol 0 (run to max_iter or to a fixed point) needs no variance pass.
  const tolAbs = tol === 0 ? 0 : tol * (await meanFeatureVariance(fitSource, chunkRows));
  const norms = init === 'k-means++' || kernel.nearestCentroidSums ? await rowNormsSquared(fitSource, chunkRows) : undefined;
  const rowNorm2 = kernel.nearestCentroidSums && norms ? Float32Array.from(norms) : null;

  let best: (LloydResult & { run: number }) | undefined;
  for (let run = 0; run < nInit; run++) {
    const rng = createRng(seed + run, STREAM_INIT);
    let initial: Float32Array;
    if (init instanceof Float32Array) initial = Float32Array.from(init);
    else if (init === 'random') initial = await initRandom(fitSource, k, rng);
    else if (init === 'k-means++') initial = await fitSource.readRows(await seedPlusPlus(fitSource, k, rng, kernel, chunkRows, undefined, norms));
    else initial = await initParallel(fitSource, k, rng, kernel, chunkRows, oversamplingFactor, parallelRounds);
    const result = await lloyd(fitSource, initial, { k, rowNorm2, maxIter, tolAbs, kernel, chunkRows, run, onProgress });
    if (!best || result.inertia < best.inertia) best = { ...result, run };
  }
  invariant(best, 'no k-means run');
  return {
    centroids: best.centroids,
    iterations: best.iterations,
    inertia: best.inertia,
    converged: best.converged,
    emptyClustersReseeded: best.emptyClustersReseeded,
    fitRows: fitSource.rows,
    bestRun: best.run,
  };
}

const normCache = new WeakMap<Float32Array, Float64Array>();

/** |c| per centroid in float64, cached per centroids array (treated as immutable). */
export function centroidNorms(centroids: Float32Array, dim: number): Float64Array {
  let norms = normCache.get(centroids);
  if (norms && norms.length * dim === centroids.length) return norms;
  const k = centroids.length / dim;
  norms = new Float64Array(k);
  for (let c = 0; c < k; c++) {
    let s = 0;
    for (let j = 0; j < dim; j++) s += centroids[c * dim + j]! * centroids[c * dim + j]!;
    norms[c] = Math.sqrt(s);
  }
  normCache.set(centroids, norms);
  return norms;
}

/**
 * Assign each row of `chunk` (n × dim, unit length) to its nearest centroid. The kernel picks
 * the centroid; the distances to it are then recomputed here exactly (float64 sums of float32
 * inputs in index order, rounded once with Math.fround), so a clip gets bit-identical
 * l2_dist_to_cent / cosine_dist_to_cent in batch and streaming whatever its batch, and ranking
 * on them agrees. A zero centroid (|c| = 0) gives cosine distance 1 (x·c = 0).
 */
export async function assignToCentroids(
  chunk: Float32Array,
  centroids: Float32Array,
  dim: number,
  kernel: SimilarityKernel,
): Promise<CentroidAssignment> {
  invariant(Number.isInteger(dim) && dim > 0, `dim must be a positive integer, got ${dim}`);
  invariant(chunk.length % dim === 0, `chunk length ${chunk.length} is not a multiple of dim ${dim}`);
  invariant(centroids.length % dim === 0 && centroids.length > 0, `centroids length ${centroids.length} is not a positive multiple of dim ${dim}`);
  const n = chunk.length / dim;
  const k = centroids.length / dim;
  const l2DistToCent = new Float32Array(n);
  const cosineDistToCent = new Float32Array(n);
  if (n === 0) return { centroid: new Int32Array(0), l2DistToCent, cosineDistToCent };
  const { index } = await kernel.nearestCentroid(chunk, centroids, dim);
  const centroid = Int32Array.from(index);
  const norms = centroidNorms(centroids, dim);
  for (let r = 0; r < n; r++) {
    const c = centroid[r]!;
    if (!(c >= 0 && c < k)) invariant(false, `kernel returned centroid ${c} for k=${k}`);
    const xo = r * dim;
    const co = c * dim;
    let d2 = 0;
    let dot = 0;
    for (let j = 0; j < dim; j++) {
      const x = chunk[xo + j]!;
      const y = centroids[co + j]!;
      const diff = x - y;
      d2 += diff * diff;
      dot += x * y;
    }
    l2DistToCent[r] = Math.fround(Math.sqrt(d2));
    const norm = norms[c]!;
    cosineDistToCent[r] = norm > 0 ? Math.fround(1 - dot / norm) : 1;
  }
  return { centroid, l2DistToCent, cosineDistToCent };
}

export interface SecondNearestCentroids {
  /** Per row: the nearest centroid other than its own (`nearest[r]`); -1 when there is only one. */
  readonly centroid: Int32Array;
  /** |x − c₂|, computed exactly like `l2_dist_to_cent` (float64 sums, rounded once); Infinity when none. */
  readonly l2DistToCent: Float32Array;
}

/**
 * The runner-up centroid of each row of `chunk` (for multi-probe pairwise): rows are grouped by
 * their own centroid and each group is assigned by the kernel to the centroids without it, so the
 * cost is one more assignment pass (a GEMM), not a top-2 selection in JS. Ties resolve to the
 * lowest centroid index, as in `nearestCentroid`.
 */
export async function secondNearestCentroids(
  chunk: Float32Array,
  centroids: Float32Array,
  dim: number,
  nearest: Int32Array,
  kernel: SimilarityKernel,
): Promise<SecondNearestCentroids> {
  const n = chunk.length / dim;
  const k = centroids.length / dim;
  invariant(nearest.length === n, `nearest has ${nearest.length} rows, chunk ${n}`);
  const centroid = new Int32Array(n).fill(-1);
  const l2DistToCent = new Float32Array(n).fill(Infinity);
  if (k < 2 || n === 0) return { centroid, l2DistToCent };
  const members = new Map<number, number[]>();
  for (let r = 0; r < n; r++) {
    const c = nearest[r]!;
    let list = members.get(c);
    if (!list) members.set(c, (list = []));
    list.push(r);
  }
  const others = new Float32Array((k - 1) * dim);
  for (const [own, rows] of members) {
    // Centroids without `own`: index j here is j (j < own) or j + 1 (j >= own) in `centroids`.
    others.set(centroids.subarray(0, own * dim), 0);
    others.set(centroids.subarray((own + 1) * dim), own * dim);
    const group = new Float32Array(rows.length * dim);
    rows.forEach((r, i) => group.set(chunk.subarray(r * dim, (r + 1) * dim), i * dim));
    const { index } = await kernel.nearestCentroid(group, others, dim);
    rows.forEach((r, i) => {
      const c = index[i]! < own ? index[i]! : index[i]! + 1;
      invariant(c >= 0 && c < k && c !== own, `second-nearest centroid ${c} for own ${own}, k=${k}`);
      centroid[r] = c;
      let d2 = 0;
      for (let j = 0; j < dim; j++) {
        const diff = chunk[r * dim + j]! - centroids[c * dim + j]!;
        d2 += diff * diff;
      }
      l2DistToCent[r] = Math.fround(Math.sqrt(d2));
    });
  }
  return { centroid, l2DistToCent };
}

/**
 * Multi-probe rule: the cluster a clip is also compared in, or -1. A clip is probed into its
 * second-nearest centroid's cluster when that centroid is less than `margin` farther than its own
 * (both distances as stored, float32). Strictly less, so margin 0 probes nothing and equals
 * probe 1 exactly, even for a clip equidistant from two centroids.
 */
export function probedCentroid(second: number, secondL2: number, ownL2: number, margin: number): number {
  return second >= 0 && secondL2 - ownL2 < margin ? second : -1;
}
