/**
 * inspect → identify → export on a finished run, through the CLI's `main` (exit codes, stdout,
 * stderr), checked against direct reads of the run's files; plus the HTML report opened in
 * headless Chromium.
 */
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { runBatch } from '../../src/batch/run.js';
import { main } from '../../src/cli/main.js';
import { silentLogger } from '../../src/runtime/logging.js';
import { createProgress } from '../../src/runtime/progress.js';
import { runConfigSchema, type RunConfig } from '../../src/shared/config.js';
import { writeParquetFile } from '../../src/sinks/parquet/index.js';
import { generateSampleClips } from '../../src/sources/sample.js';
import { openParquetFile, parquetArrowSchema } from '../../src/sources/parquet/index.js';
import { makeRows, readParquetRows, tempDir, writeRowsParquet } from '../helpers/fixtures.js';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const ROWS = 1500;

/** The few DOM members used inside page.evaluate (the project compiles without the DOM lib). */
interface DomBox {
  readonly width: number;
  readonly height: number;
}
interface DomElement {
  readonly id: string;
  getBoundingClientRect(): DomBox;
  querySelectorAll(selector: string): Iterable<DomElement>;
}
interface DomImage {
  src: string;
  readonly width: number;
  readonly height: number;
  decode(): Promise<void>;
}
interface DomCanvas {
  width: number;
  height: number;
  getContext(kind: '2d'): { drawImage(img: DomImage, x: number, y: number): void; getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray } } | null;
}
interface BrowserGlobals {
  readonly document: { querySelectorAll(selector: string): Iterable<DomElement>; createElement(tag: 'canvas'): DomCanvas };
  readonly Image: new () => DomImage;
}
const METADATA = ['video_id', 'duration_s', 'frame_count'];

process.env.SEMDEDUP_LOG_LEVEL ??= 'error';

/** Run the CLI in-process; stdout and stderr captured. */
async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const out = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stdout += String(chunk);
    return true;
  });
  const err = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stderr += String(chunk);
    return true;
  });
  try {
    const code = await main(args);
    return { code, stdout, stderr };
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
}

function arrowSchemaOf(file: string): Promise<string[]> {
  return openParquetFile(file).then((pf) => {
    try {
      return parquetArrowSchema(file, pf).fields.map((f) => `${f.name}: ${String(f.type)}`);
    } finally {
      pf.free();
    }
  });
}

async function run(input: string, output: string, eps: number): Promise<RunConfig> {
  const config = runConfigSchema.parse({ input: [input], output, nClusters: 6, eps, backend: 'js', seed: 42, metadataFields: METADATA });
  await runBatch(config, { logger: silentLogger(), progress: createProgress(false) });
  return config;
}

const dupIds = async (dir: string) => (await readParquetRows(join(dir, 'duplicates', '*.parquet'))).map((r) => String(r.id));

