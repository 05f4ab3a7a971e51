import type { IdType, MetadataValue, RankSpec } from '../shared/types.js';

/**
 * Rank order of a cluster. Batch ranks with an SQL ORDER BY in DuckDB (`rankOrderBySql`);
 * streaming compares keys in JS (`compareRankKeys`). Both must give the same total order, so
 * both follow the same rules: float32 distances compared exactly, NULL metadata last, strings by
 * UTF-8 bytes, int64 ids numerically, id as the final tie-breaker.
 */

/** What a clip carries for ranking: its distances, the id hash and its metadata. */
export interface RankFields {
  readonly id: string;
  readonly cosineDistToCent: number;
  readonly l2DistToCent: number;
  readonly hash: number;
  readonly metadata: Readonly<Record<string, MetadataValue>>;
}

/**
 * Seeded 53-bit hash of an id (exact in a float64, so DuckDB DOUBLE and JS agree), used by
 * `which-to-keep random` so batch and stream pick the same random order.
 */
export function rankHash(id: string, seed: number): number {
  let h1 = 0xdeadbeef ^ seed;
  let h2 = 0x41c6ce57 ^ seed;
  for (let i = 0; i < id.length; i++) {
    const ch = id.charCodeAt(i);
    h1 = Math.imul(h1 ^ ch, 2654435761);
    h2 = Math.imul(h2 ^ ch, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0);
}

const quoteIdent = (name: string) => `"${name.replace(/"/g, '""')}"`;

/** The ORDER BY clause (without the keywords) ranking one cluster's rows in table `clips`. */
export function rankOrderBySql(spec: RankSpec, idColumn = 'id'): string {
  const id = quoteIdent(idColumn);
  if (spec.ranking.length > 0) {
    const cols = spec.ranking.map((r) => `${quoteIdent(r.column)} ${r.order.toUpperCase()} NULLS LAST`);
    return [...cols, `${id} ASC`].join(', ');
  }
  const dist = spec.distanceMetric === 'l2' ? 'l2_dist_to_cent' : 'cosine_dist_to_cent';
  switch (spec.whichToKeep) {
    case 'hard':
      return `${dist} DESC, ${id} DESC`;
    case 'easy':
      return `${dist} ASC, ${id} ASC`;
    case 'random':
      return `rank_hash ASC, ${id} ASC`;
  }
}

function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return false;
  return true;
}

/** Byte-wise UTF-8 comparison, as DuckDB orders VARCHAR. */
export function compareStrings(a: string, b: string): number {
  if (isAscii(a) && isAscii(b)) return a < b ? -1 : a > b ? 1 : 0;
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

export function compareIds(a: string, b: string, idType: IdType): number {
  if (idType === 'string') return compareStrings(a, b);
  if (a.length < 16 && b.length < 16) return Number(a) - Number(b);
  const x = BigInt(a);
  const y = BigInt(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

function compareValues(a: MetadataValue, b: MetadataValue): number {
  if (typeof a === 'string' && typeof b === 'string') return compareStrings(a, b);
  return a! < b! ? -1 : a! > b! ? 1 : 0;
}

/** Negative when `a` ranks before `b` (is kept over it), following `rankOrderBySql`. */
export function compareRankKeys(a: RankFields, b: RankFields, spec: RankSpec, idType: IdType): number {
  if (spec.ranking.length > 0) {
    for (const { column, order } of spec.ranking) {
      const x = a.metadata[column] ?? null;
      const y = b.metadata[column] ?? null;
      if (x === null || y === null) {
        if (x === y) continue;
        return x === null ? 1 : -1; // NULLS LAST in both directions
      }
      const c = compareValues(x, y);
      if (c !== 0) return order === 'asc' ? c : -c;
    }
    return compareIds(a.id, b.id, idType);
  }
  if (spec.whichToKeep === 'random') return a.hash - b.hash || compareIds(a.id, b.id, idType);
  const da = spec.distanceMetric === 'l2' ? a.l2DistToCent : a.cosineDistToCent;
  const db = spec.distanceMetric === 'l2' ? b.l2DistToCent : b.cosineDistToCent;
  const dir = spec.whichToKeep === 'hard' ? -1 : 1;
  if (da !== db) return da < db ? -dir : dir;
  return dir * compareIds(a.id, b.id, idType);
}
