import type { PairsAboveResult } from './types.js';

/**
 * Growable (query, candidate, score) columns for `similarityPairsAbove`: the number of pairs is
 * not known before the scan, and typed arrays keep a large result compact.
 */
export class PairCollector {
  #query = new Int32Array(1024);
  #candidate = new Int32Array(1024);
  #score = new Float32Array(1024);
  #length = 0;

  get length(): number {
    return this.#length;
  }

  push(query: number, candidate: number, score: number): void {
    if (this.#length === this.#query.length) this.#grow();
    this.#query[this.#length] = query;
    this.#candidate[this.#length] = candidate;
    this.#score[this.#length] = score;
    this.#length++;
  }

  #grow(): void {
    const size = this.#query.length * 2;
    const query = new Int32Array(size);
    const candidate = new Int32Array(size);
    const score = new Float32Array(size);
    query.set(this.#query);
    candidate.set(this.#candidate);
    score.set(this.#score);
    this.#query = query;
    this.#candidate = candidate;
    this.#score = score;
  }

  /**
   * The pairs sorted by (query, candidate). `sorted` says they were pushed in that order already
   * (one column block per query row), which skips the sort.
   */
  finish(sorted: boolean): PairsAboveResult {
    const n = this.#length;
    const query = this.#query.slice(0, n);
    const candidate = this.#candidate.slice(0, n);
    const score = this.#score.slice(0, n);
    if (sorted || n < 2) return { query, candidate, score };
    const order = Int32Array.from({ length: n }, (_, i) => i).sort((a, b) => query[a]! - query[b]! || candidate[a]! - candidate[b]!);
    return {
      query: Int32Array.from(order, (i) => query[i]!),
      candidate: Int32Array.from(order, (i) => candidate[i]!),
      score: Float32Array.from(order, (i) => score[i]!),
    };
  }
}
