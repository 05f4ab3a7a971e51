import { closeSync, constants, fdatasync, fstatSync, ftruncateSync, openSync, readSync, writev } from 'node:fs';
import { InputError, invariant } from '../shared/errors.js';

const writevAt = (fd: number, views: Uint8Array[], position: number) =>
  new Promise<number>((resolve, reject) => writev(fd, views, position, (err, written) => (err ? reject(err) : resolve(written))));
const fdatasyncAsync = (fd: number) => new Promise<void>((resolve, reject) => fdatasync(fd, (err) => (err ? reject(err) : resolve())));

/** Reads up to this size go to a reused buffer (see `read`). */
const SCRATCH_MAX_BYTES = 64 << 20;

/** writev takes at most this many buffers per call here (IOV_MAX on Linux is 1024). */
const WRITEV_MAX_BUFFERS = 1024;

/**
 * The embeddings of a state, outside DuckDB: an append-only file of little-endian float32 rows
 * (one per member entry, in the order they were appended). DuckDB keeps each member's row number
 * and, inside the checkpoint's transaction, the number of rows committed; bytes past it belong to
 * a checkpoint that never committed and are cut off when the file is opened, so a crash never
 * exposes them. Appends are written by the thread pool while the caller goes on (`append`), and
 * made durable (`sync`) before the transaction that counts them commits.
 *
 * Why not a BLOB column: each embedding then went through the appender's vectors, DuckDB's WAL
 * and, at the next DuckDB checkpoint, the database file — three copies of ~3 KB per clip where
 * one sequential write does.
 */
export class EmbeddingLog {
  readonly path: string;
  readonly #fd: number;
  /** Bytes per row (dim × 4); null until the first row. */
  #rowBytes: number | null;
  /** Rows counted by the last commit, and rows written or being written. */
  #committedRows: number;
  #rows: number;
  #pending: Promise<unknown>[] = [];
  #failed: unknown = null;
  /** Reused by `read` for reads up to SCRATCH_MAX_BYTES (a cluster's rows, read again and again under a memory budget). */
  #scratch = new Float32Array(0);

  private constructor(path: string, fd: number, rowBytes: number | null, committedRows: number) {
    this.path = path;
    this.#fd = fd;
    this.#rowBytes = rowBytes;
    this.#committedRows = committedRows;
    this.#rows = committedRows;
  }

  /**
   * Open (or create) the file and cut it to the `committedRows` rows of `rowBytes` the database
   * counts. A file shorter than that lost committed rows: refused.
   */
  static open(path: string, rowBytes: number | null, committedRows: number): EmbeddingLog {
    // Not O_APPEND: writes go to explicit positions (after a rollback, over cut-off rows).
    const fd = openSync(path, constants.O_RDWR | constants.O_CREAT, 0o644);
    try {
      const committedBytes = committedRows * (rowBytes ?? 0);
      const size = fstatSync(fd).size;
      if (size < committedBytes) {
        throw new InputError(`${path} holds ${size} bytes, the state counts ${committedRows} rows of ${rowBytes} bytes: the state folder is damaged (restore it, or use a new --state folder)`, { context: { file: path } });
      }
      // Rows of a checkpoint that did not commit.
      if (size > committedBytes) ftruncateSync(fd, committedBytes);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
    return new EmbeddingLog(path, fd, rowBytes, committedRows);
  }

  get rowBytes(): number | null {
    return this.#rowBytes;
  }

  /** Rows written or being written (the next row number). */
  get rows(): number {
    return this.#rows;
  }

  get committedRows(): number {
    return this.#committedRows;
  }

  /**
   * Append rows (each `rowBytes` long) after the rows so far; returns the first one's row number.
   * The write runs in the background: the rows must not change until `sync` resolves.
   */
  append(rows: readonly Float32Array[]): number {
    const first = this.#rows;
    if (rows.length === 0) return first;
    const rowBytes = (this.#rowBytes ??= rows[0]!.byteLength);
    const views = rows.map((r) => {
      invariant(r.byteLength === rowBytes, `embedding of ${r.byteLength} bytes, the state's are ${rowBytes}`);
      return new Uint8Array(r.buffer, r.byteOffset, r.byteLength);
    });
    const position = first * rowBytes;
    for (let i = 0; i < views.length; i += WRITEV_MAX_BUFFERS) {
      const part = views.slice(i, i + WRITEV_MAX_BUFFERS);
      const at = position + i * rowBytes;
      this.#pending.push(
        writeFully(this.#fd, part, at).catch((err: unknown) => {
          this.#failed ??= err;
        }),
      );
    }
    this.#rows += rows.length;
    return first;
  }

