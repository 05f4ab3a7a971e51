/**
 * Local files behind the storage interface. Blobs come from `fs.openAsBlob`, which reads only the
 * byte ranges that are sliced and read.
 */
import { createReadStream, createWriteStream, openAsBlob } from 'node:fs';
import { cp, mkdir, readdir, readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { InputError } from '../shared/errors.js';
import { compareStrings, globToRegExp, hasGlob, isHiddenName, splitGlob } from './glob.js';
import type { LazyBlob, Storage, StorageEntry, StorageObject } from './types.js';

export function createLocalStorage(): Storage {
  return {
    async stat(p: string): Promise<StorageEntry | null> {
      const st = await stat(p).catch(() => null);
      if (!st) return null;
      if (st.isFile()) return { kind: 'file', size: st.size };
      if (st.isDirectory()) return { kind: 'folder' };
      return null;
    },

    async list(folderOrGlob: string): Promise<StorageObject[]> {
      const files = hasGlob(folderOrGlob) ? await expandGlob(folderOrGlob) : await walk(folderOrGlob, Number.POSITIVE_INFINITY);
      return Promise.all(files.map(async (f) => ({ path: f, size: (await stat(f)).size })));
    },

    async listNames(folder: string): Promise<string[]> {
      return readdir(folder).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return [];
        throw err;
      });
    },

    async openBlob(p: string): Promise<LazyBlob> {
      return openAsBlob(p);
    },

    async openReadStream(p: string): Promise<Readable> {
      const stream = createReadStream(p, { highWaterMark: 1 << 20 });
      // Surface a missing file here, not at the first read.
      await new Promise<void>((resolve, reject) => stream.once('open', () => resolve()).once('error', reject));
      return stream;
    },

    async readFile(p: string): Promise<Uint8Array> {
      return readFile(p);
    },

    async upload(localPath: string, p: string): Promise<void> {
      if (path.resolve(localPath) === path.resolve(p)) return;
      await mkdir(path.dirname(path.resolve(p)), { recursive: true });
      await cp(localPath, p, { recursive: true, force: true });
    },

    async download(p: string, localPath: string): Promise<void> {
      await pipeline(createReadStream(p), createWriteStream(localPath));
    },

    async remove(p: string): Promise<void> {
      await rm(p, { recursive: true, force: true });
    },
  };
}

/** Files under `dir` (recursive up to `depth` levels), skipping `.`/`_` entries; sorted. */
async function walk(dir: string, depth: number): Promise<string[]> {
  const out: string[] = [];
  const visit = async (d: string, level: number): Promise<void> => {
    let entries;
    try {
      entries = await readdir(d, { withFileTypes: true });
    } catch (cause) {
      throw new InputError(`cannot list folder ${d}: ${(cause as Error).message}`, { cause, context: { file: d } });
    }
    entries.sort((a, b) => compareStrings(a.name, b.name));
    for (const e of entries) {
      if (isHiddenName(e.name)) continue;
      const full = path.join(d, e.name);
      let isDir = e.isDirectory();
      let isFile = e.isFile();
      if (e.isSymbolicLink()) {
        const st = await stat(full).catch(() => undefined);
        isDir = st?.isDirectory() ?? false;
        isFile = st?.isFile() ?? false;
      }
      if (isFile) out.push(full);
      else if (isDir && level < depth) await visit(full, level + 1);
    }
  };
  await visit(dir, 1);
  return out;
}

async function expandGlob(pattern: string): Promise<string[]> {
  const { baseSegments, rest, depth } = splitGlob(pattern.split(path.sep).join('/'));
  const base = baseSegments.length === 0 ? '.' : baseSegments.join('/') === '' ? '/' : baseSegments.join('/');
  const re = globToRegExp(rest);
  const st = await stat(base).catch(() => undefined);
  if (!st?.isDirectory()) return [];
  const files = await walk(base, depth);
  return files.filter((f) => re.test(path.relative(base, f).split(path.sep).join('/'))).sort(compareStrings);
}
