/**
 * S3 (and S3-compatible stores) behind the storage interface, with `@aws-sdk/client-s3`.
 *
 * - Reads are lazy: `openBlob` costs one HeadObject, and each `slice(a, b).arrayBuffer()` is one
 *   ranged GetObject, so parquet-wasm fetches the footer and the column chunks it needs, never the
 *   whole object. Ranged reads carry the HEAD's ETag (`If-Match`): an object replaced mid-read
 *   fails instead of mixing two versions.
 * - Uploads go through `@aws-sdk/lib-storage` `Upload` (one PutObject when small, multipart when
 *   large), a few files at a time.
 * - SDK errors become one-line `InputError`s naming the path: missing bucket, access denied,
 *   missing object, unreachable endpoint, no credentials or region.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  S3Client,
  type ListObjectsV2CommandOutput,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { InputError, InvariantError, SemdedupError } from '../shared/errors.js';
import { compareStrings, globToRegExp, hasGlob, isHiddenName, splitGlob } from './glob.js';
import type { LazyBlob, Storage, StorageEntry, StorageObject, StorageOptions } from './types.js';
import { parseS3Path } from './s3-path.js';

export { parseS3Path, type S3Location } from './s3-path.js';

/** Smallest multipart part; larger files get larger parts (S3 allows at most 10,000 parts). */
const MIN_PART_SIZE = 8 * 1024 * 1024;
const MAX_PARTS = 9_000;
/** Parts of one file in flight (each held in memory while it uploads). */
const PART_QUEUE = 4;
/** Files uploaded at once: outputs are many small Parquet files, so latency dominates. */
const FILE_CONCURRENCY = 8;
/** DeleteObjects takes at most 1000 keys. */
const DELETE_BATCH = 1000;

function s3Url(bucket: string, key: string): string {
  return `s3://${bucket}/${key}`;
}

/** Prefix under which a "folder" key's objects live: '' for the root, else ending in `/`. */
function folderPrefix(key: string): string {
  return key === '' || key.endsWith('/') ? key : `${key}/`;
}

export interface S3Storage extends Storage {
  /** Close the client's connections (the CLI exits sooner). */
  close(): void;
}

