/**
 * Deterministic synthetic clip embeddings for demos, tests and benchmarks: `clusters` random unit
 * directions; each clip is its cluster's direction plus Gaussian noise, and about
 * `duplicateFraction` of the clips are near-copies (tiny noise) of an earlier clip.
 *
 * Every clip is a pure function of (seed, index), so any row range can be generated on its own
 * (bounded memory for big files) and gives the same values as generating everything at once.
 */
import type { ClipBatch, MetadataValue } from '../shared/types.js';

export interface SampleOptions {
  readonly rows: number;
  readonly dim: number;
  readonly clusters: number;
  /** Expected fraction of clips that are near-copies of an earlier clip (default 0.1). */
  readonly duplicateFraction?: number;
  readonly seed?: number;
  /** Norm of the noise added to a cluster direction (default 0.5: cosine to it ≈ 0.9). */
  readonly noise?: number;
  /** Norm of the noise added to a near-copy (default 0.01: cosine to its original ≈ 0.99995). */
  readonly duplicateNoise?: number;
  /** Consecutive clips cut from one video (default 8), for `video_id`. */
  readonly clipsPerVideo?: number;
}

export interface SampleClips extends ClipBatch {
  /** Cluster (direction) of each clip. */
  readonly cluster: Int32Array;
  /** Global index of the clip each row is a near-copy of, or -1 for an original. */
  readonly duplicateOf: Int32Array;
}

/** mulberry32: a tiny 32-bit PRNG, good enough for synthetic data. Returns floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Mix a seed and an index into an independent 32-bit seed (splitmix32-style finalizer). */
function mixSeed(seed: number, index: number): number {
  let z = (Math.imul(seed >>> 0, 0x9e3779b9) + Math.imul(index >>> 0, 0x85ebca6b) + Math.floor(index / 4294967296)) >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
  return (z ^ (z >>> 16)) >>> 0;
}

/** Standard normal samples from a uniform source (Box–Muller, both values used). */
function gaussian(rand: () => number): () => number {
  let spare: number | undefined;
  return () => {
    if (spare !== undefined) {
      const s = spare;
      spare = undefined;
      return s;
    }
    const u = 1 - rand();
    const v = rand();
    const r = Math.sqrt(-2 * Math.log(u));
    spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  };
}

/** `clip-000001` for index 0; zero-padded to at least 6 digits and to the width of `rows`. */
export function sampleClipId(index: number, rows: number): string {
  return `clip-${String(index + 1).padStart(Math.max(6, String(rows).length), '0')}`;
}

interface Resolved {
  rows: number;
  dim: number;
  clusters: number;
  duplicateFraction: number;
  seed: number;
  noise: number;
  duplicateNoise: number;
  clipsPerVideo: number;
}

function resolve(o: SampleOptions): Resolved {
  const r: Resolved = {
    rows: o.rows,
    dim: o.dim,
    clusters: o.clusters,
    duplicateFraction: o.duplicateFraction ?? 0.1,
    seed: o.seed ?? 42,
    noise: o.noise ?? 0.5,
    duplicateNoise: o.duplicateNoise ?? 0.01,
    clipsPerVideo: o.clipsPerVideo ?? 8,
  };
  if (!Number.isSafeInteger(r.rows) || r.rows < 0) throw new RangeError(`rows must be a non-negative integer, got ${o.rows}`);
  if (!Number.isSafeInteger(r.dim) || r.dim < 1) throw new RangeError(`dim must be a positive integer, got ${o.dim}`);
  if (!Number.isSafeInteger(r.clusters) || r.clusters < 1) throw new RangeError(`clusters must be a positive integer, got ${o.clusters}`);
  if (!(r.duplicateFraction >= 0 && r.duplicateFraction < 1)) {
    throw new RangeError(`duplicateFraction must be in [0, 1), got ${r.duplicateFraction}`);
  }
  return r;
}

