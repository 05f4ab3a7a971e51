/**
 * Storage: where input files are read from and finished outputs are put. Picks the backend by
 * path: `s3://bucket/key` goes to S3 (or an S3-compatible store), anything without a URL
 * scheme is a local path. Callers dispatch with `isRemotePath` only where the two really differ
 * (local outputs are renamed into place; remote ones are built locally and uploaded).
 */
import path from 'node:path';
import { InputError } from '../shared/errors.js';
import { createLocalStorage } from './local.js';
import type { S3Storage } from './s3.js';
import type { Storage, StorageOptions } from './types.js';

export type { LazyBlob, Storage, StorageEntry, StorageObject, StorageOptions } from './types.js';
export { parseS3Path } from './s3-path.js';

const URL_RE = /^[a-z][a-z0-9+.-]*:\/\//i;

/** True for `scheme://...` paths (S3 today); false for local paths. */
export function isRemotePath(p: string): boolean {
  return URL_RE.test(p);
}

const local = createLocalStorage();
/** One client per distinct options, reused across calls (connections are kept alive). */
const s3Clients = new Map<string, S3Storage>();

/** The storage holding `p`. InputError for a URL scheme other than `s3://`. */
export function storageFor(p: string, options: StorageOptions = {}): Storage {
  if (!isRemotePath(p)) return local;
  if (!/^s3:\/\//i.test(p)) {
    throw new InputError(`${p}: only local paths and s3:// URLs are supported`, { context: { file: p } });
  }
  const key = JSON.stringify(options, Object.keys(options).sort());
  let s3 = s3Clients.get(key);
  if (!s3) {
    s3 = lazyS3Storage(options);
    s3Clients.set(key, s3);
  }
  return s3;
}

/**
 * S3 storage that loads the AWS SDK (~0.3 s of modules) on its first call, so local runs never
 * load it. The client is created then, once; `close` closes it if it was created.
 */
function lazyS3Storage(options: StorageOptions): S3Storage {
  let real: S3Storage | undefined;
  let loading: Promise<S3Storage> | undefined;
  const load = (): Promise<S3Storage> => (loading ??= import('./s3.js').then((m) => (real = m.createS3Storage(options))));
  return {
    stat: async (p) => (await load()).stat(p),
    list: async (p) => (await load()).list(p),
    listNames: async (p) => (await load()).listNames(p),
    openBlob: async (p) => (await load()).openBlob(p),
    openReadStream: async (p) => (await load()).openReadStream(p),
    readFile: async (p) => (await load()).readFile(p),
    upload: async (from, to) => (await load()).upload(from, to),
    download: async (from, to) => (await load()).download(from, to),
    remove: async (p) => (await load()).remove(p),
    close: () => real?.close(),
  };
}

/** Close cached S3 clients (their keep-alive sockets); later calls open new ones. */
export function closeStorage(): void {
  for (const s3 of s3Clients.values()) s3.close();
  s3Clients.clear();
}

/** `base/name` for a local folder or a URL prefix (path.join would turn `s3://` into `s3:/`). */
export function joinPath(base: string, ...names: string[]): string {
  return isRemotePath(base) ? [base.replace(/\/+$/, ''), ...names].join('/') : path.join(base, ...names);
}

/** Whether `child` is `parent` or inside it: local paths resolved, URLs compared as prefixes. */
export function isInside(child: string, parent: string): boolean {
  if (isRemotePath(child) !== isRemotePath(parent)) return false;
  if (isRemotePath(parent)) {
    const p = parent.replace(/\/+$/, '');
    return child === p || child.startsWith(`${p}/`);
  }
  const c = path.resolve(child);
  const p = path.resolve(parent);
  return c === p || c.startsWith(p + path.sep);
}

/** Options with the keys replaced, for summaries and logs: credentials are never written out. */
export function redactStorageOptions<T extends StorageOptions | undefined>(options: T): T {
  if (!options) return options;
  const out: Record<string, unknown> = { ...options };
  for (const k of ['accessKeyId', 'secretAccessKey', 'sessionToken'] as const) if (out[k] !== undefined) out[k] = '[redacted]';
  return out as T;
}