export function createS3Storage(options: StorageOptions = {}): S3Storage {
  const client = createClient(options);
  const endpoint = options.endpoint ?? process.env.AWS_ENDPOINT_URL_S3 ?? process.env.AWS_ENDPOINT_URL ?? 'the AWS S3 endpoint';
  const fail = (cause: unknown, p: string): Error => s3Error(cause, p, endpoint);

  /** Every object under `prefix` (all pages), or the first `max`. */
  const listAll = async (bucket: string, prefix: string, max = Number.POSITIVE_INFINITY): Promise<{ key: string; size: number }[]> => {
    const out: { key: string; size: number }[] = [];
    let token: string | undefined;
    do {
      let page: ListObjectsV2CommandOutput;
      try {
        page = await client.send(
          new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token, ...(max < 1000 ? { MaxKeys: max } : {}) }),
        );
      } catch (cause) {
        throw fail(cause, s3Url(bucket, prefix));
      }
      for (const o of page.Contents ?? []) if (o.Key !== undefined) out.push({ key: o.Key, size: Number(o.Size ?? 0) });
      token = page.IsTruncated && out.length < max ? page.NextContinuationToken : undefined;
    } while (token);
    return out;
  };

  /** Objects under a folder prefix, skipping hidden path segments and "folder marker" keys. */
  const visibleUnder = (bucket: string, prefix: string, objects: { key: string; size: number }[]): StorageObject[] =>
    objects
      .filter((o) => !o.key.endsWith('/') && !o.key.slice(prefix.length).split('/').some(isHiddenName))
      .map((o) => ({ path: s3Url(bucket, o.key), size: o.size }))
      .sort((a, b) => compareStrings(a.path, b.path));

  const getObject = async (p: string, range?: { start: number; end: number; etag?: string }) => {
    const { bucket, key } = parseS3Path(p);
    try {
      const res = await client.send(
        new GetObjectCommand({
          Bucket: bucket,
          Key: key,
          ...(range ? { Range: `bytes=${range.start}-${range.end - 1}`, ...(range.etag ? { IfMatch: range.etag } : {}) } : {}),
        }),
      );
      if (!res.Body) throw new InvariantError(`GetObject ${p} returned no body`);
      return res.Body;
    } catch (cause) {
      throw fail(cause, p);
    }
  };

  const uploadFile = async (localFile: string, p: string): Promise<void> => {
    const { bucket, key } = parseS3Path(p);
    const { size } = await stat(localFile);
    const upload = new Upload({
      client,
      params: { Bucket: bucket, Key: key, Body: createReadStream(localFile) },
      partSize: Math.max(MIN_PART_SIZE, Math.ceil(size / MAX_PARTS)),
      queueSize: PART_QUEUE,
    });
    try {
      await upload.done();
    } catch (cause) {
      throw fail(cause, p);
    }
  };

  return {
    async stat(p: string): Promise<StorageEntry | null> {
      const { bucket, key } = parseS3Path(p);
      if (key !== '' && !key.endsWith('/')) {
        // The exact key, when it exists, is the first one listed under itself as a prefix.
        const [first] = await listAll(bucket, key, 1);
        if (first?.key === key) return { kind: 'file', size: first.size };
        if (!first) return null;
      }
      const [inside] = await listAll(bucket, folderPrefix(key), 1);
      return inside ? { kind: 'folder' } : null;
    },

    async list(folderOrGlob: string): Promise<StorageObject[]> {
      const { bucket, key } = parseS3Path(folderOrGlob);
      if (!hasGlob(key)) {
        const prefix = folderPrefix(key);
        return visibleUnder(bucket, prefix, await listAll(bucket, prefix));
      }
      const { baseSegments, rest } = splitGlob(key);
      const prefix = baseSegments.length === 0 ? '' : `${baseSegments.join('/')}/`;
      const re = globToRegExp(rest);
      return visibleUnder(bucket, prefix, await listAll(bucket, prefix)).filter((o) => re.test(parseS3Path(o.path).key.slice(prefix.length)));
    },

    async listNames(folder: string): Promise<string[]> {
      // From a full listing, not a Delimiter listing: some S3-compatible servers (s3rver) leave
      // out the common prefix of a "folder" whose objects all lie deeper (kmeans_results/centroid=K/).
      // Only output prefixes are listed this way, and semdedup's own layout is small.
      const { bucket, key } = parseS3Path(folder);
      const prefix = folderPrefix(key);
      const names = new Set((await listAll(bucket, prefix)).map((o) => o.key.slice(prefix.length).split('/')[0]!).filter((n) => n !== ''));
      return [...names].sort(compareStrings);
    },

    async openBlob(p: string): Promise<LazyBlob> {
      const { bucket, key } = parseS3Path(p);
      let size: number;
      let etag: string | undefined;
      try {
        const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
        size = Number(head.ContentLength ?? 0);
        etag = head.ETag;
      } catch (cause) {
        throw fail(cause, p);
      }
      const read = async (start: number, end: number): Promise<ArrayBuffer> => {
        const bytes = await (await getObject(p, { start, end, etag })).transformToByteArray();
        if (bytes.byteLength !== end - start) {
          throw new SemdedupError(`short read from ${p}: asked for bytes ${start}-${end - 1}, got ${bytes.byteLength} bytes`, { context: { file: p }, retriable: true });
        }
        return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength
          ? (bytes.buffer as ArrayBuffer)
          : (bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer);
      };
      return new RangedObjectBlob(read, 0, size);
    },

    async openReadStream(p: string): Promise<Readable> {
      // In Node the body is an http.IncomingMessage: a Readable with backpressure.
      return (await getObject(p)) as unknown as Readable;
    },

    async readFile(p: string): Promise<Uint8Array> {
      const body = await getObject(p);
      try {
        return await body.transformToByteArray();
      } catch (cause) {
        throw fail(cause, p);
      }
    },

    async upload(localPath: string, p: string): Promise<void> {
      if (!(await stat(localPath)).isDirectory()) return uploadFile(localPath, p);
      const files = (await readdir(localPath, { recursive: true, withFileTypes: true })).filter((e) => e.isFile());
      const base = p.replace(/\/+$/, '');
      await forEachLimited(files, FILE_CONCURRENCY, async (e) => {
        const local = path.join(e.parentPath, e.name);
        const rel = path.relative(localPath, local).split(path.sep).join('/');
        await uploadFile(local, `${base}/${rel}`);
      });
    },

    async download(p: string, localPath: string): Promise<void> {
      const body = (await getObject(p)) as unknown as Readable;
      try {
        await pipeline(body, createWriteStream(localPath));
      } catch (cause) {
        throw fail(cause, p);
      }
    },

    async remove(p: string): Promise<void> {
      const { bucket, key } = parseS3Path(p);
      if (key === '' || key === '/') throw new InvariantError(`refusing to delete the whole bucket ${p}`);
      const exact = key.replace(/\/+$/, '');
      const keys = (await listAll(bucket, exact)).map((o) => o.key).filter((k) => k === exact || k.startsWith(`${exact}/`));
      for (let i = 0; i < keys.length; i += DELETE_BATCH) {
        const batch = keys.slice(i, i + DELETE_BATCH);
        let errors;
        try {
          ({ Errors: errors } = await client.send(
            new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true } }),
          ));
        } catch (cause) {
          throw fail(cause, p);
        }
        const first = errors?.[0];
        if (first) throw fail(Object.assign(new Error(first.Message ?? 'delete failed'), { name: first.Code ?? 'DeleteFailed' }), s3Url(bucket, first.Key ?? exact));
      }
    },

    close(): void {
      client.destroy();
    },
  };
}

