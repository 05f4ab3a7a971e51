/**
 * `s3://` paths end to end, against a real S3-compatible server (s3rver in its own process on
 * 127.0.0.1, a random port, objects in a temp folder; the real AWS SDK, no mocks): a multi-file Parquet dataset read
 * from S3 with ranged reads gives the same NeMo outputs as the same files read locally; the layout
 * is uploaded with summary.json last; export, replay (JSONL input, centroids from S3) and the
 * CLI's one-line errors (missing bucket, wrong credentials, missing object, unreachable endpoint).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { runBatch, type RunSummary } from '../../src/batch/run.js';
import { main } from '../../src/cli/main.js';
import { exportDeduplicated } from '../../src/export/index.js';
import { silentLogger } from '../../src/runtime/logging.js';
import { runConfigSchema } from '../../src/shared/config.js';
import { InputError } from '../../src/shared/errors.js';
import { writeParquetFile } from '../../src/sinks/parquet/index.js';
import { iterateParquetFile } from '../../src/sources/parquet/index.js';
import { generateSampleClips } from '../../src/sources/sample.js';
import { closeStorage, parseS3Path, storageFor, type StorageOptions } from '../../src/storage/index.js';
import { readParquetRows, tempDir } from '../helpers/fixtures.js';

process.env.SEMDEDUP_LOG_LEVEL ??= 'error';

const BUCKET = 'semdedup-it';
const FILES = 3;
const ROWS_PER_FILE = 400;
const ROW_GROUP_ROWS = 100;
const DIM = 32;
/** s3rver checks access key ids but not SigV4 signatures, so any secret works; this one must never be printed. */
const SECRET = 'secret-never-printed-7f3a9c';
const s3 = (key: string): string => `s3://${BUCKET}/${key}`;

interface SeenRequest {
  readonly method: string;
  /** `bucket/key` of a path-style request. */
  readonly key: string;
  readonly range: string | null;
}

let server: ChildProcess;
let storageOptions: StorageOptions;
let dir: string;
let localData: string;
let requestLog: string;
let remoteRun: RunSummary;
let localRun: RunSummary;

/** Run the CLI in-process; stdout and stderr captured. */
async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const out = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => ((stdout += String(chunk)), true));
  const err = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => ((stderr += String(chunk)), true));
  try {
    return { code: await main(args), stdout, stderr };
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
}

/** Copy everything under an S3 prefix into a local folder, keeping relative paths. */
async function downloadPrefix(prefix: string, to: string): Promise<string[]> {
  const store = storageFor(prefix, storageOptions);
  const { key } = parseS3Path(prefix);
  const names: string[] = [];
  for (const o of await store.list(prefix)) {
    const rel = parseS3Path(o.path).key.slice(key.length + 1);
    mkdirSync(dirname(join(to, rel)), { recursive: true });
    await store.download(o.path, join(to, rel));
    names.push(rel);
  }
  return names;
}

/** Requests the server has seen so far, in order. */
function requests(): SeenRequest[] {
  return readFileSync(requestLog, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as SeenRequest);
}

async function startServer(): Promise<number> {
  const script = fileURLToPath(new URL('../helpers/s3-server.mjs', import.meta.url));
  requestLog = join(dir, 'requests.jsonl');
  writeFileSync(requestLog, '');
  server = spawn(process.execPath, ['--openssl-legacy-provider', script, join(dir, 's3rver'), requestLog, BUCKET], { stdio: ['pipe', 'pipe', 'inherit'] });
  const [line] = await Promise.race([
    createInterface({ input: server.stdout! })[Symbol.asyncIterator]().next().then((r) => [r.value as string | undefined]),
    new Promise<never>((_, reject) => server.once('exit', (code) => reject(new Error(`s3 test server exited (${code})`)))),
  ]);
  return Number(line);
}

const byId = 'ORDER BY id';

