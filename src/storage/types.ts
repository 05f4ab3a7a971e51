/**
 * The storage interface: what the file sources, the output publisher and export need from a
 * place that holds files. Paths are strings: local paths, or `s3://bucket/key` URLs.
 * Implementations (same file set per backend): `local.ts`, `s3.ts`; `index.ts` picks by path.
 */
import type { Readable } from 'node:stream';

/** Endpoint, region, path style and keys for `s3://` paths; unset fields come from the AWS env/config chain. */
export interface StorageOptions {
  readonly endpoint?: string;
  readonly region?: string;
  readonly forcePathStyle?: boolean;
  readonly accessKeyId?: string;
  readonly secretAccessKey?: string;
  readonly sessionToken?: string;
}

/** One stored file (object): its full path (as given, or a URL) and size in bytes. */
export interface StorageObject {
  readonly path: string;
  readonly size: number;
}

/** What a path names: a file (object) with its size, or a folder (a prefix with something under it). */
export type StorageEntry = { readonly kind: 'file'; readonly size: number } | { readonly kind: 'folder' };

/**
 * The part of the `Blob` interface that parquet-wasm's `ParquetFile.fromFile` uses: `size`, and
 * `slice(a, b).arrayBuffer()` for each byte range it needs (footer, then column chunks).
 */
export interface LazyBlob {
  readonly size: number;
  readonly type: string;
  slice(start?: number, end?: number): LazyBlob;
  arrayBuffer(): Promise<ArrayBuffer>;
}

export interface Storage {
  /** What `path` is, or null when nothing is there. */
  stat(path: string): Promise<StorageEntry | null>;
  /**
   * Files under a folder (recursively) or matching a glob (`*`, `?`, `**`, `[...]`), sorted by
   * path. Entries whose name starts with `.` or `_` (`_SUCCESS`, `.crc`, `_temporary/`) are
   * skipped, as Spark and pyarrow datasets do. Empty when nothing matches.
   */
  list(folderOrGlob: string): Promise<StorageObject[]>;
  /** Names directly inside a folder (files and sub-folders, hidden ones included); empty when none. */
  listNames(folder: string): Promise<string[]>;
  /** A file opened without reading it: each `slice(a, b).arrayBuffer()` reads only that range. */
  openBlob(path: string): Promise<LazyBlob>;
  /** The file's bytes as a stream, read as fast as they are consumed. */
  openReadStream(path: string): Promise<Readable>;
  /** A whole (small) file, e.g. a `.npy`. */
  readFile(path: string): Promise<Uint8Array>;
  /** Copy a finished local file or folder (recursively) to `path`. */
  upload(localPath: string, path: string): Promise<void>;
  /** Copy a file to a local path (streamed, bounded memory). */
  download(path: string, localPath: string): Promise<void>;
  /** Delete a file, or a folder and everything under it; nothing there is fine. */
  remove(path: string): Promise<void>;
}
