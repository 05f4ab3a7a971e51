/**
 * `semdedup run` killed with SIGKILL at many moments: the output folder never holds anything that
 * looks complete, and `run --resume` then gives exactly the uninterrupted run's outputs. Kills come
 * from outside (after a log line, after a seeded random delay) and from the run itself
 * (SEMDEDUP_TEST_KILL_AT: after N finished clusters, around the publishing rename).
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { openPartialRun } from '../../src/batch/partial-run.js';
import { silentLogger } from '../../src/runtime/logging.js';
import { generateSampleClips } from '../../src/sources/sample.js';
import { writeParquetFile } from '../../src/sinks/parquet/index.js';
import { prng, readParquetRows, tempDir } from '../helpers/fixtures.js';

const bin = join(import.meta.dirname, '..', '..', 'bin', 'semdedup.mjs');
const CLUSTERS = 24;

interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  stdout: string;
  wallMs: number;
}

/** Run the CLI; SIGKILL it once `killWhen(stderr)` holds or after `killAfterMs`. */
function runCli(args: string[], opts: { env?: Record<string, string>; killWhen?: (stderr: string) => boolean; killAfterMs?: number } = {}): Promise<CliResult> {
  const env = { ...process.env, ...opts.env };
  if (!opts.env?.SEMDEDUP_TEST_KILL_AT) delete env.SEMDEDUP_TEST_KILL_AT;
  const started = performance.now();
  const child = spawn('node', [bin, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  let stdout = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
    if (opts.killWhen?.(stderr)) child.kill('SIGKILL');
  });
  const timer = opts.killAfterMs !== undefined ? setTimeout(() => child.kill('SIGKILL'), opts.killAfterMs) : undefined;
  return new Promise((resolve) =>
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stderr, stdout, wallMs: performance.now() - started });
    }),
  );
}

/** What must be identical between runs: every row of pairwise_results, duplicates and kmeans_results. */
async function outputs(out: string) {
  const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')) as Record<string, unknown>;
  return {
    pairwise: await readParquetRows(join(out, 'pairwise_results', '*.parquet'), 'ORDER BY id'),
    duplicates: await readParquetRows(join(out, 'duplicates', '*.parquet')),
    kmeans: await readParquetRows(join(out, 'kmeans_results', '*', '*.parquet'), 'ORDER BY id'),
    centroids: readFileSync(join(out, 'kmeans_centroids.npy')).toString('base64'),
    counts: { rows: summary.rows, clusters: summary.clusters, duplicates: summary.duplicates, pairs_compared: summary.pairs_compared, kmeans: summary.kmeans },
    entries: readdirSync(out).sort(),
  };
}

/** The output folder of a killed run: absent or empty (the partial run lives beside it). */
function expectNothingPublished(out: string): void {
  expect(existsSync(out) ? readdirSync(out) : []).toEqual([]);
}