beforeAll(async () => {
  dir = tempDir('semdedup-s3-');
  const port = await startServer();
  storageOptions = { endpoint: `http://127.0.0.1:${port}`, region: 'us-east-1', forcePathStyle: true, accessKeyId: 'S3RVER', secretAccessKey: SECRET };

  // 3 files × 400 rows in row groups of 100, plus a `_SUCCESS` marker that listing must skip.
  const clips = generateSampleClips({ rows: FILES * ROWS_PER_FILE, dim: DIM, clusters: 5, duplicateFraction: 0.15, seed: 11 });
  localData = join(dir, 'data');
  mkdirSync(localData);
  const lines: string[] = [];
  for (let f = 0; f < FILES; f++) {
    const from = f * ROWS_PER_FILE;
    const to = from + ROWS_PER_FILE;
    await writeParquetFile(
      join(localData, `part-${f}.parquet`),
      [
        { name: 'id', type: 'utf8', values: clips.ids.slice(from, to) },
        { name: 'embedding', type: 'fixed-list-float32', values: clips.embeddings.subarray(from * DIM, to * DIM), listSize: DIM },
        { name: 'video_id', type: 'utf8', values: clips.metadata.video_id!.slice(from, to) },
        { name: 'duration_s', type: 'float64', values: clips.metadata.duration_s!.slice(from, to) as number[] },
      ],
      { rowGroupRows: ROW_GROUP_ROWS },
    );
  }
  writeFileSync(join(localData, '_SUCCESS'), '');
  for (let i = 0; i < clips.ids.length; i++) {
    lines.push(JSON.stringify({ id: clips.ids[i], embedding: Array.from(clips.embeddings.subarray(i * DIM, (i + 1) * DIM)), video_id: clips.metadata.video_id![i] }));
  }
  const jsonl = join(dir, 'clips.jsonl');
  writeFileSync(jsonl, lines.join('\n') + '\n');
  const store = storageFor(s3('data'), storageOptions);
  await store.upload(localData, s3('data'));
  await store.upload(jsonl, s3('jsonl/clips.jsonl'));
  // A previous run's leftovers (must be cleared) and a foreign file (must be kept).
  const stale = join(dir, 'stale.txt');
  writeFileSync(stale, 'old');
  await store.upload(stale, s3('out/run/duplicates/part-99999.parquet'));
  await store.upload(stale, s3('out/run/notes.txt'));
});

afterAll(async () => {
  closeStorage();
  if (server && server.exitCode === null) {
    const exited = new Promise((resolve) => server.once('exit', resolve));
    server.stdin!.end(); // the server exits when its stdin closes
    await exited;
  }
});

