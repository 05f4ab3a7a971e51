import { open, type FileHandle } from 'node:fs/promises';
import { createFileRowSource, rowSourceFromArray, type RowSource } from '../assign/index.js';

/**
 * Where the batch keeps normalized embeddings between phases (k-means, assignment, pairwise):
 * in one preallocated array when the row count is known and fits `budgetBytes`, otherwise in a
 * raw float32 file on disk read back a cluster at a time. Memory stays bounded by the budget,
 * never by the dataset.
 */
export class EmbeddingSpill {
  readonly dim: number;
  readonly path: string;
  #memory: Float32Array | null;
  #file: FileHandle | null = null;
  #rows = 0;

  private constructor(dim: number, path: string, memory: Float32Array | null) {
    this.dim = dim;
    this.path = path;
    this.#memory = memory;
  }

  static async create(options: { dim: number; path: string; expectedRows?: number; budgetBytes: number }): Promise<EmbeddingSpill> {
    const bytes = (options.expectedRows ?? Infinity) * options.dim * 4;
    const memory = bytes <= options.budgetBytes ? new Float32Array(options.expectedRows! * options.dim) : null;
    const spill = new EmbeddingSpill(options.dim, options.path, memory);
    if (!memory) spill.#file = await open(options.path, 'w');
    return spill;
  }

  get inMemory(): boolean {
    return this.#memory !== null;
  }

  get rows(): number {
    return this.#rows;
  }

  /**
   * Where the next `rows` rows would go when they are kept in memory (null when spilling to disk
   * or out of room): a producer may write them there, and `append` of that view copies nothing.
   */
  nextRows(rows: number): Float32Array | null {
    const from = this.#rows * this.dim;
    if (!this.#memory || from + rows * this.dim > this.#memory.length) return null;
    return this.#memory.subarray(from, from + rows * this.dim);
  }

  async append(rows: Float32Array): Promise<void> {
    const at = this.#rows * this.dim;
    const written = this.#memory !== null && rows.buffer === this.#memory.buffer && rows.byteOffset === this.#memory.byteOffset + at * 4;
    if (written) {
      // Already in place (filled through `nextRows`).
    } else if (this.#memory) this.#memory.set(rows, at);
    else await this.#file!.write(new Uint8Array(rows.buffer, rows.byteOffset, rows.byteLength));
    this.#rows += rows.length / this.dim;
  }

  /** Finish writing; the rows are then read through a RowSource. */
  async finish(): Promise<RowSource> {
    if (this.#memory) return rowSourceFromArray(this.#memory.subarray(0, this.#rows * this.dim), this.dim);
    await this.#file!.close();
    this.#file = null;
    return createFileRowSource(this.path, this.dim);
  }

  async close(): Promise<void> {
    await this.#file?.close();
    this.#file = null;
    this.#memory = null;
  }
}
