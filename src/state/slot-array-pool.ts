/**
 * A cluster state's per-slot typed arrays, all with room for the same number of slots (the
 * capacity). `emb` is the embedding matrix (capacity × dim float32): ~99% of the bytes.
 */
export interface SlotArrays {
  readonly emb: Float32Array;
  readonly rawScore: Float64Array;
  readonly rawMax: Int32Array;
  readonly flags: Uint8Array;
  readonly link: Int32Array;
  readonly home: Int32Array;
  readonly order: Int32Array;
  readonly rowHash: Int32Array;
}

/** Slots `arrays` has room for. */
export const slotCapacity = (arrays: SlotArrays): number => arrays.rawScore.length;

/** Bytes `arrays` hold. */
export function slotArrayBytes(a: SlotArrays): number {
  return a.emb.byteLength + a.rawScore.byteLength + a.rawMax.byteLength + a.flags.byteLength + a.link.byteLength + a.home.byteLength + a.order.byteLength + a.rowHash.byteLength;
}

/** Fresh arrays for `capacity` slots of `dim` floats (not zero-filled: slots are written before they are read). */
export function allocateSlotArrays(capacity: number, dim: number): SlotArrays {
  const floats = capacity * dim;
  return {
    // Zeroing the embedding matrix cost as much as copying the old one into it.
    emb: new Float32Array(Buffer.allocUnsafeSlow(floats * 4).buffer, 0, floats),
    rawScore: new Float64Array(capacity),
    rawMax: new Int32Array(capacity),
    flags: new Uint8Array(capacity),
    link: new Int32Array(capacity),
    home: new Int32Array(capacity),
    order: new Int32Array(capacity),
    rowHash: new Int32Array(capacity),
  };
}

/** Where a cluster state gets its slot arrays from and gives them back (see `SlotArrayPool`). */
export interface SlotArraySource {
  /** Arrays with room for at least `capacity` slots (contents undefined), or null: allocate them. */
  take(capacity: number): SlotArrays | null;
  /** Arrays the state no longer uses (it grew out of them, or was evicted). */
  release(arrays: SlotArrays): void;
  /**
   * The capacity to grow to when `needed` slots do not fit in `current` (default: double, so
   * appends copy each row about once on average).
   */
  growTo?(needed: number, current: number): number;
}

interface Pooled {
  readonly arrays: SlotArrays;
  readonly bytes: number;
  /** Reusable once the engine's write epoch `readyAt` has settled (a pending write may read its rows). */
  readonly readyAt: number;
}

/**
 * Slot arrays of evicted (or grown-out) cluster states, kept for the next state loaded or grown
 * under a memory budget. Why: with clips arriving in random cluster order every checkpoint touches
 * every cluster, so a budgeted engine evicts and reloads states at almost every checkpoint; a
 * fresh 10–15 MB matrix per reload left the evicted ones to the garbage collector, and the
 * process's RSS grew far past the budget. Reused, the arrays stay at about budget + this pool's
 * bound.
 *
 * Released arrays may still be read by a checkpoint write that has not run yet (a cut's member
 * changes are views into the cluster matrices), so each carries the write epoch after which it
 * is free; `take` hands out only those whose epoch has settled.
 */
export class SlotArrayPool {
  readonly #maxBytes: number;
  #free: Pooled[] = [];
  #bytes = 0;
  /** Arrays handed out again / released into the pool / dropped (pool full, or too big for it). */
  reused = 0;
  released = 0;
  dropped = 0;

  /** `maxBytes`: most bytes kept; beyond it the smallest arrays are dropped (left to the GC). */
  constructor(maxBytes: number) {
    this.#maxBytes = maxBytes;
  }

  /** Bytes held. */
  get bytes(): number {
    return this.#bytes;
  }

  get size(): number {
    return this.#free.length;
  }

  release(arrays: SlotArrays, readyAt: number): void {
    const bytes = slotArrayBytes(arrays);
    if (slotCapacity(arrays) === 0) return;
    if (bytes > this.#maxBytes) {
      this.dropped++;
      return;
    }
    this.#free.push({ arrays, bytes, readyAt });
    this.#bytes += bytes;
    this.released++;
    // The smallest go first: states only grow, so those fit the fewest of the states to come.
    while (this.#bytes > this.#maxBytes) {
      let smallest = 0;
      for (let i = 1; i < this.#free.length; i++) if (this.#free[i]!.bytes < this.#free[smallest]!.bytes) smallest = i;
      const [old] = this.#free.splice(smallest, 1) as [Pooled];
      this.#bytes -= old.bytes;
      this.dropped++;
    }
  }

  /**
   * The smallest free arrays with room for `capacity` slots and at most twice that (bigger ones
   * would count against the budget for nothing), among those whose epoch is at most `settled`.
   */
  take(capacity: number, settled: number): SlotArrays | null {
    let best = -1;
    let bestCapacity = Infinity;
    for (let i = 0; i < this.#free.length; i++) {
      const { arrays, readyAt } = this.#free[i]!;
      const cap = slotCapacity(arrays);
      if (readyAt > settled || cap < capacity || cap > 2 * Math.max(capacity, 64) || cap >= bestCapacity) continue;
      best = i;
      bestCapacity = cap;
    }
    if (best < 0) return null;
    const [taken] = this.#free.splice(best, 1) as [Pooled];
    this.#bytes -= taken.bytes;
    this.reused++;
    return taken.arrays;
  }

  /** Drop everything. */
  clear(): void {
    this.dropped += this.#free.length;
    this.#free = [];
    this.#bytes = 0;
  }
}
