/**
 * What the Kafka benchmarks (bench/stream.ts, bench/scale.ts) share: `--flag value` arguments,
 * the broker and logger from the environment, the generated sample with its cluster directions
 * as centroids, and the results file.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeNpy } from '../src/assign/npy.js';
import { createLogger } from '../src/runtime/logging.js';
import type { Logger } from '../src/runtime/logging.js';
import { generateSampleClips, sampleDirections } from '../src/sources/sample.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** `--name value` pairs; a flag followed by another flag (or last) is 'true'. */
export function parseFlags(argv: readonly string[] = process.argv.slice(2)): Map<string, string> {
  const args = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const name = argv[i]!.replace(/^--/, '');
    const next = argv[i + 1];
    if (next === undefined || next.startsWith('--')) args.set(name, 'true');
    else args.set(name, argv[++i]!);
  }
  return args;
}

/** KAFKA_BROKERS (default 127.0.0.1:9092). */
export function benchBrokers(): string[] {
  return (process.env.KAFKA_BROKERS ?? '127.0.0.1:9092').split(',');
}

/** SEMDEDUP_LOG_LEVEL (default warn). */
export function benchLogger(): Logger {
  return createLogger({ level: process.env.SEMDEDUP_LOG_LEVEL ?? 'warn' });
}

/** The generated sample (5% near-copies, seed 1) and its cluster directions written as `dir/centroids.npy`. */
export function sampleWithCentroids(dir: string, options: { rows: number; dim: number; clusters: number }): { clips: ReturnType<typeof generateSampleClips>; centroids: string } {
  const { rows, dim, clusters } = options;
  mkdirSync(dir, { recursive: true });
  const clips = generateSampleClips({ rows, dim, clusters, seed: 1, duplicateFraction: 0.05 });
  const centroids = path.join(dir, 'centroids.npy');
  writeNpy(centroids, sampleDirections({ dim, clusters, seed: 1 }), [clusters, dim]);
  return { clips, centroids };
}

/** bench/results/<name>.json */
export function writeResults(name: string, results: readonly Record<string, unknown>[]): void {
  mkdirSync(path.join(ROOT, 'bench', 'results'), { recursive: true });
  writeFileSync(path.join(ROOT, 'bench', 'results', `${name}.json`), JSON.stringify(results, null, 2) + '\n');
}
