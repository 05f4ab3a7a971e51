/**
 * A plain brute-force reference of NeMo's semantic dedup, written independently of src/ (except
 * the id hash, which defines the random ranking): normalize, nearest centroid, rank with a JS
 * sort, then every pair of a cluster.
 */
import { rankHash } from '../../src/rank/index.js';

export interface RefRow {
  id: string;
  embedding: number[];
  meta?: Record<string, number | string | null>;
}

export interface RefOptions {
  centroids: number[][];
  whichToKeep?: 'hard' | 'easy' | 'random';
  distanceMetric?: 'cosine' | 'l2';
  ranking?: { column: string; order: 'asc' | 'desc' }[];
  idType?: 'string' | 'int64';
  seed?: number;
}

export interface RefResult {
  id: string;
  centroid: number;
  maxId: string;
  score: number;
}

function normalize(v: number[]): Float32Array {
  const f = Float32Array.from(v);
  let s = 0;
  for (const x of f) s += x * x;
  const inv = 1 / Math.sqrt(s);
  return f.map((x) => x * inv);
}

interface RefItem extends RefRow {
  x: Float32Array;
  /** Nearest centroid, its distances, and the second-nearest centroid (-1 when k = 1) with its l2. */
  k: number;
  l2: number;
  cos: number;
  k2: number;
  l2Second: number;
  hash: number;
}

/** Normalize, compute every centroid distance (float64 sums, rounded once) and pick the nearest two. */
function prepareItems(rows: RefRow[], opts: RefOptions): RefItem[] {
  const C = opts.centroids.map((c) => Float32Array.from(c));
  return rows.map((r) => {
    const x = normalize(r.embedding);
    const d2 = C.map((c) => {
      let d = 0;
      for (let j = 0; j < x.length; j++) d += (x[j]! - c[j]!) ** 2;
      return d;
    });
    let k = 0;
    d2.forEach((d, i) => {
      if (d < d2[k]!) k = i;
    });
    let k2 = -1;
    d2.forEach((d, i) => {
      if (i !== k && (k2 < 0 || d < d2[k2]!)) k2 = i;
    });
    const c = C[k]!;
    let dot = 0;
    let cc = 0;
    for (let j = 0; j < x.length; j++) {
      dot += x[j]! * c[j]!;
      cc += c[j]! * c[j]!;
    }
    return {
      ...r,
      x,
      k,
      l2: Math.fround(Math.sqrt(d2[k]!)),
      cos: Math.fround(1 - dot / Math.sqrt(cc)),
      k2,
      l2Second: k2 < 0 ? Infinity : Math.fround(Math.sqrt(d2[k2]!)),
      hash: rankHash(r.id, opts.seed ?? 42),
    };
  });
}

/** The ranking's total order (negative: `a` is kept over `b`). */
function rankComparator(opts: RefOptions): (a: RefItem, b: RefItem) => number {
  const cmpId = (a: string, b: string) =>
    opts.idType === 'int64' ? (BigInt(a) < BigInt(b) ? -1 : BigInt(a) > BigInt(b) ? 1 : 0) : a < b ? -1 : a > b ? 1 : 0;
  return (a, b) => {
    if (opts.ranking?.length) {
      for (const { column, order } of opts.ranking) {
        const x = a.meta?.[column] ?? null;
        const y = b.meta?.[column] ?? null;
        if (x === y) continue;
        if (x === null) return 1;
        if (y === null) return -1;
        const c = x < y ? -1 : 1;
        return order === 'asc' ? c : -c;
      }
      return cmpId(a.id, b.id);
    }
    if (opts.whichToKeep === 'random') return a.hash - b.hash || cmpId(a.id, b.id);
    const da = opts.distanceMetric === 'l2' ? a.l2 : a.cos;
    const db = opts.distanceMetric === 'l2' ? b.l2 : b.cos;
    if ((opts.whichToKeep ?? 'hard') === 'hard') return db - da || cmpId(b.id, a.id);
    return da - db || cmpId(a.id, b.id);
  };
}

function dotF32(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  for (let t = 0; t < a.length; t++) dot += a[t]! * b[t]!;
  return Math.fround(dot);
}

export function referenceDedup(rows: RefRow[], opts: RefOptions): Map<string, RefResult> {
  const items = prepareItems(rows, opts);
  const compare = rankComparator(opts);
  const out = new Map<string, RefResult>();
  for (let k = 0; k < opts.centroids.length; k++) {
    const members = items.filter((it) => it.k === k).sort(compare);
    members.forEach((it, j) => {
      // NeMo: zero-masked triangle, then max; so nothing positive before → 0 and the clip itself.
      let score = 0;
      let maxAt = j;
      for (let i = 0; i < j; i++) {
        const s = dotF32(members[i]!.x, it.x);
        if (s > score || (s === score && i < maxAt)) {
          score = s;
          maxAt = i;
        }
      }
      out.set(it.id, { id: it.id, centroid: k, maxId: members[maxAt]!.id, score });
    });
  }
  return out;
}

export interface ProbedRefResult extends RefResult {
  /** Second cluster the clip is compared in, or -1. */
  probe: number;
  /** Position in the global rank order. */
  globalPos: number;
}

/**
 * Brute force of multi-probe (`--probe 2`): a clip is probed into its second-nearest centroid's
 * cluster when l2(second) − l2(own) < margin; clips share a compared set when their {own, probe}
 * clusters meet. Score = max similarity to any clip ranked before it (one global order: the
 * ranking without the cluster partition) that shares a set with it; ties → the first-ranked;
 * nothing ≥ 0 → 0 and itself.
 */
export function referenceProbedDedup(rows: RefRow[], opts: RefOptions & { probeMargin: number }): Map<string, ProbedRefResult> {
  const items = prepareItems(rows, opts).sort(rankComparator(opts));
  const probe = items.map((it) => (it.k2 >= 0 && it.l2Second - it.l2 < opts.probeMargin ? it.k2 : -1));
  const out = new Map<string, ProbedRefResult>();
  items.forEach((it, g) => {
    let score = 0;
    let maxAt = g;
    for (let h = 0; h < g; h++) {
      if (!sharesSet(items[h]!.k, probe[h]!, it.k, probe[g]!)) continue;
      const s = dotF32(items[h]!.x, it.x);
      if (s > score || (s === score && h < maxAt)) {
        score = s;
        maxAt = h;
      }
    }
    out.set(it.id, { id: it.id, centroid: it.k, maxId: items[maxAt]!.id, score, probe: probe[g]!, globalPos: g });
  });
  return out;
}

/** Whether two clips (own cluster, probed cluster or -1) are compared in some cluster. */
export function sharesSet(ka: number, pa: number, kb: number, pb: number): boolean {
  return ka === kb || (pa >= 0 && pa === kb) || (pb >= 0 && pb === ka) || (pa >= 0 && pa === pb);
}

/** Normalized float32 embedding of a row, as the pipeline computes it. */
export function referenceNormalize(v: number[]): Float32Array {
  return normalize(v);
}

/** Cosine similarity of two vectors, in double precision. */
export function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i]! * b[i]!;
    aa += a[i]! * a[i]!;
    bb += b[i]! * b[i]!;
  }
  return ab / Math.sqrt(aa * bb);
}