describe('run killed with SIGKILL, then --resume', () => {
  let dir: string;
  let input: string;
  let reference: Awaited<ReturnType<typeof outputs>>;
  let referenceWallMs: number;
  const args = (out: string, ...extra: string[]) => ['run', '--input', input, '--output', out, '--n-clusters', String(CLUSTERS), '--eps', '0.02', '--backend', 'js', '--metadata-fields', 'duration_s', ...extra];
  const tally = { kills: 0, checked: 0, lost: 0, wrong: 0, finishedBeforeKill: 0 };

  /** Resume a killed run of `out` and check it against the uninterrupted run. */
  async function resumeAndCompare(out: string): Promise<Record<string, unknown>> {
    const r = await runCli(args(out, '--resume'));
    expect(r.code, r.stderr).toBe(0);
    const got = await outputs(out);
    tally.checked++;
    if (got.pairwise.length !== reference.pairwise.length) tally.lost++;
    else if (JSON.stringify(got) !== JSON.stringify(reference)) tally.wrong++;
    expect(got).toEqual(reference);
    expect(existsSync(join(dir, `.${out.split('/').pop()}.semdedup-partial`))).toBe(false);
    return JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')) as Record<string, unknown>;
  }

  beforeAll(async () => {
    dir = tempDir();
    input = join(dir, 'in.parquet');
    const clips = generateSampleClips({ rows: 12_000, dim: 64, clusters: CLUSTERS, seed: 5 });
    await writeParquetFile(input, [
      { name: 'id', type: 'utf8', values: clips.ids },
      { name: 'embedding', type: 'fixed-list-float32', values: clips.embeddings, listSize: 64 },
      { name: 'duration_s', type: 'float64', values: clips.metadata.duration_s as number[] },
    ]);
    const ref = join(dir, 'reference');
    const r = await runCli(args(ref));
    expect(r.code, r.stderr).toBe(0);
    referenceWallMs = r.wallMs;
    reference = await outputs(ref);
    expect(reference.duplicates.length).toBeGreaterThan(0);
  }, 120_000);

  it('after N finished clusters: the N clusters are skipped, the rest computed, outputs identical', async () => {
    const out = join(dir, 'after-clusters');
    const killed = await runCli(args(out), { env: { SEMDEDUP_TEST_KILL_AT: 'clusters:5' } });
    tally.kills++;
    expect(killed.signal).toBe('SIGKILL');
    expectNothingPublished(out);
    const summary = await resumeAndCompare(out);
    expect(summary.resumed).toEqual({ clusters_skipped: 5, kmeans_reused: true, assign_reused: true });
  }, 120_000);

  it.each([
    // The cpu backend's k-means differs between processes in the last bits (found here; see
    // docs/RELIABILITY.md), so this case fixes the centroids: what is compared is the resume.
    ['the cpu backend and --centroids', ['--backend', 'cpu', '--centroids', 'REFERENCE_CENTROIDS'], { clusters_skipped: 5, kmeans_reused: true, assign_reused: true }],
    ['--probe 2 (pairwise runs again)', ['--probe', '2', '--probe-margin', '0.01'], { clusters_skipped: 0, kmeans_reused: true, assign_reused: true }],
  ])('with %s: killed after 5 clusters, resumed, identical to its own uninterrupted run', async (name, extra, resumed) => {
    const tag = name.replace(/\W+/g, '-');
    const flags = extra.map((f) => (f === 'REFERENCE_CENTROIDS' ? join(dir, 'reference', 'kmeans_centroids.npy') : f));
    const ref = join(dir, `reference-${tag}`);
    expect((await runCli([...args(ref), ...flags])).code).toBe(0);
    const out = join(dir, `after-clusters-${tag}`);
    const killed = await runCli([...args(out), ...flags], { env: { SEMDEDUP_TEST_KILL_AT: 'clusters:5' } });
    tally.kills++;
    expect(killed.signal).toBe('SIGKILL');
    expectNothingPublished(out);
    const r = await runCli([...args(out), ...flags, '--resume']);
    expect(r.code, r.stderr).toBe(0);
    tally.checked++;
    const [got, want] = [await outputs(out), await outputs(ref)];
    if (JSON.stringify(got) !== JSON.stringify(want)) tally.wrong++;
    expect(got).toEqual(want);
    expect(JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')).resumed).toEqual(resumed);
  }, 120_000);

  it.each([
    ['ingest', 'inputs read'],
    ['k-means', 'k-means fitted'],
    ['assign', 'clips assigned'],
  ])('after the %s step: nothing published, resume gives the same outputs', async (name, line) => {
    const out = join(dir, `after-${name}`);
    const killed = await runCli(args(out), { killWhen: (stderr) => stderr.includes(line) });
    tally.kills++;
    expect(killed.signal).toBe('SIGKILL');
    expectNothingPublished(out);
    const summary = await resumeAndCompare(out);
    expect((summary.resumed as { clusters_skipped: number }).clusters_skipped).toBe(0);
  }, 120_000);

  it('just before the publishing rename: nothing published; resume skips every cluster', async () => {
    const out = join(dir, 'before-publish');
    const killed = await runCli(args(out), { env: { SEMDEDUP_TEST_KILL_AT: 'before-publish' } });
    tally.kills++;
    expect(killed.signal).toBe('SIGKILL');
    expectNothingPublished(out);
    const summary = await resumeAndCompare(out);
    expect((summary.resumed as { clusters_skipped: number }).clusters_skipped).toBe(reference.counts.clusters);
  }, 120_000);

  it('just after the publishing rename: the output is complete; a later --resume starts over', async () => {
    const out = join(dir, 'after-publish');
    const killed = await runCli(args(out), { env: { SEMDEDUP_TEST_KILL_AT: 'after-publish' } });
    tally.kills++;
    expect(killed.signal).toBe('SIGKILL');
    expect(await outputs(out)).toEqual(reference);
    const summary = await resumeAndCompare(out);
    expect(summary.resumed).toBeUndefined();
  }, 120_000);

  it('at seeded random moments: nothing published unless the run finished; resume gives the same outputs', async () => {
    const rand = prng(20240611);
    for (let i = 0; i < 4; i++) {
      const out = join(dir, `random-${i}`);
      const delay = Math.round(rand() * referenceWallMs);
      const killed = await runCli(args(out), { killAfterMs: delay });
      tally.kills++;
      if (killed.code === 0) {
        tally.finishedBeforeKill++;
        expect(await outputs(out)).toEqual(reference);
      }
      else {
        expect(killed.signal, `killed after ${delay} ms`).toBe('SIGKILL');
        expectNothingPublished(out);
      }
      await resumeAndCompare(out);
    }
  }, 300_000);

  it('refuses to resume with other settings or modified inputs (exit 2, one line), and starts over without --resume', async () => {
    const out = join(dir, 'mismatch');
    const killed = await runCli(args(out), { env: { SEMDEDUP_TEST_KILL_AT: 'clusters:2' } });
    expect(killed.signal).toBe('SIGKILL');

    const other = await runCli(['run', '--input', input, '--output', out, '--n-clusters', '16', '--eps', '0.05', '--backend', 'js', '--metadata-fields', 'duration_s', '--resume']);
    expect(other.code).toBe(2);
    const errors = other.stderr.split('\n').filter((l) => l.startsWith('semdedup: error:'));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/cannot resume .*--n-clusters 24 → 16; --eps 0.02 → 0.05/);
    expect(other.stderr).not.toMatch(/\n\s+at /);

    const later = new Date(Date.now() + 60_000);
    utimesSync(input, later, later);
    const touched = await runCli(args(out, '--resume'));
    expect(touched.code).toBe(2);
    expect(touched.stderr).toMatch(/semdedup: error: cannot resume .*input modified \(size or mtime\): in\.parquet/);

    const fresh = await runCli(args(out));
    expect(fresh.code, fresh.stderr).toBe(0);
    expect(fresh.stderr).toMatch(/discarding the partial run left by an earlier run/);
    expect(await outputs(out)).toEqual(reference);
  }, 180_000);

  it('a second run on the same output while one holds it is refused', async () => {
    const out = join(dir, 'locked');
    const first = await openPartialRun(out, { resume: false, identity: null, logger: silentLogger() });
    try {
      await expect(openPartialRun(out, { resume: false, identity: null, logger: silentLogger() })).rejects.toThrow(/another semdedup run \(pid \d+\) is writing/);
    } finally {
      await first.remove();
    }
    const again = await openPartialRun(out, { resume: false, identity: null, logger: silentLogger() });
    await again.remove();
  });

  it('tally', () => {
    // Figures quoted in docs/RELIABILITY.md.
    process.stdout.write(`resume.test tally: ${JSON.stringify(tally)}\n`);
    expect(tally.checked).toBe(tally.kills);
    expect(tally.lost + tally.wrong).toBe(0);
  });
});
