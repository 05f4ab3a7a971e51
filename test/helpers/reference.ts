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

export function referenceDedup(rows: RefRow[], opts: RefOptions): Map<string, RefResult> {
  const C = opts.centroids.map((c) => Float32Array.from(c));
  const cmpId = (a: string, b: string) =>
    opts.idType === 'int64' ? (BigInt(a) < BigInt(b) ? -1 : BigInt(a) > BigInt(b) ? 1 : 0) : a < b ? -1 : a > b ? 1 : 0;
  const items = rows.map((r) => {
    const x = normalize(r.embedding);
    let best = Infinity;
    let k = 0;
    C.forEach((c, i) => {
      let d = 0;
      for (let j = 0; j < x.length; j++) d += (x[j]! - c[j]!) ** 2;
      if (d < best) {
        best = d;
        k = i;
      }
    });
    const c = C[k]!;
    let d2 = 0;
    let dot = 0;
    let cc = 0;
    for (let j = 0; j < x.length; j++) {
      d2 += (x[j]! - c[j]!) ** 2;
      dot += x[j]! * c[j]!;
      cc += c[j]! * c[j]!;
    }
    return { ...r, x, k, l2: Math.fround(Math.sqrt(d2)), cos: Math.fround(1 - dot / Math.sqrt(cc)), hash: rankHash(r.id, opts.seed ?? 42) };
  });
  type Item = (typeof items)[number];
  const compare = (a: Item, b: Item): number => {
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
  const out = new Map<string, RefResult>();
  for (let k = 0; k < C.length; k++) {
    const members = items.filter((it) => it.k === k).sort(compare);
    members.forEach((it, j) => {
      // NeMo: zero-masked triangle, then max; so nothing positive before → 0 and the clip itself.
      let score = 0;
      let maxAt = j;
      for (let i = 0; i < j; i++) {
        let dot = 0;
        for (let t = 0; t < it.x.length; t++) dot += members[i]!.x[t]! * it.x[t]!;
        const s = Math.fround(dot);
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