describe('S3 storage: run, replay and export on s3:// paths', () => {
  it('run reads Parquet from S3 (ranged reads) and writes the NeMo layout to S3, equal to a local run', async () => {
    const base = { nClusters: 4, eps: 0.02, backend: 'js', metadataFields: ['video_id', 'duration_s'], batchRows: 256 };
    const firstRequest = requests().length;
    remoteRun = await runBatch(runConfigSchema.parse({ ...base, input: [s3('data/')], output: s3('out/run'), storageOptions }), { logger: silentLogger() });
    const seen = requests().slice(firstRequest);
    localRun = await runBatch(runConfigSchema.parse({ ...base, input: [localData], output: join(dir, 'run-local') }), { logger: silentLogger() });

    expect(remoteRun.rows).toBe(FILES * ROWS_PER_FILE);
    expect(remoteRun.input_files).toBe(FILES); // _SUCCESS skipped
    expect(remoteRun.duplicates).toBeGreaterThan(0);
    expect(remoteRun.duplicates).toBe(localRun.duplicates);
    expect(remoteRun.clusters).toBe(localRun.clusters);

    // Ranged reads only: every GET of an input object has a Range, none spans the whole object,
    // and each file took several (footer, then column chunks row group by row group).
    const sizes = new Map((await storageFor(s3('data'), storageOptions).list(s3('data'))).map((o) => [parseS3Path(o.path).key, o.size]));
    for (let f = 0; f < FILES; f++) {
      const key = `${BUCKET}/data/part-${f}.parquet`;
      const size = sizes.get(`data/part-${f}.parquet`)!;
      const gets = seen.filter((r) => r.method === 'GET' && r.key === key);
      expect(gets.length, key).toBeGreaterThanOrEqual(ROWS_PER_FILE / ROW_GROUP_ROWS + 2);
      for (const g of gets) {
        expect(g.range, `${key}: GET without Range`).toMatch(/^bytes=\d+-\d+$/);
        const [a, b] = g.range!.slice(6).split('-').map(Number) as [number, number];
        expect(b - a + 1, `${key}: ${g.range} of ${size} bytes`).toBeLessThan(size);
      }
    }

    // Uploaded with summary.json last; the previous run's entries cleared, a foreign file kept.
    const writes = seen.filter((r) => (r.method === 'PUT' || r.method === 'POST') && r.key.startsWith(`${BUCKET}/out/run/`));
    expect(writes.at(-1)?.key).toBe(`${BUCKET}/out/run/summary.json`);
    const names = await storageFor(s3('out/run'), storageOptions).listNames(s3('out/run'));
    expect(names).toEqual(['duplicates', 'kmeans_centroids.npy', 'kmeans_results', 'notes.txt', 'pairwise_results', 'semdedup.duckdb', 'summary.json']);
    expect((await storageFor(s3('out'), storageOptions).stat(s3('out/run/duplicates/part-99999.parquet')))).toBeNull();

    const remoteDir = join(dir, 'run-remote');
    await downloadPrefix(s3('out/run'), remoteDir);
    const localDir = join(dir, 'run-local');
    for (const glob of ['pairwise_results/*.parquet', 'duplicates/*.parquet', 'kmeans_results/*/*.parquet']) {
      const got = await readParquetRows(join(remoteDir, glob), byId);
      expect(got.length, glob).toBeGreaterThan(0);
      expect(got, glob).toEqual(await readParquetRows(join(localDir, glob), byId));
    }
    expect(readFileSync(join(remoteDir, 'kmeans_centroids.npy'))).toEqual(readFileSync(join(localDir, 'kmeans_centroids.npy')));
    const summaryText = readFileSync(join(remoteDir, 'summary.json'), 'utf8');
    expect(summaryText).not.toContain(SECRET);
    expect(JSON.parse(summaryText).config.storageOptions).toMatchObject({ endpoint: storageOptions.endpoint, secretAccessKey: '[redacted]', accessKeyId: '[redacted]' });
  });

  it('export writes the input minus the duplicates from S3 to S3, equal to a local export', async () => {
    const store = storageFor(s3('out'), storageOptions);
    // A part of an older, larger export: replaced sets must not keep it.
    await store.upload(join(dir, 'stale.txt'), s3('out/clean/part-00009.parquet'));
    const remote = await exportDeduplicated({ input: [s3('data/')], duplicates: s3('out/run/duplicates'), output: s3('out/clean'), storage: storageOptions, logger: silentLogger() });
    const local = await exportDeduplicated({ input: [localData], duplicates: join(dir, 'run-local', 'duplicates'), output: join(dir, 'clean-local'), logger: silentLogger() });
    expect(remote.removed).toBe(localRun.duplicates);
    expect({ ...remote, output: '', files: remote.files.map((f) => f.rows) }).toEqual({ ...local, output: '', files: local.files.map((f) => f.rows) });
    expect(remote.files.map((f) => f.path)).toEqual([s3('out/clean/part-00000.parquet')]);
    expect(await store.listNames(s3('out/clean'))).toEqual(['part-00000.parquet']);
    await downloadPrefix(s3('out/clean'), join(dir, 'clean-remote'));
    const got = await readParquetRows(join(dir, 'clean-remote', '*.parquet'), byId);
    expect(got.length).toBe(FILES * ROWS_PER_FILE - localRun.duplicates!);
    expect(got).toEqual(await readParquetRows(join(dir, 'clean-local', '*.parquet'), byId));
  });

  it('replay via the CLI: JSONL from S3, centroids from an S3 run prefix, output to S3; same duplicates as the run', async () => {
    const r = await cli([
      'replay', '--input', s3('jsonl/clips.jsonl'), '--centroids', s3('out/run'), '--output', s3('out/replay'),
      '--eps', '0.02', '--backend', 'js', '--storage-options', JSON.stringify(storageOptions), '--json',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout + r.stderr).not.toContain(SECRET);
    const summary = JSON.parse(r.stdout);
    expect(summary.rows).toBe(FILES * ROWS_PER_FILE);
    expect(summary.duplicates).toBe(localRun.duplicates);
    await downloadPrefix(s3('out/replay/duplicates'), join(dir, 'replay-remote'));
    expect(await readParquetRows(join(dir, 'replay-remote', '*.parquet'), byId)).toEqual(await readParquetRows(join(dir, 'run-local', 'duplicates', '*.parquet'), byId));
  });

  it('run via the CLI: a glob of S3 objects and --centroids s3://…npy, local output', async () => {
    const out = join(dir, 'run-glob');
    const r = await cli([
      'run', '--input', s3('data/part-[01].parquet'), '--input', s3('data/part-2.parquet'), '--centroids', s3('out/run/kmeans_centroids.npy'),
      '--output', out, '--eps', '0.02', '--backend', 'js', '--storage-options', JSON.stringify(storageOptions), '--json',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout + r.stderr).not.toContain(SECRET);
    expect(JSON.parse(r.stdout)).toMatchObject({ rows: FILES * ROWS_PER_FILE, input_files: FILES, duplicates: localRun.duplicates });
    expect(await readParquetRows(join(out, 'duplicates', '*.parquet'), byId)).toEqual(await readParquetRows(join(dir, 'run-local', 'duplicates', '*.parquet'), byId));
  });
});

describe('S3 storage: uploads', () => {
  it('a file over the part size goes up as a multipart upload and comes back byte for byte', async () => {
    const big = join(dir, 'big.bin');
    const bytes = Buffer.alloc(9 * 1024 * 1024);
    for (let i = 0; i < bytes.length; i += 4) bytes.writeUInt32LE((i * 2654435761) >>> 0, i);
    writeFileSync(big, bytes);
    const first = requests().length;
    const store = storageFor(s3('big/big.bin'), storageOptions);
    await store.upload(big, s3('big/big.bin'));
    const writes = requests().slice(first).filter((r) => r.key === `${BUCKET}/big/big.bin`).map((r) => r.method);
    expect(writes).toEqual(['POST', 'PUT', 'PUT', 'POST']); // create, 2 parts, complete
    await store.download(s3('big/big.bin'), join(dir, 'big-back.bin'));
    expect(readFileSync(join(dir, 'big-back.bin')).equals(bytes)).toBe(true);
  });
});

describe('S3 errors: exit code 2 and one line naming the problem', () => {
  const runArgs = (input: string, options: StorageOptions, output = join(dir, 'err-out')) => [
    'run', '--input', input, '--output', output, '--n-clusters', '2', '--eps', '0.01', '--backend', 'js', '--storage-options', JSON.stringify(options),
  ];
  const expectOneLine = (r: { code: number; stderr: string; stdout: string }, pattern: RegExp): void => {
    expect(r.code, r.stderr).toBe(2);
    const lines = r.stderr.split('\n').filter((l) => l.trim() !== '');
    expect(lines, r.stderr).toHaveLength(1);
    expect(lines[0]).toMatch(pattern);
    expect(r.stderr + r.stdout).not.toContain(SECRET);
  };

  it('a missing bucket (input or output)', async () => {
    expectOneLine(await cli(runArgs('s3://no-such-bucket-here/data/', storageOptions)), /S3 bucket "no-such-bucket-here" does not exist/);
    expectOneLine(await cli(runArgs(localData, storageOptions, 's3://no-such-bucket-here/out')), /S3 bucket "no-such-bucket-here" does not exist/);
  });

  it('wrong credentials', async () => {
    expectOneLine(await cli(runArgs(s3('data/'), { ...storageOptions, accessKeyId: 'WRONG-KEY' })), /access to s3:\/\/semdedup-it\/data\/? denied \(InvalidAccessKeyId\): check the S3 credentials/);
  });

  it('a missing object, prefix or centroids file', async () => {
    expectOneLine(await cli(runArgs(s3('data/nope.parquet'), storageOptions)), /input path s3:\/\/semdedup-it\/data\/nope\.parquet does not exist/);
    expectOneLine(await cli(runArgs(s3('nothing-here/'), storageOptions)), /input path s3:\/\/semdedup-it\/nothing-here\/ does not exist/);
    expectOneLine(await cli(runArgs(s3('data/*.jsonl'), storageOptions)), /no input files match s3:\/\/semdedup-it\/data\/\*\.jsonl/);
    expectOneLine(await cli([...runArgs(s3('data/'), storageOptions), '--centroids', s3('nope.npy')]), /centroids s3:\/\/semdedup-it\/nope\.npy do not exist/);
  });

  it('an unreachable endpoint', async () => {
    expectOneLine(await cli(runArgs(s3('data/'), { ...storageOptions, endpoint: 'http://127.0.0.1:1' })), /cannot reach the S3 endpoint http:\/\/127\.0\.0\.1:1 for s3:\/\/semdedup-it\/data\//);
  });

  it('an object deleted while it is read: an InputError naming it, not a wasm crash', async () => {
    const file = s3('gone/part-0.parquet');
    const store = storageFor(file, storageOptions);
    await store.upload(join(localData, 'part-0.parquet'), file);
    const fields = { idField: 'id', embeddingField: 'embedding', metadataFields: [], storage: storageOptions };
    const batches = iterateParquetFile(file, fields, { batchRows: ROW_GROUP_ROWS });
    expect((await batches.next()).value?.ids).toHaveLength(ROW_GROUP_ROWS);
    await store.remove(s3('gone'));
    const err = await (async () => {
      for await (const _ of batches) {
        // drain until the next row group's read fails
      }
    })().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    expect((err as Error).message).toBe(`no such S3 object ${file}`);
  });

  it('results already there and --no-clear-output; bad --storage-options', async () => {
    expectOneLine(await cli([...runArgs(localData, storageOptions, s3('out/run')), '--no-clear-output']), /output folder already holds results/);
    expectOneLine(await cli([...runArgs(s3('data/'), storageOptions).slice(0, -1), `{"secretAccessKey": "${SECRET}", oops`]), /storage-options: expected a JSON object/);
  });
});
