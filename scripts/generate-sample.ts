/**
 * Write a deterministic synthetic clip-embedding dataset (see src/sources/sample.ts).
 *
 *   npx tsx scripts/generate-sample.ts --rows 50000 --dim 768 --clusters 50 --out .data/sample.parquet
 *   npx tsx scripts/generate-sample.ts --rows 50000 --files 4 --out .data/sample/   (part-00000.parquet ...)
 *   npx tsx scripts/generate-sample.ts --rows 1000 --format jsonl --out .data/sample.jsonl
 *
 * Rows are generated and written in chunks, so memory stays bounded for any --rows.
 */
import { createWriteStream } from 'node:fs';
import { mkdir, rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Float64, Int64 } from 'apache-arrow';
import { openParquetWriter } from '../src/sinks/parquet/index.js';
import type { ParquetCompression } from '../src/sinks/parquet/index.js';
import { generateSampleClipRange } from '../src/sources/sample.js';
import type { SampleClips, SampleOptions } from '../src/sources/sample.js';

const USAGE = `usage: generate-sample --rows N --out PATH [--dim 768] [--clusters 50] [--files 1]
  [--duplicate-fraction 0.1] [--seed 42] [--format parquet|jsonl] [--id-type string|int64]
  [--row-group-rows 16384] [--compression snappy|zstd|none]
With --files > 1, --out is a folder receiving part-00000.<ext> ...`;

const CHUNK_ROWS = 16384;

function fail(message: string): never {
  process.stderr.write(`generate-sample: ${message}\n${USAGE}\n`);
  process.exit(2);
}

function intArg(v: string | undefined, name: string, dflt?: number): number {
  if (v === undefined) {
    if (dflt === undefined) fail(`--${name} is required`);
    return dflt;
  }
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) fail(`--${name} must be a non-negative integer, got ${v}`);
  return n;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rows: { type: 'string' },
      dim: { type: 'string' },
      clusters: { type: 'string' },
      out: { type: 'string' },
      files: { type: 'string' },
      'duplicate-fraction': { type: 'string' },
      seed: { type: 'string' },
      format: { type: 'string' },
      'id-type': { type: 'string' },
      'row-group-rows': { type: 'string' },
      compression: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const out = values.out ?? fail('--out is required');
  const rows = intArg(values.rows, 'rows');
  const files = Math.max(1, intArg(values.files, 'files', 1));
  const format = values.format ?? (/\.(jsonl|ndjson)$/i.test(out) ? 'jsonl' : 'parquet');
  if (format !== 'parquet' && format !== 'jsonl') fail(`--format must be parquet or jsonl, got ${format}`);
  const idType = values['id-type'] ?? 'string';
  if (idType !== 'string' && idType !== 'int64') fail(`--id-type must be string or int64, got ${idType}`);
  const compression = (values.compression ?? 'snappy') as ParquetCompression;
  if (!['snappy', 'zstd', 'none'].includes(compression)) fail(`--compression must be snappy, zstd or none`);
  const sample: SampleOptions = {
    rows,
    dim: intArg(values.dim, 'dim', 768),
    clusters: intArg(values.clusters, 'clusters', 50),
    duplicateFraction: values['duplicate-fraction'] === undefined ? 0.1 : Number(values['duplicate-fraction']),
    seed: intArg(values.seed, 'seed', 42),
  };
  const rowGroupRows = intArg(values['row-group-rows'], 'row-group-rows', 16384);
  const ext = format === 'jsonl' ? '.jsonl' : '.parquet';
  if (files > 1 && /\.(parquet|jsonl|ndjson)$/i.test(out)) fail('with --files > 1, --out must be a folder');

  const targets: { file: string; start: number; end: number }[] = [];
  for (let f = 0; f < files; f++) {
    const start = Math.floor((rows * f) / files);
    const end = Math.floor((rows * (f + 1)) / files);
    targets.push({ file: files > 1 ? path.join(out, `part-${String(f).padStart(5, '0')}${ext}`) : out, start, end });
  }
  const t0 = Date.now();
  for (const t of targets) {
    await mkdir(path.dirname(t.file), { recursive: true });
    if (format === 'parquet') await writeParquetPart(t.file, sample, t.start, t.end, idType, rowGroupRows, compression);
    else await writeJsonlPart(t.file, sample, t.start, t.end, idType);
  }
  const dups = countDuplicates(sample);
  process.stdout.write(
    `${JSON.stringify({ rows, dim: sample.dim, clusters: sample.clusters, files: targets.map((t) => t.file), nearCopies: dups, seconds: (Date.now() - t0) / 1000 })}\n`,
  );
}

