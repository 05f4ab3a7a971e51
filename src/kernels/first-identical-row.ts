/**
 * Tie-breaking for exact duplicates, independent of how a backend sums.
 *
 * The contract says the first-ranked candidate wins among equal scores. Bitwise-identical rows
 * have mathematically equal dot products, but an optimized GEMM does not always produce the same
 * bits for them: MLAS picks its K-blocking from the N extent of each thread's slice (and a split
 * of the candidates over several calls changes N), so two copies of a row can differ in the last
 * bit and the later copy can win the argmax. Re-uploads are exactly what dedup is for, so this
 * case is common; we repair it after the fact instead of constraining the GEMM.
 *
 * Rows are bucketed by a hash of two runs of elements (cheap: two cache lines per row, against the
 * O(queries · rows · dim) product), and a winner is replaced by the earliest row that is
 * bitwise identical to it. Equal hashes of different rows only cost a full comparison.
 */

/** Hash 16 consecutive floats (one cache line) at the start and 16 in the middle of each row. */
const RUN = 16;

export interface IdenticalRowIndex {
  /** The lowest row index whose bits equal row `index`'s (itself when none is earlier). */
  firstIdentical(index: number): number;
  /** Of the rows whose bits equal row `index`'s (itself included), the one with the lowest `key`. */
  lowestIdentical(index: number, key: Int32Array): number;
}

/**
 * The hash `indexIdenticalRows` buckets rows by, of rows [from, to) into `into[from, to)`. A
 * caller that keeps rows for many calls (a cluster's state) hashes each row once and passes them.
 */
export function hashRows(rows: Float32Array, from: number, to: number, dim: number, into: Int32Array): Int32Array {
  // Bit patterns (not float values): "identical" means the same bits in every slot.
  const bits = new Int32Array(rows.buffer, rows.byteOffset, to * dim);
  // Two contiguous runs, not a strided sample: the pass is bound by cache lines touched per row.
  const runLength = Math.min(RUN, dim);
  const mid = dim > 2 * RUN ? (dim >> 1) & ~(RUN - 1) : 0;
  for (let r = from; r < to; r++) {
    const o = r * dim;
    let h = dim | 0;
    for (let k = 0; k < runLength; k++) h = Math.imul(h ^ bits[o + k]!, 0x9e3779b1) ^ (h >>> 15);
    if (mid > 0) for (let k = mid; k < mid + RUN; k++) h = Math.imul(h ^ bits[o + k]!, 0x9e3779b1) ^ (h >>> 15);
    into[r] = h;
  }
  return into;
}

/** Build the index over `rows` (count × dim float32, row-major); `hashes`: their `hashRows`, when known. */
export function indexIdenticalRows(rows: Float32Array, count: number, dim: number, hashes?: Int32Array): IdenticalRowIndex {
  const bits = new Int32Array(rows.buffer, rows.byteOffset, count * dim);
  const hashOf = hashes ?? hashRows(rows, 0, count, dim, new Int32Array(count));
  // Open-addressing table hash -> first row with that hash, plus a chain of later rows sharing
  // it (ascending). Typed arrays instead of Maps: this runs once per kernel call.
  const size = 1 << Math.max(4, Math.ceil(Math.log2(count * 2 + 1)));
  const slotHash = new Int32Array(size);
  const slotHead = new Int32Array(size).fill(-1);
  const slotTail = new Int32Array(size);
  const next = new Int32Array(count).fill(-1);
  const headOf = new Int32Array(count);
  for (let r = 0; r < count; r++) {
    const h = hashOf[r]!;
    let slot = (h ^ (h >>> 16)) & (size - 1);
    while (slotHead[slot] !== -1 && slotHash[slot] !== h) slot = (slot + 1) & (size - 1);
    if (slotHead[slot] === -1) {
      slotHash[slot] = h;
      slotHead[slot] = r;
    } else {
      next[slotTail[slot]!] = r;
    }
    slotTail[slot] = r;
    headOf[r] = slotHead[slot]!;
  }
  const sameRow = (a: number, b: number): boolean => {
    const ao = a * dim;
    const bo = b * dim;
    for (let k = 0; k < dim; k++) if (bits[ao + k] !== bits[bo + k]) return false;
    return true;
  };
  return {
    firstIdentical(index) {
      for (let r = headOf[index]!; r < index && r !== -1; r = next[r]!) {
        if (sameRow(r, index)) return r;
      }
      return index;
    },
    lowestIdentical(index, key) {
      let best = index;
      for (let r = headOf[index]!; r !== -1; r = next[r]!) {
        if (r !== index && key[r]! < key[best]! && sameRow(r, index)) best = r;
      }
      return best;
    },
  };
}

/** Replace each winner by the earliest identical candidate (score unchanged: the dot is equal). */
export function preferFirstIdentical(index: Int32Array, rows: Float32Array, count: number, dim: number, hashes?: Int32Array): void {
  let rowIndex: IdenticalRowIndex | undefined;
  for (let q = 0; q < index.length; q++) {
    const winner = index[q]!;
    if (winner <= 0) continue; // -1 (none) or already the first row
    rowIndex ??= indexIdenticalRows(rows, count, dim, hashes);
    index[q] = rowIndex.firstIdentical(winner);
  }
}

/**
 * As `preferFirstIdentical` for rows stored in any order: each winner is replaced by the identical
 * row ranked first (lowest `rank`). An identical row ranks before the winner or is the winner, so
 * it is still ranked before the query the winner was found for.
 */
export function preferFirstRankedIdentical(index: Int32Array, rows: Float32Array, count: number, dim: number, rank: Int32Array, hashes?: Int32Array): void {
  let rowIndex: IdenticalRowIndex | undefined;
  for (let q = 0; q < index.length; q++) {
    const winner = index[q]!;
    if (winner < 0) continue;
    rowIndex ??= indexIdenticalRows(rows, count, dim, hashes);
    index[q] = rowIndex.lowestIdentical(winner, rank);
  }
}