  /**
   * Every append so far handed to the kernel (its rows may change from then on), not yet synced.
   * A failed write is reported by `sync`.
   */
  async written(): Promise<void> {
    await Promise.all(this.#pending);
  }

  /** Every append so far written and on disk; throws when a write failed. */
  async sync(): Promise<void> {
    const pending = this.#pending;
    this.#pending = [];
    await Promise.all(pending);
    if (this.#failed) throw this.#failed;
    if (this.#rows > this.#committedRows) await fdatasyncAsync(this.#fd);
  }

  /** The rows so far are counted by a committed transaction. */
  committed(): void {
    this.#committedRows = this.#rows;
  }

  /** Drop rows appended since the last commit (the transaction counting them rolled back). */
  async rollback(): Promise<void> {
    await Promise.allSettled(this.#pending);
    this.#pending = [];
    this.#failed = null;
    this.#rows = this.#committedRows;
    ftruncateSync(this.#fd, this.#committedRows * (this.#rowBytes ?? 0));
  }

  /**
   * Rows by row number, each a view of `rowBytes` (in the order asked). Adjacent row numbers are
   * read together. Appends still in flight are waited for first. The views of a read up to
   * SCRATCH_MAX_BYTES are only valid until the next `read` (copy them first): a state loaded
   * under a memory budget is read again at most checkpoints, and a fresh buffer each time cost
   * more in page faults than the read itself.
   */
  async read(rowNumbers: ArrayLike<number>): Promise<Float32Array[]> {
    await Promise.all(this.#pending);
    const n = rowNumbers.length;
    const out: Float32Array[] = new Array(n);
    if (n === 0) return out;
    const rowBytes = this.#rowBytes;
    invariant(rowBytes !== null, 'embedding rows asked of an empty embedding file');
    const floats = rowBytes / 4;
    const order = Int32Array.from({ length: n }, (_, i) => i).sort((a, b) => rowNumbers[a]! - rowNumbers[b]!);
    let all: Float32Array;
    if (n * rowBytes <= SCRATCH_MAX_BYTES) {
      if (this.#scratch.length < n * floats) this.#scratch = new Float32Array(Math.max(n * floats, Math.min(SCRATCH_MAX_BYTES / 4, this.#scratch.length * 2)));
      all = this.#scratch;
    } else {
      all = new Float32Array(n * floats);
    }
    const bytes = new Uint8Array(all.buffer, 0, n * rowBytes);
    // Sorted by row number: runs of consecutive rows are one read each.
    for (let i = 0; i < n; ) {
      let j = i + 1;
      while (j < n && rowNumbers[order[j]!] === rowNumbers[order[j - 1]!]! + 1) j++;
      const row = rowNumbers[order[i]!]!;
      invariant(row >= 0 && row + (j - i) <= this.#rows, `embedding row ${row} is past the file's ${this.#rows} rows`);
      readFully(this.#fd, bytes, i * rowBytes, (j - i) * rowBytes, row * rowBytes);
      for (let k = i; k < j; k++) out[order[k]!] = all.subarray(k * floats, (k + 1) * floats);
      i = j;
    }
    return out;
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.#pending);
    this.#pending = [];
    closeSync(this.#fd);
  }

  /** Close without waiting (appends in flight are abandoned; their rows are uncommitted anyway). */
  closeSync(): void {
    closeSync(this.#fd);
  }
}

async function writeFully(fd: number, views: Uint8Array[], position: number): Promise<void> {
  let at = position;
  let left = views;
  while (left.length > 0) {
    const written = await writevAt(fd, left, at);
    at += written;
    // A short write: skip what went out and go on.
    let skip = written;
    const rest: Uint8Array[] = [];
    for (const v of left) {
      if (skip >= v.byteLength) {
        skip -= v.byteLength;
        continue;
      }
      rest.push(skip > 0 ? v.subarray(skip) : v);
      skip = 0;
    }
    left = rest;
  }
}

function readFully(fd: number, into: Uint8Array, offset: number, length: number, position: number): void {
  let done = 0;
  while (done < length) {
    const n = readSync(fd, into, offset + done, length - done, position + done);
    invariant(n > 0, `embedding file ended at byte ${position + done}`);
    done += n;
  }
}
