import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { iterateRawBatches, readInputSchema, resolveInputFiles } from '../../src/sources/index.js';
import {
  generateSampleClipRange,
  generateSampleClips,
  mulberry32,
  sampleClipId,
  sampleDirections,
} from '../../src/sources/sample.js';
import { cosine } from '../helpers/reference.js';

describe('generateSampleClips', () => {
  const opts = { rows: 2000, dim: 64, clusters: 8, duplicateFraction: 0.2, seed: 7 };
  const clips = generateSampleClips(opts);
  const row = (i: number): Float32Array => clips.embeddings.subarray(i * opts.dim, (i + 1) * opts.dim);

  it('is deterministic per seed and independent of the generated range', () => {
    const again = generateSampleClips(opts);
    expect(again.embeddings).toEqual(clips.embeddings);
    expect(again.ids).toEqual(clips.ids);
    const other = generateSampleClips({ ...opts, seed: 8 });
    expect(other.embeddings).not.toEqual(clips.embeddings);
    const part = generateSampleClipRange(opts, 1500, 100);
    expect(part.embeddings).toEqual(clips.embeddings.subarray(1500 * 64, 1600 * 64));
    expect(part.ids).toEqual(clips.ids.slice(1500, 1600));
    expect(part.metadata).toEqual(
      Object.fromEntries(Object.entries(clips.metadata).map(([k, v]) => [k, v.slice(1500, 1600)])),
    );
    expect(part.origin.firstRow).toBe(1500);
    const r = mulberry32(1);
    expect([r(), r()]).toEqual([mulberry32(1)(), (() => { const q = mulberry32(1); q(); return q(); })()]);
  });

  it('has ids, metadata of the documented types, and about duplicateFraction near-copies', () => {
    expect(clips.ids[0]).toBe('clip-000001');
    expect(clips.ids[1999]).toBe('clip-002000');
    expect(sampleClipId(9, 12_345_678)).toBe('clip-00000010');
    expect(clips.idType).toBe('string');
    expect(typeof clips.metadata.video_id![0]).toBe('string');
    expect(typeof clips.metadata.duration_s![0]).toBe('number');
    expect(typeof clips.metadata.frame_count![0]).toBe('bigint');
    const dups = clips.duplicateOf.filter((d) => d >= 0).length;
    expect(dups / opts.rows).toBeGreaterThan(0.17);
    expect(dups / opts.rows).toBeLessThan(0.23);
    expect(clips.duplicateOf[0]).toBe(-1);
  });

  it('near-copies are near-identical to their original; clusters are real', () => {
    const dirs = sampleDirections(opts);
    let minDup = 1;
    for (let i = 0; i < opts.rows; i++) {
      const j = clips.duplicateOf[i]!;
      if (j < 0) continue;
      expect(j).toBeLessThan(i);
      expect(clips.cluster[i]).toBe(clips.cluster[j]);
      expect(clips.metadata.duration_s![i]).toBe(clips.metadata.duration_s![j]);
      minDup = Math.min(minDup, cosine(row(i), row(j)));
    }
    expect(minDup).toBeGreaterThan(0.999);
    // Each clip is much closer to its own direction than to any other.
    let own = 0;
    let other = 0;
    for (let i = 0; i < 200; i++) {
      const c = clips.cluster[i]!;
      own += cosine(row(i), dirs.subarray(c * 64, (c + 1) * 64));
      const o = (c + 1) % opts.clusters;
      other += Math.abs(cosine(row(i), dirs.subarray(o * 64, (o + 1) * 64)));
    }
    expect(own / 200).toBeGreaterThan(0.85);
    expect(other / 200).toBeLessThan(0.2);
    // Two originals of one cluster are far from duplicates of each other.
    const originals = [...clips.cluster.keys()].filter((i) => clips.duplicateOf[i] === -1 && clips.cluster[i] === 0).slice(0, 2);
    expect(cosine(row(originals[0]!), row(originals[1]!))).toBeLessThan(0.95);
  });
});

describe('scripts/generate-sample.ts', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'semdedup-sample-'));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  const run = (args: string[]): string => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'scripts/generate-sample.ts', ...args], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(r.stderr);
    return r.stdout;
  };

  it('writes Parquet parts and JSONL that read back as the same clips', async () => {
    const common = ['--rows', '300', '--dim', '16', '--clusters', '4', '--seed', '3'];
    const summary = JSON.parse(run([...common, '--files', '3', '--out', path.join(dir, 'pq'), '--row-group-rows', '64'])) as {
      files: string[];
    };
    expect(summary.files).toHaveLength(3);
    run([...common, '--format', 'jsonl', '--out', path.join(dir, 'clips.jsonl')]);
    const fields = { idField: 'id', embeddingField: 'embedding', metadataFields: ['video_id', 'duration_s', 'frame_count'] };
    const pqFiles = await resolveInputFiles([path.join(dir, 'pq')]);
    expect(pqFiles.map((f) => path.basename(f))).toEqual(['part-00000.parquet', 'part-00001.parquet', 'part-00002.parquet']);
    const pqSchema = await readInputSchema(pqFiles, fields);
    const jsSchema = await readInputSchema([path.join(dir, 'clips.jsonl')], fields);
    expect(pqSchema.rows).toBe(300);
    expect(pqSchema.dim).toBe(16);
    expect(Object.values(pqSchema.metadataTypes).map(String)).toEqual(['Utf8', 'Float64', 'Int64']);
    expect(Object.values(jsSchema.metadataTypes).map(String)).toEqual(['Utf8', 'Float64', 'Int64']);

    const expected = generateSampleClips({ rows: 300, dim: 16, clusters: 4, seed: 3 });
    for (const files of [pqFiles, [path.join(dir, 'clips.jsonl')]]) {
      const ids: (string | null)[] = [];
      const values: number[] = [];
      const frames: unknown[] = [];
      for await (const b of iterateRawBatches(files, fields)) {
        ids.push(...b.ids);
        values.push(...b.values);
        frames.push(...b.metadata.frame_count!);
        expect(b.rowErrors).toBeUndefined();
      }
      expect(ids).toEqual(expected.ids);
      expect(Float32Array.from(values)).toEqual(expected.embeddings);
      expect(frames).toEqual(expected.metadata.frame_count);
    }
  });
});
