import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Float64, Int64 } from 'apache-arrow';
import type { Logger } from '../runtime/logging.js';
import { generateSampleClips } from '../sources/sample.js';
import { writeParquetFile } from '../sinks/parquet/index.js';

/** The embedded default `npm start` runs on: generated once, deterministic, no broker. */
export const SAMPLE = { rows: 20_000, dim: 256, clusters: 20, duplicateFraction: 0.1, seed: 7 } as const;

export async function ensureSample(logger: Logger, dir = join('.data', 'sample')): Promise<string> {
  const path = join(dir, 'clips.parquet');
  if (existsSync(path)) return path;
  await mkdir(dir, { recursive: true });
  logger.info({ path, rows: SAMPLE.rows, dim: SAMPLE.dim }, 'generating the sample data set (first run only)');
  const clips = generateSampleClips({ ...SAMPLE });
  await writeParquetFile(path, [
    { name: 'id', type: 'utf8', values: clips.ids },
    { name: 'embedding', type: 'fixed-list-float32', values: clips.embeddings, listSize: SAMPLE.dim },
    { name: 'video_id', type: 'utf8', values: clips.metadata.video_id! },
    { name: 'duration_s', type: { arrow: new Float64() }, values: clips.metadata.duration_s! },
    { name: 'frame_count', type: { arrow: new Int64() }, values: clips.metadata.frame_count! },
  ]);
  return path;
}
