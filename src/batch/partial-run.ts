/**
 * The partial run: where `run` (and `replay`) build their outputs before publishing them, and what
 * `run --resume` continues from after a crash or a kill.
 *
 * Local output `<parent>/<name>`: the partial run is `<parent>/.<name>.semdedup-partial/`, beside
 * the output, so that publishing is one rename of its `output/` folder onto the (empty) output
 * folder — a reader sees nothing or everything. It is inside the output folder
 * (`<name>/.semdedup-partial/`) when the output folder is a mount point, a symbolic link or the
 * working directory; publishing then moves entries one by one, summary.json last. An `s3://`
 * output is built in `<tmp>/semdedup-partial-<hash of the URL>/` and uploaded.
 *
 * ```
 * .<name>.semdedup-partial/
 *   lock            pid/host of the run writing it (a second run refuses; a dead one's is taken over)
 *   progress.json   identity of the run (inputs, centroids, settings) and the stages finished
 *   output/         the output as it is being built (NeMo layout)
 *   work/           scratch (rows parts, spilled embeddings), never resumed from
 * ```
 */
import { randomUUID, createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, lstat, unlink, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import type { Logger } from '../runtime/logging.js';
import type { RunConfig } from '../shared/config.js';
import { InputError } from '../shared/errors.js';
import { syncDir } from '../sinks/parquet/index.js';
import { isInside, isRemotePath, storageFor, type StorageOptions } from '../storage/index.js';

/** Name of the partial-run folder when it has to live inside the output folder. */
export const PARTIAL_IN_OUTPUT = '.semdedup-partial';

/** A file a run depends on, as it was when the run started. */
export interface FileStamp {
  readonly path: string;
  readonly size: number;
  /** null for remote objects (only the size is compared). */
  readonly mtimeMs: number | null;
}

/** What a resumed run must share with the partial one: the same inputs, centroids and settings. */
export interface RunIdentity {
  readonly inputs: readonly FileStamp[];
  readonly centroids: FileStamp | null;
  readonly settings: Readonly<Record<string, unknown>>;
}

/** Settings that shape the results. Not here: batch rows, reader, memory budget (same results either way). */
const IDENTITY_SETTINGS = [
  'nClusters',
  'eps',
  'whichToKeep',
  'ranking',
  'metadataFields',
  'distanceMetric',
  'idField',
  'embeddingField',
  'init',
  'maxIter',
  'tol',
  'seed',
  'nInit',
  'fitFraction',
  'pairwiseBatchSize',
  'backend',
  'probe',
  'probeMargin',
] as const satisfies readonly (keyof RunConfig)[];

/** Stages of a run recorded in progress.json, in order. Pairwise progress is the files themselves. */
export interface RunProgress {
  readonly version: 1;
  readonly identity: RunIdentity;
  /** Set once kmeans_centroids.npy is in `output/` (fsynced): k-means need not run again. */
  readonly kmeans?: { readonly stats: { iterations: number; inertia: number; converged: boolean } | null };
  /** Set once the `clips` table is checkpointed into `output/semdedup.duckdb`. */
  readonly assign?: { readonly rows: number };
}

async function stampFile(p: string, storage?: StorageOptions): Promise<FileStamp> {
  if (isRemotePath(p)) {
    const entry = await storageFor(p, storage).stat(p);
    return { path: p, size: entry?.kind === 'file' ? entry.size : -1, mtimeMs: null };
  }
  const abs = resolve(p);
  const st = await stat(abs).catch(() => null);
  if (st?.isDirectory()) return stampFile(join(abs, 'kmeans_centroids.npy'));
  return { path: abs, size: st?.size ?? -1, mtimeMs: st ? Math.round(st.mtimeMs) : null };
}

/** The identity of a run over `files` (the resolved inputs) with `config`. */
export async function runIdentity(config: RunConfig, files: readonly string[]): Promise<RunIdentity> {
  const settings: Record<string, unknown> = {};
  for (const key of IDENTITY_SETTINGS) settings[key] = config[key] ?? null;
  return {
    inputs: await Promise.all(files.map((f) => stampFile(f, config.storageOptions))),
    centroids: config.centroids ? await stampFile(config.centroids, config.storageOptions) : null,
    settings,
  };
}

const flagName = (key: string) => `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
const shown = (v: unknown) => (v === null || v === undefined ? 'unset' : typeof v === 'string' ? v : JSON.stringify(v));

/** What differs between the partial run's identity and this run's, one short phrase each. */
export function identityChanges(was: RunIdentity, now: RunIdentity): string[] {
  const out: string[] = [];
  for (const key of new Set([...Object.keys(was.settings), ...Object.keys(now.settings)])) {
    const a = was.settings[key] ?? null;
    const b = now.settings[key] ?? null;
    if (JSON.stringify(a) !== JSON.stringify(b)) out.push(`${flagName(key)} ${shown(a)} → ${shown(b)}`);
  }
  const before = new Map(was.inputs.map((s) => [s.path, s]));
  const after = new Map(now.inputs.map((s) => [s.path, s]));
  const added = [...after.keys()].filter((p) => !before.has(p));
  const removed = [...before.keys()].filter((p) => !after.has(p));
  const changed = [...after.values()].filter((s) => {
    const old = before.get(s.path);
    return old !== undefined && (old.size !== s.size || old.mtimeMs !== s.mtimeMs);
  });
  const few = (list: string[]) => list.slice(0, 2).map((p) => basename(p)).join(', ') + (list.length > 2 ? `, … (${list.length})` : '');
  if (added.length) out.push(`input added: ${few(added)}`);
  if (removed.length) out.push(`input gone: ${few(removed)}`);
  if (changed.length) out.push(`input modified (size or mtime): ${few(changed.map((s) => s.path))}`);
  if (JSON.stringify(was.centroids) !== JSON.stringify(now.centroids)) {
    out.push(was.centroids && now.centroids && was.centroids.path === now.centroids.path ? `--centroids file modified` : `--centroids ${shown(was.centroids?.path)} → ${shown(now.centroids?.path)}`);
  }
  return out;
}

/**
 * Where the partial run of `outputDir` lives (see the file comment). Deterministic, so a later
 * run finds it.
 */
export async function partialRootFor(outputDir: string): Promise<{ root: string; besideOutput: boolean }> {
  if (isRemotePath(outputDir)) {
    const hash = createHash('sha256').update(outputDir.replace(/\/+$/, '')).digest('hex').slice(0, 16);
    return { root: join(tmpdir(), `semdedup-partial-${hash}`), besideOutput: false };
  }
  const out = resolve(outputDir);
  const parent = dirname(out);
  const inside = { root: join(out, PARTIAL_IN_OUTPUT), besideOutput: false };
  // A rename onto the output folder needs a real folder on the parent's file system, not the
  // working directory (its processes would keep the replaced one) and not the root.
  if (parent === out || isInside(process.cwd(), out)) return inside;
  const st = await lstat(out).catch(() => null);
  if (st) {
    if (!st.isDirectory()) return inside;
    const parentSt = await stat(parent);
    if (parentSt.dev !== st.dev) return inside;
  }
  return { root: join(parent, `.${basename(out)}.semdedup-partial`), besideOutput: true };
}

/** Lock tokens this process holds (a lock with our pid but another token is a dead run's). */
const heldTokens = new Set<string>();

interface LockRecord {
  readonly pid: number;
  readonly host: string;
  readonly argv1: string;
  readonly token: string;
}

function lockHolderAlive(lock: LockRecord): boolean {
  if (lock.host !== hostname()) return false; // cannot be checked; a crash elsewhere must not block forever
  if (lock.pid === process.pid) return heldTokens.has(lock.token);
  try {
    process.kill(lock.pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  // A reused pid: the process there is not the run that took the lock.
  try {
    const cmdline = readFileSync(`/proc/${lock.pid}/cmdline`, 'utf8');
    return lock.argv1 === '' || cmdline.includes(lock.argv1);
  } catch {
    return true;
  }
}

async function acquireLock(root: string, outputDir: string, log: Logger): Promise<() => Promise<void>> {
  const path = join(root, 'lock');
  const record: LockRecord = { pid: process.pid, host: hostname(), argv1: process.argv[1] ?? '', token: randomUUID() };
  for (let attempt = 0; ; attempt++) {
    try {
      await writeFile(path, JSON.stringify(record), { flag: 'wx' });
      heldTokens.add(record.token);
      return async () => {
        heldTokens.delete(record.token);
        await unlink(path).catch(() => undefined);
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw err;
    }
    let holder: LockRecord | null = null;
    try {
      holder = JSON.parse(await readFile(path, 'utf8')) as LockRecord;
    } catch {
      holder = null; // torn or unreadable: its writer died while writing it
    }
    if (holder && lockHolderAlive(holder)) {
      throw new InputError(`another semdedup run (pid ${holder.pid}) is writing ${outputDir}; wait for it to end or stop it`, { context: { file: outputDir } });
    }
    log.debug({ lock: path, holder }, 'taking over the lock of a run that is gone');
    await unlink(path).catch(() => undefined);
  }
}

async function readProgress(root: string): Promise<RunProgress | null> {
  try {
    const p = JSON.parse(await readFile(join(root, 'progress.json'), 'utf8')) as RunProgress;
    return p.version === 1 && p.identity ? p : null;
  } catch {
    return null;
  }
}

/** Write a file so that after any crash it holds either the old or the new text, whole (summary.json, progress.json). */
export async function writeFileDurably(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  const fh = await open(tmp, 'w');
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
  await syncDir(dirname(path));
}

/** Remove files a killed writer left under temporary names (`x.parquet.tmp-<pid>`, `x.npy.tmp-<pid>`). */
async function removeTemporaryFiles(dir: string): Promise<number> {
  let removed = 0;
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const p = join(dir, e.name);
    if (e.isDirectory()) removed += await removeTemporaryFiles(p);
    else if (/\.tmp-\d+$/.test(e.name)) {
      await rm(p, { force: true });
      removed++;
    }
  }
  return removed;
}

export interface PartialRun {
  /** Folder of the partial run (lock, progress.json, output/, work/). */
  readonly root: string;
  /** The output being built; published as a whole. */
  readonly stagingDir: string;
  /** Scratch files. */
  readonly workDir: string;
  /** Whether publishing can rename `stagingDir` onto the output folder. */
  readonly besideOutput: boolean;
  /** The progress a resumed run continues from; null for a fresh run. */
  readonly resumedFrom: RunProgress | null;
  /** Record a finished stage (run only; a no-op without an identity). */
  record(stage: Pick<RunProgress, 'kmeans'> | Pick<RunProgress, 'assign'>): Promise<void>;
  /** Whether any stage was recorded (something worth resuming). */
  hasProgress(): boolean;
  /** The run is done (published) or pointless to continue: remove everything. */
  remove(): Promise<void>;
  /** Keep output/ and progress.json for `--resume`; drop scratch and the lock. */
  keep(): Promise<void>;
}

/**
 * Find, lock and set up the partial run of `outputDir`. With `resume` and a partial run whose
 * identity matches `identity`, its output/ and progress are kept; with a different identity it
 * refuses (InputError naming what differs) and leaves it untouched. Otherwise a leftover partial
 * run is discarded (logged) and a fresh one started. `identity` null (replay, which does not
 * resume): no progress is recorded.
 */
export async function openPartialRun(
  outputDir: string,
  options: { resume: boolean; identity: RunIdentity | null; logger: Logger },
): Promise<PartialRun> {
  const { logger, identity } = options;
  const { root, besideOutput } = await partialRootFor(outputDir);
  await mkdir(root, { recursive: true });
  const releaseLock = await acquireLock(root, outputDir, logger);
  const stagingDir = join(root, 'output');
  const workDir = join(root, 'work');
  const progressFile = join(root, 'progress.json');
  let progress: RunProgress | null = null;
  try {
    const leftover = await readProgress(root);
    const staged = existsSync(stagingDir);
    if (options.resume && identity) {
      if (leftover && staged) {
        const changes = identityChanges(leftover.identity, identity);
        if (changes.length > 0) {
          throw new InputError(`cannot resume the partial run of ${outputDir}: ${changes.join('; ')} (kept in ${root}; run without --resume to start over)`, { context: { file: outputDir } });
        }
        progress = leftover;
      } else {
        logger.info({ partial: root }, '--resume: no partial run to continue; starting from the beginning');
      }
    }
    if (progress) {
      const removed = await removeTemporaryFiles(stagingDir);
      await rm(workDir, { recursive: true, force: true });
      logger.info({ partial: root, kmeans: progress.kmeans !== undefined, assign: progress.assign !== undefined, tempFilesRemoved: removed }, 'resuming the partial run');
    } else {
      const entries = (await readdir(root)).filter((e) => e !== 'lock');
      if (entries.length > 0 && (leftover || staged)) {
        logger.info({ partial: root }, options.resume ? 'discarding the unusable partial run' : 'discarding the partial run left by an earlier run (pass --resume to continue it instead)');
      }
      await Promise.all(entries.map((e) => rm(join(root, e), { recursive: true, force: true })));
      if (identity) await writeFileDurably(progressFile, JSON.stringify({ version: 1, identity } satisfies RunProgress, null, 2));
    }
    await mkdir(stagingDir, { recursive: true });
    await mkdir(workDir, { recursive: true });
  } catch (err) {
    await releaseLock();
    throw err;
  }

  let current: RunProgress | null = progress ?? (identity ? { version: 1, identity } : null);
  return {
    root,
    stagingDir,
    workDir,
    besideOutput,
    resumedFrom: progress,
    async record(stage) {
      if (!current) return;
      current = { ...current, ...stage };
      await writeFileDurably(progressFile, JSON.stringify(current, null, 2));
    },
    hasProgress: () => current?.kmeans !== undefined,
    async remove() {
      await rm(workDir, { recursive: true, force: true });
      await rm(stagingDir, { recursive: true, force: true });
      await rm(progressFile, { force: true });
      await releaseLock();
      await rm(root, { recursive: true, force: true });
    },
    async keep() {
      await rm(workDir, { recursive: true, force: true });
      await releaseLock();
    },
  };
}