function createClient(options: StorageOptions): S3Client {
  // The SDK warns on Node 20 that its releases from 2027 will need Node 22: not the user's
  // concern here, and it would break the CLI's one-line error output.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const customEndpoint = Boolean(options.endpoint ?? process.env.AWS_ENDPOINT_URL_S3 ?? process.env.AWS_ENDPOINT_URL);
  return new S3Client({
    ...(options.endpoint !== undefined ? { endpoint: options.endpoint } : {}),
    ...(options.region !== undefined ? { region: options.region } : {}),
    ...(options.forcePathStyle !== undefined ? { forcePathStyle: options.forcePathStyle } : {}),
    ...(options.accessKeyId !== undefined && options.secretAccessKey !== undefined
      ? { credentials: { accessKeyId: options.accessKeyId, secretAccessKey: options.secretAccessKey, ...(options.sessionToken ? { sessionToken: options.sessionToken } : {}) } }
      : {}),
    // Many S3-compatible servers reject the CRC checksums the SDK now adds to every request;
    // send them only where the API requires one.
    ...(customEndpoint ? { requestChecksumCalculation: 'WHEN_REQUIRED' as const, responseChecksumValidation: 'WHEN_REQUIRED' as const } : {}),
    // Fail fast on a wrong endpoint instead of hanging on the TCP connect.
    requestHandler: { connectionTimeout: 10_000 },
  });
}

/**
 * A byte range of an object, duck-typed as a `Blob` for parquet-wasm. Why not a Blob subclass:
 * a real Blob holds its bytes, and code that took this for one would silently read nothing.
 */
class RangedObjectBlob implements LazyBlob {
  readonly type = '';
  readonly #read: (start: number, end: number) => Promise<ArrayBuffer>;
  readonly #start: number;
  readonly #end: number;

  constructor(read: (start: number, end: number) => Promise<ArrayBuffer>, start: number, end: number) {
    this.#read = read;
    this.#start = start;
    this.#end = end;
  }

  get size(): number {
    return this.#end - this.#start;
  }

  /** Blob semantics: offsets relative to this range, negative from its end, clamped. */
  slice(start = 0, end = this.size): RangedObjectBlob {
    const clamp = (v: number): number => Math.min(Math.max(v < 0 ? this.size + v : v, 0), this.size);
    const s = clamp(start);
    const e = Math.max(s, clamp(end));
    return new RangedObjectBlob(this.#read, this.#start + s, this.#start + e);
  }

  async arrayBuffer(): Promise<ArrayBuffer> {
    return this.size === 0 ? new ArrayBuffer(0) : this.#read(this.#start, this.#end);
  }
}

async function forEachLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

const DENIED = new Set(['AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'InvalidToken', 'ExpiredToken', 'TokenRefreshRequired', 'AllAccessDisabled', 'Forbidden']);
const UNREACHABLE = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'TimeoutError']);

/** One line naming the path and what is wrong; `InputError` for the user's setup or data. */
function s3Error(cause: unknown, p: string, endpoint: string): Error {
  if (cause instanceof SemdedupError) return cause;
  const e = (cause ?? {}) as { name?: string; Code?: string; code?: string; message?: string; errors?: { code?: string }[]; $metadata?: { httpStatusCode?: number } };
  const code = e.Code ?? e.code ?? e.errors?.[0]?.code ?? e.name ?? 'Error';
  const status = e.$metadata?.httpStatusCode;
  const { bucket } = parseS3Path(p);
  const context = { file: p };
  if (code === 'NoSuchBucket') return new InputError(`S3 bucket "${bucket}" does not exist (${p})`, { cause, context });
  if (DENIED.has(code) || status === 403) {
    return new InputError(`access to ${p} denied (${code}): check the S3 credentials (AWS env/config chain or --storage-options)`, { cause, context });
  }
  if (code === 'NoSuchKey' || code === 'NotFound' || status === 404) return new InputError(`no such S3 object ${p}`, { cause, context });
  if (code === 'PreconditionFailed' || status === 412) return new InputError(`S3 object ${p} changed while it was being read; run again`, { cause, context });
  if (UNREACHABLE.has(code) || e.name === 'TimeoutError') {
    return new InputError(`cannot reach the S3 endpoint ${endpoint} for ${p} (${code})`, { cause, context });
  }
  if (e.name === 'CredentialsProviderError') {
    return new InputError(`no S3 credentials for ${p}: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or --storage-options accessKeyId/secretAccessKey`, { cause, context });
  }
  if (/region is missing/i.test(e.message ?? '')) {
    return new InputError(`no S3 region for ${p}: set AWS_REGION or --storage-options '{"region": ...}'`, { cause, context });
  }
  const text = (e.message ?? '').split('\n')[0];
  return new SemdedupError(`S3 request for ${p} failed (${code}${status ? `, HTTP ${status}` : ''}${text ? `: ${text}` : ''})`, {
    cause,
    context,
    retriable: status !== undefined && status >= 500,
  });
}