function countDuplicates(sample: SampleOptions): number {
  let n = 0;
  for (let s = 0; s < sample.rows; s += CHUNK_ROWS) {
    const c = generateSampleClipRange({ ...sample, dim: 1 }, s, CHUNK_ROWS);
    for (const d of c.duplicateOf) if (d >= 0) n++;
  }
  return n;
}

function idsOf(clips: SampleClips, idType: string): string[] {
  // int64 ids: the clip number (clip-000042 → 42).
  return idType === 'int64' ? clips.ids.map((id) => String(Number(id.slice(5)))) : clips.ids;
}

async function writeParquetPart(
  file: string,
  sample: SampleOptions,
  start: number,
  end: number,
  idType: string,
  rowGroupRows: number,
  compression: ParquetCompression,
): Promise<void> {
  const writer = await openParquetWriter(file, { rowGroupRows, compression });
  try {
    for (let s = start; s < end || s === start; s += CHUNK_ROWS) {
      const clips = generateSampleClipRange(sample, s, Math.min(CHUNK_ROWS, end - s));
      await writer.write([
        { name: 'id', type: idType === 'int64' ? 'int64' : 'utf8', values: idsOf(clips, idType) },
        { name: 'embedding', type: 'fixed-list-float32', values: clips.embeddings, listSize: sample.dim },
        { name: 'video_id', type: 'utf8', values: clips.metadata.video_id! },
        { name: 'duration_s', type: { arrow: new Float64() }, values: clips.metadata.duration_s! },
        { name: 'frame_count', type: { arrow: new Int64() }, values: clips.metadata.frame_count! },
      ]);
      if (end === start) break;
    }
    await writer.close();
  } catch (err) {
    await writer.abort();
    throw err;
  }
}

async function writeJsonlPart(file: string, sample: SampleOptions, start: number, end: number, idType: string): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  const stream = createWriteStream(tmp);
  const write = (s: string): Promise<void> =>
    stream.write(s) ? Promise.resolve() : new Promise((resolve) => stream.once('drain', () => resolve()));
  try {
    for (let s = start; s < end; s += CHUNK_ROWS) {
      const clips = generateSampleClipRange(sample, s, Math.min(CHUNK_ROWS, end - s));
      const ids = idsOf(clips, idType);
      const lines: string[] = [];
      for (let r = 0; r < clips.ids.length; r++) {
        const emb = Array.from(clips.embeddings.subarray(r * sample.dim, (r + 1) * sample.dim));
        const id = idType === 'int64' ? ids[r] : JSON.stringify(ids[r]);
        lines.push(
          `{"id":${id},"embedding":${JSON.stringify(emb)},"video_id":${JSON.stringify(clips.metadata.video_id![r])},` +
            `"duration_s":${String(clips.metadata.duration_s![r])},"frame_count":${String(clips.metadata.frame_count![r])}}\n`,
        );
      }
      await write(lines.join(''));
    }
    await new Promise<void>((resolve, reject) => stream.end((err?: Error | null) => (err ? reject(err) : resolve())));
    await rename(tmp, file);
  } catch (err) {
    stream.destroy();
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`generate-sample: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
