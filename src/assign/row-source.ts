import { statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { endianness } from 'node:os';
import { InputError, invariant } from '../shared/errors.js';

/** Rows per chunk when the caller does not say (16384 × 768 float32 = 48 MiB). */
export const DEFAULT_CHUNK_ROWS = 16384;

/**
 * Read access to an n × dim float32 matrix that may not fit in memory (a spilled file), so the
 * k-means fit streams over it instead of holding a second copy.
 */
export interface RowSource {
  readonly rows: number;
  readonly dim: number;
  /**
   * Visit the rows in order, `chunkRows` at a time (the last chunk may be shorter). The chunk is
   * only valid until `fn`'s promise settles: file sources reuse their buffers.
   */
  forEachChunk(fn: (chunk: Float32Array, firstRow: number) => Promise<void> | void, chunkRows?: number): Promise<void>;
  /** Copy of the given rows, in the order given (indices may repeat), as indices.length × dim. */
  readRows(indices: Int32Array): Promise<Float32Array>;
}

function checkDim(dim: number): void {
  if (!Number.isInteger(dim) || dim <= 0) {
    throw new InputError(`dim must be a positive integer, got ${dim}`, { context: { field: 'dim' } });
  }
}

function checkChunkRows(chunkRows: number): void {
  invariant(Number.isInteger(chunkRows) && chunkRows > 0, `chunkRows must be a positive integer, got ${chunkRows}`);
}

/** A RowSource over rows already in memory (tests, samples); chunks are views, not copies. */
export function rowSourceFromArray(data: Float32Array, dim: number): RowSource {
  checkDim(dim);
  if (data.length % dim !== 0) {
    throw new InputError(`array length ${data.length} is not a multiple of dim ${dim}`, { context: { field: 'dim' } });
  }
  const rows = data.length / dim;
  return {
    rows,
    dim,
    async forEachChunk(fn, chunkRows = DEFAULT_CHUNK_ROWS) {
      checkChunkRows(chunkRows);
      for (let first = 0; first < rows; first += chunkRows) {
        const end = Math.min(first + chunkRows, rows);
        await fn(data.subarray(first * dim, end * dim), first);
      }
    },
    async readRows(indices) {
      const out = new Float32Array(indices.length * dim);
      for (let i = 0; i < indices.length; i++) {
        const row = indices[i]!;
        if (!(row >= 0 && row < rows)) invariant(false, `row index ${row} out of range [0, ${rows})`); // message only on failure (hot loop)
        out.set(data.subarray(row * dim, (row + 1) * dim), i * dim);
      }
      return out;
    },
  };
}

const HOST_IS_LE = endianness() === 'LE';
/** Longest run of adjacent rows fetched with one read by `readRows` (bounds its scratch buffer). */
const MAX_RUN_ROWS = 4096;
/** Reads in flight at once in `readRows`: enough to keep libuv's 4 threads busy. */
const READ_CONCURRENCY = 8;

/** The file holds little-endian float32; swap in place on a big-endian host. */
function toHostOrder(bytes: Uint8Array): void {
  if (HOST_IS_LE) return;
  for (let i = 0; i + 3 < bytes.length; i += 4) {
    const a = bytes[i]!;
    const b = bytes[i + 1]!;
    bytes[i] = bytes[i + 3]!;
    bytes[i + 1] = bytes[i + 2]!;
    bytes[i + 2] = b;
    bytes[i + 3] = a;
  }
}

/** Fill `target` from `position`, looping because one read may return fewer bytes. */
async function readFully(fh: FileHandle, target: Uint8Array, position: number, path: string): Promise<void> {
  let done = 0;
  while (done < target.length) {
    const { bytesRead } = await fh.read(target, done, target.length - done, position + done);
    if (bytesRead === 0) {
      throw new InputError(`file ended at byte ${position + done}, expected ${position + target.length} (truncated while reading?)`, {
        context: { file: path },
      });
    }
    done += bytesRead;
  }
  toHostOrder(target);
}

/**
 * A RowSource over a raw file of n × dim little-endian float32 (no header), read with plain fs
 * reads. Chunks are double-buffered: the next chunk is read while the caller works on the
 * current one, so disk and compute overlap. Each call opens and closes its own handle, so the
 * source holds no resources between calls. Synchronous (one stat) so callers can build it inline.
 */
export function createFileRowSource(path: string, dim: number): RowSource {
  checkDim(dim);
  const rowBytes = dim * 4;
  let size: number;
  try {
    size = statSync(path).size;
  } catch (cause) {
    throw new InputError(`cannot read embeddings file: ${(cause as Error).message}`, { cause, context: { file: path } });
  }
  if (size % rowBytes !== 0) {
    throw new InputError(`file size ${size} bytes is not a multiple of dim × 4 = ${rowBytes} (raw float32 rows of dim ${dim} expected)`, {
      context: { file: path },
    });
  }
  const rows = size / rowBytes;

  return {
    rows,
    dim,
    async forEachChunk(fn, chunkRows = DEFAULT_CHUNK_ROWS) {
      checkChunkRows(chunkRows);
      if (rows === 0) return;
      const bufRows = Math.min(chunkRows, rows);
      const buffers = [new Float32Array(bufRows * dim), new Float32Array(bufRows * dim)];
      const fh = await open(path, 'r');
      const readChunk = async (first: number, slot: number): Promise<Float32Array> => {
        const n = Math.min(chunkRows, rows - first);
        const view = buffers[slot]!.subarray(0, n * dim);
        await readFully(fh, new Uint8Array(view.buffer, view.byteOffset, view.byteLength), first * rowBytes, path);
        return view;
      };
      let pending: Promise<Float32Array> | undefined = readChunk(0, 0);
      try {
        let slot = 0;
        for (let first = 0; first < rows; first += chunkRows) {
          const chunk: Float32Array = await pending!;
          pending = undefined;
          const next = first + chunkRows;
          slot ^= 1;
          if (next < rows) pending = readChunk(next, slot);
          await fn(chunk, first);
        }
      } finally {
        // A read still in flight (fn threw) must finish before its handle closes.
        if (pending) await pending.catch(() => undefined);
        await fh.close();
      }
    },
    async readRows(indices) {
      const m = indices.length;
      const out = new Float32Array(m * dim);
      if (m === 0) return out;
      for (let i = 0; i < m; i++) {
        const row = indices[i]!;
        if (!(row >= 0 && row < rows)) invariant(false, `row index ${row} out of range [0, ${rows})`); // message only on failure (hot loop)
      }
      // Visit rows in file order and merge adjacent (or repeated) rows into one read.
      const order = new Uint32Array(m);
      for (let i = 0; i < m; i++) order[i] = i;
      order.sort((a, b) => indices[a]! - indices[b]! || a - b);
      const runs: Array<{ from: number; to: number }> = [];
      let from = 0;
      for (let p = 1; p <= m; p++) {
        const adjacent =
          p < m &&
          indices[order[p]!]! - indices[order[p - 1]!]! <= 1 &&
          indices[order[p]!]! - indices[order[from]!]! < MAX_RUN_ROWS;
        if (!adjacent) {
          runs.push({ from, to: p });
          from = p;
        }
      }
      const fh = await open(path, 'r');
      try {
        let nextRun = 0;
        const worker = async (): Promise<void> => {
          while (nextRun < runs.length) {
            const { from: a, to: b } = runs[nextRun++]!;
            const firstRow = indices[order[a]!]!;
            const nRows = indices[order[b - 1]!]! - firstRow + 1;
            const tmp = new Float32Array(nRows * dim);
            await readFully(fh, new Uint8Array(tmp.buffer), firstRow * rowBytes, path);
            for (let p = a; p < b; p++) {
              const at = order[p]!;
              const r = indices[at]! - firstRow;
              out.set(tmp.subarray(r * dim, (r + 1) * dim), at * dim);
            }
          }
        };
        // allSettled: no read may still be running when the handle closes, even after a failure.
        const settled = await Promise.allSettled(Array.from({ length: Math.min(READ_CONCURRENCY, runs.length) }, worker));
        for (const s of settled) if (s.status === 'rejected') throw s.reason;
      } finally {
        await fh.close();
      }
      return out;
    },
  };
}