const directionCache = new Map<string, Float32Array>();

/** The cluster directions (clusters × dim, unit rows) for a seed. */
export function sampleDirections(options: Pick<SampleOptions, 'dim' | 'clusters' | 'seed'>): Float32Array {
  const seed = options.seed ?? 42;
  const key = `${seed}:${options.clusters}:${options.dim}`;
  const cached = directionCache.get(key);
  if (cached) return cached;
  const { dim, clusters } = options;
  const g = gaussian(mulberry32(mixSeed(seed, 0xd1ec7)));
  const dirs = new Float32Array(clusters * dim);
  for (let c = 0; c < clusters; c++) {
    let norm = 0;
    const tmp = new Float64Array(dim);
    for (let k = 0; k < dim; k++) {
      tmp[k] = g();
      norm += tmp[k]! * tmp[k]!;
    }
    norm = Math.sqrt(norm);
    for (let k = 0; k < dim; k++) dirs[c * dim + k] = tmp[k]! / norm;
  }
  if (directionCache.size > 16) directionCache.clear();
  directionCache.set(key, dirs);
  return dirs;
}

/** Generate all clips. */
export function generateSampleClips(options: SampleOptions): SampleClips {
  return generateSampleClipRange(options, 0, options.rows);
}

/**
 * Generate clips [start, start + count) of the sample described by `options` (same values as the
 * corresponding rows of `generateSampleClips`).
 */
export function generateSampleClipRange(options: SampleOptions, start: number, count: number): SampleClips {
  const o = resolve(options);
  const end = Math.min(o.rows, start + count);
  const n = Math.max(0, end - start);
  const { dim } = o;
  const dirs = sampleDirections(o);
  const sigma = o.noise / Math.sqrt(dim);
  const dupSigma = o.duplicateNoise / Math.sqrt(dim);

  const ids: string[] = new Array(n);
  const embeddings = new Float32Array(n * dim);
  const cluster = new Int32Array(n);
  const duplicateOf = new Int32Array(n);
  const videoId: MetadataValue[] = new Array(n);
  const duration: MetadataValue[] = new Array(n);
  const frameCount: MetadataValue[] = new Array(n);
  const vec = new Float64Array(dim);

  for (let r = 0; r < n; r++) {
    const i = start + r;
    // Follow the near-copy chain back to an original, then replay it forwards.
    const chain: { rand: () => number }[] = [];
    let at = i;
    let dupOf = -1;
    for (;;) {
      const rand = mulberry32(mixSeed(o.seed, at));
      chain.push({ rand });
      if (at > 0 && rand() < o.duplicateFraction) {
        const j = Math.floor(rand() * at);
        if (at === i) dupOf = j;
        at = j;
      } else break;
    }
    const root = chain[chain.length - 1]!;
    const c = Math.floor(root.rand() * o.clusters);
    const dur = Math.round((2 + root.rand() * 8) * 1000) / 1000;
    const g = gaussian(root.rand);
    for (let k = 0; k < dim; k++) vec[k] = dirs[c * dim + k]! + sigma * g();
    for (let s = chain.length - 2; s >= 0; s--) {
      const gd = gaussian(chain[s]!.rand);
      for (let k = 0; k < dim; k++) vec[k] = vec[k]! + dupSigma * gd();
    }
    embeddings.set(vec, r * dim);
    ids[r] = sampleClipId(i, o.rows);
    cluster[r] = c;
    duplicateOf[r] = dupOf;
    videoId[r] = `video-${String(Math.floor(i / o.clipsPerVideo) + 1).padStart(5, '0')}`;
    duration[r] = dur;
    frameCount[r] = BigInt(Math.round(dur * 30));
  }
  return {
    ids,
    idType: 'string',
    dim,
    embeddings,
    metadata: { video_id: videoId, duration_s: duration, frame_count: frameCount },
    origin: { firstRow: start },
    cluster,
    duplicateOf,
  };
}