describe('inspect, identify, export on a finished run', () => {
  const dir = tempDir('semdedup-iie-');
  const input = join(dir, 'clips.parquet');
  const out = join(dir, 'out');
  let inputIds: string[] = [];

  beforeAll(async () => {
    // Near-copies with noise 0.08 land between ~0.99 and ~0.999, so eps 0.001 … 0.02 select
    // different sets; int32 and nullable string columns are not run metadata but must survive export.
    const clips = generateSampleClips({ rows: ROWS, dim: 16, clusters: 6, duplicateFraction: 0.2, duplicateNoise: 0.08, seed: 5 });
    inputIds = clips.ids;
    await writeParquetFile(
      input,
      [
        { name: 'id', type: 'utf8', values: clips.ids },
        { name: 'embedding', type: 'fixed-list-float32', values: clips.embeddings, listSize: 16 },
        { name: 'video_id', type: 'utf8', values: clips.metadata.video_id! },
        { name: 'duration_s', type: 'float64', values: clips.metadata.duration_s! as number[] },
        { name: 'frame_count', type: 'int64', values: clips.metadata.frame_count! as bigint[] },
        { name: 'shot', type: 'int32', values: Int32Array.from(clips.ids, (_, i) => i % 7) },
        { name: 'source', type: 'utf8', values: clips.ids.map((_, i) => (i % 5 === 0 ? null : `cam-${i % 3}`)) },
      ],
      { rowGroupRows: 400 },
    );
    await run(input, out, 0.01);
  });

  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('inspect --json: eps_table equals direct counts from pairwise_results; histogram and cluster sizes add up; nothing is written', async () => {
    const db = join(out, 'semdedup.duckdb');
    const before = statSync(db);
    const grid = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.3];
    const { code, stdout, stderr } = await cli(['inspect', '--output', out, '--json', '--eps-grid', grid.join(',')]);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const report = JSON.parse(stdout);
    const pairs = await readParquetRows(join(out, 'pairwise_results', '*.parquet'));
    expect(pairs.length).toBe(ROWS);
    expect(report.rows).toBe(ROWS);
    expect(report.eps_table.map((e: { eps: number }) => e.eps)).toEqual(grid);
    for (const e of report.eps_table) {
      const direct = pairs.filter((p) => (p.cosine_sim_score as number) >= 1 - e.eps).length;
      expect(e.duplicates, `eps ${e.eps}`).toBe(direct);
      expect(e.kept).toBe(ROWS - direct);
      expect(e.fraction).toBeCloseTo((ROWS - direct) / ROWS, 12);
    }
    // The grid must actually discriminate, or the identify test below proves nothing.
    expect(new Set(report.eps_table.map((e: { duplicates: number }) => e.duplicates)).size).toBeGreaterThan(3);

    expect(report.histogram).toHaveLength(50);
    expect(report.histogram.reduce((s: number, b: { count: number }) => s + b.count, 0)).toBe(ROWS);
    const lastBin = pairs.filter((p) => (p.cosine_sim_score as number) >= 0.98).length;
    expect(report.histogram[49].count).toBe(lastBin);

    const sizes = report.cluster_sizes.per_cluster;
    expect(sizes).toHaveLength(6);
    expect(sizes.reduce((s: number, c: { size: number }) => s + c.size, 0)).toBe(ROWS);
    expect(report.top_clusters.length).toBeGreaterThan(0);
    expect(report.top_clusters[0].duplicates).toBe(Math.max(...sizes.map((c: { duplicates: number }) => c.duplicates)));
    const at001 = report.eps_table.find((e: { eps: number }) => e.eps === 0.01).duplicates;
    expect(sizes.reduce((s: number, c: { duplicates: number }) => s + c.duplicates, 0)).toBe(at001);

    expect(report.sample_pairs.length).toBe(10);
    const byId = new Map(pairs.map((p) => [String(p.id), p]));
    for (const p of report.sample_pairs) {
      expect(p.cosine_sim_score).toBeGreaterThanOrEqual(1 - 0.01);
      expect(String(byId.get(p.id)!.max_id)).toBe(p.max_id);
      expect(Object.keys(p.metadata).sort()).toEqual([...METADATA].sort());
      expect(Object.keys(p.max_id_metadata).sort()).toEqual([...METADATA].sort());
    }

    const after = statSync(db);
    expect(after.mtimeMs).toBe(before.mtimeMs);
    expect(after.size).toBe(before.size);
  });

  it('inspect prints tables for humans', async () => {
    const { code, stdout } = await cli(['inspect', '--output', out]);
    expect(code).toBe(0);
    expect(stdout).toContain('eps table (duplicates: cosine_sim_score >= 1 - eps; fraction = kept / rows)');
    expect(stdout).toContain('top clusters by duplicates at eps 0.01');
    expect(stdout).toContain('sample duplicate pairs');
  });

  it('identify --eps rewrites duplicates/ exactly as a fresh run with that eps, and updates summary.json', async () => {
    const before = await dupIds(out);
    const { code, stdout } = await cli(['identify', '--output', out, '--eps', '0.002']);
    expect(code).toBe(0);
    const after = await dupIds(out);
    expect(after.length).toBeLessThan(before.length);
    expect(stdout).toContain(`${after.length} duplicates at eps 0.002`);

    const fresh = join(dir, 'fresh');
    await run(input, fresh, 0.002);
    expect(after).toEqual(await dupIds(fresh));
    const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
    expect(summary.duplicates).toBe(after.length);
    expect(summary.config.eps).toBe(0.002);
    expect(readdirSync(out).filter((e) => e.startsWith('.semdedup-'))).toEqual([]);

    // And back: the original selection is restored exactly.
    expect((await cli(['identify', '--output', out, '--eps', '0.01', '--json'])).code).toBe(0);
    expect(await dupIds(out)).toEqual(before);
  });

  it('identify refuses a folder without semdedup.duckdb (exit 2)', async () => {
    const { code, stderr } = await cli(['identify', '--output', dir, '--eps', '0.01']);
    expect(code).toBe(2);
    expect(stderr).toMatch(/no semdedup\.duckdb/);
  });

  it('export: kept + removed = input rows, kept ids = input ids − duplicate ids in input order, same schema and values', async () => {
    const dest = join(dir, 'dedup');
    const { code, stdout } = await cli(['export', '--input', input, '--duplicates', join(out, 'duplicates'), '--output', dest, '--rows-per-file', '500', '--json']);
    expect(code).toBe(0);
    const result = JSON.parse(stdout);
    const dups = new Set(await dupIds(out));
    const expectedIds = inputIds.filter((id) => !dups.has(id));
    expect(result.kept + result.removed).toBe(ROWS);
    expect(result.removed).toBe(dups.size);
    expect(result.kept).toBe(expectedIds.length);
    const parts = readdirSync(dest).sort();
    expect(parts).toEqual(Array.from({ length: Math.ceil(expectedIds.length / 500) }, (_, i) => `part-${String(i).padStart(5, '0')}.parquet`));
    expect(result.files.map((f: { rows: number }) => f.rows)).toEqual(parts.map((_, i) => Math.min(500, expectedIds.length - i * 500)));

    const inputSchema = await arrowSchemaOf(input);
    expect(inputSchema).toContain('embedding: FixedSizeList[16]<Float32>');
    expect(inputSchema).toContain('frame_count: Int64');
    expect(inputSchema).toContain('shot: Int32');
    for (const p of parts) expect(await arrowSchemaOf(join(dest, p))).toEqual(inputSchema);

    const rows = [];
    for (const p of parts) rows.push(...(await readParquetRows(join(dest, p))));
    expect(rows.map((r) => String(r.id))).toEqual(expectedIds);
    // Every value survives: the kept input rows and the export are the same multiset of rows.
    const inRows = await readParquetRows(input);
    const canon = (r: Record<string, unknown>) => JSON.stringify(r, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v));
    const keptInput = inRows.filter((r) => !dups.has(String(r.id))).map(canon);
    expect(rows.map(canon)).toEqual(keptInput);
    expect(rows.some((r) => r.source === null)).toBe(true);
  });

  it('export refuses a duplicate list naming ids absent from the input (exit 2), unless --allow-missing', async () => {
    const listed = [...inputIds.slice(0, 3), 'ghost-1', 'ghost-2'];
    const dupDir = join(dir, 'foreign-duplicates');
    await writeParquetFile(join(dupDir, 'part-00000.parquet'), [{ name: 'id', type: 'utf8', values: listed }]);
    const dest = join(dir, 'dedup-missing');
    const refused = await cli(['export', '--input', input, '--duplicates', dupDir, '--output', dest]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('2 of the 5 duplicate ids are not in the input');
    expect(refused.stderr).toContain('ghost-1, ghost-2');
    expect(refused.stderr).toContain('--allow-missing');
    expect(existsSync(dest)).toBe(false);

    const allowed = await cli(['export', '--input', input, '--duplicates', dupDir, '--output', dest, '--allow-missing', '--json']);
    expect(allowed.code).toBe(0);
    const result = JSON.parse(allowed.stdout);
    expect(result).toMatchObject({ input_rows: ROWS, removed: 3, kept: ROWS - 3, missing: 2, missing_examples: ['ghost-1', 'ghost-2'] });
    expect((await readParquetRows(join(dest, '*.parquet'))).length).toBe(ROWS - 3);
  });

  it('export from JSONL writes Parquet with the rows kept', async () => {
    const jsonl = join(dir, 'clips.jsonl');
    const inRows = await readParquetRows(input);
    writeFileSync(jsonl, inRows.slice(0, 200).map((r) => JSON.stringify(r, (_k, v: unknown) => (typeof v === 'bigint' ? Number(v) : v))).join('\n') + '\n');
    const dups = new Set((await dupIds(out)).filter((id) => inRows.slice(0, 200).some((r) => r.id === id)));
    const dupDir = join(dir, 'jsonl-duplicates');
    await writeParquetFile(join(dupDir, 'part-00000.parquet'), [{ name: 'id', type: 'utf8', values: [...dups] }]);
    const dest = join(dir, 'dedup-jsonl');
    const { code, stdout } = await cli(['export', '--input', jsonl, '--duplicates', dupDir, '--output', dest, '--json']);
    expect(code).toBe(0);
    const result = JSON.parse(stdout);
    expect(result).toMatchObject({ input_rows: 200, removed: dups.size, kept: 200 - dups.size });
    const schema = await arrowSchemaOf(join(dest, 'part-00000.parquet'));
    expect(schema).toContain('embedding: List<Float32>');
    expect(schema).toContain('frame_count: Int64');
  });

  it('export keeps integer ids and the types of a DuckDB-written input', async () => {
    const { rows } = makeRows({ n: 300, dim: 8, centers: 2, seed: 9, intIds: true });
    const intInput = join(dir, 'int-ids.parquet');
    await writeRowsParquet(intInput, rows, { intIds: true });
    const intOut = join(dir, 'int-out');
    const config = runConfigSchema.parse({ input: [intInput], output: intOut, nClusters: 2, eps: 0.01, backend: 'js', metadataFields: ['duration_s'] });
    const summary = await runBatch(config, { logger: silentLogger(), progress: createProgress(false) });
    expect(summary.duplicates).toBeGreaterThan(10);
    const dest = join(dir, 'int-dedup');
    const { code, stdout } = await cli(['export', '--input', intInput, '--duplicates', join(intOut, 'duplicates'), '--output', dest, '--json']);
    expect(code).toBe(0);
    expect(JSON.parse(stdout)).toMatchObject({ input_rows: 300, removed: summary.duplicates, kept: 300 - summary.duplicates! });
    const schema = await arrowSchemaOf(intInput);
    expect(schema[0]).toBe('id: Int64');
    expect(await arrowSchemaOf(join(dest, 'part-00000.parquet'))).toEqual(schema);
    const dups = new Set(await dupIds(intOut));
    const kept = (await readParquetRows(join(dest, '*.parquet'))).map((r) => String(r.id));
    expect(kept).toEqual(rows.map((r) => r.id).filter((id) => !dups.has(id)));
  });

  it('export refuses to write into a folder it reads from (exit 2)', async () => {
    const { code, stderr } = await cli(['export', '--input', input, '--duplicates', join(out, 'duplicates'), '--output', out]);
    expect(code).toBe(2);
    expect(stderr).toContain('which export reads');
  });

  it('the HTML report renders its plots in headless Chromium, offline', async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(`Chromium is required for this test and was not found at ${CHROMIUM}: run scripts/ensure-chromium.sh (installs Debian's chromium with apt-get)`);
    }
    const reportPath = join(dir, 'report', 'report.html');
    const { code, stdout } = await cli(['inspect', '--output', out, '--report', reportPath]);
    expect(code).toBe(0);
    expect(stdout).toContain(`report written to ${reportPath}`);
    const html = readFileSync(reportPath, 'utf8');
    expect(html).not.toMatch(/(src|href)=["']?(https?:)?\/\//);

    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    try {
      const page = await browser.newPage({ viewport: { width: 1024, height: 900 } });
      const requests: string[] = [];
      page.on('request', (r) => requests.push(r.url()));
      await page.goto(pathToFileURL(reportPath).href, { waitUntil: 'load' });
      expect(requests.filter((u) => !u.startsWith('file:') && !u.startsWith('data:'))).toEqual([]);

      const charts = await page.evaluate(() =>
        [...(globalThis as unknown as BrowserGlobals).document.querySelectorAll('svg.chart')].map((svg) => {
          const box = svg.getBoundingClientRect();
          const bars = [...svg.querySelectorAll('rect.bar')].map((r) => r.getBoundingClientRect().height);
          return { id: svg.id, width: box.width, height: box.height, bars: bars.length, tallBars: bars.filter((h) => h > 0).length };
        }),
      );
      expect(charts.map((c) => c.id)).toEqual(['score-histogram', 'eps-curve', 'cluster-sizes']);
      for (const c of charts) {
        expect(c.width, c.id).toBeGreaterThan(100);
        expect(c.height, c.id).toBeGreaterThan(100);
      }
      const histogram = charts.find((c) => c.id === 'score-histogram')!;
      expect(histogram.bars).toBe(50);
      expect(histogram.tallBars).toBeGreaterThan(3);
      expect(await page.locator('#eps-curve circle.point').count()).toBe(12);
      expect(charts.find((c) => c.id === 'cluster-sizes')!.tallBars).toBeGreaterThanOrEqual(6);

      // Pixels: the histogram's screenshot must hold plenty of non-white, and some bar-blue, pixels.
      const shot = await page.locator('#score-histogram').screenshot();
      const pixels = await page.evaluate(async (b64) => {
        const { document, Image } = globalThis as unknown as BrowserGlobals;
        const img = new Image();
        img.src = `data:image/png;base64,${b64}`;
        await img.decode();
        const canvas = document.createElement('canvas');
        canvas.width = img.width;
        canvas.height = img.height;
        const g = canvas.getContext('2d')!;
        g.drawImage(img, 0, 0);
        const d = g.getImageData(0, 0, img.width, img.height).data;
        let ink = 0;
        let blue = 0;
        for (let i = 0; i < d.length; i += 4) {
          if (d[i]! < 235 || d[i + 1]! < 235 || d[i + 2]! < 235) ink++;
          if (d[i + 2]! > 180 && d[i]! < 60) blue++;
        }
        return { total: d.length / 4, ink, blue };
      }, shot.toString('base64'));
      expect(pixels.total).toBeGreaterThan(10_000);
      expect(pixels.ink / pixels.total).toBeGreaterThan(0.02);
      expect(pixels.blue).toBeGreaterThan(200);
    } finally {
      await browser.close();
    }
  });
});
