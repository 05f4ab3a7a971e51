import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type * as yamlModule from 'yaml';
import { z } from 'zod';
import { InputError } from './errors.js';
import type { StorageOptions } from '../storage/types.js';
import type { RankingColumn } from './types.js';

/**
 * Default `--probe-margin` (l2 units), chosen on docs/BENCHMARKS.md "Multi-probe recall": at eps
 * 0.01 every pair that --probe 1 missed on either data set was covered from a margin of 0.001 on
 * (in high dimensions a near-copy barely moves along the direction between two centroids); 0.003
 * keeps 3× headroom for 1.01–1.3× the single-probe pairs.
 */
export const DEFAULT_PROBE_MARGIN = 0.003;

/**
 * Default `--state-memory-mb` of `stream` and `replay` (MiB): cluster states beyond it are served
 * from the state's DuckDB file (docs/BENCHMARKS.md "Streaming" has the measured RSS).
 */
export const DEFAULT_STATE_MEMORY_MB = 1024;

/**
 * One typed schema for the batch job's settings. Keys are camelCase here; config files may use
 * the CLI's kebab-case (`n-clusters`) or snake_case (`n_clusters`). Precedence: defaults <
 * config file < SEMDEDUP_* env vars < CLI flags.
 */
export const rankingColumn = z
  .string()
  .regex(/^[A-Za-z_][\w.]*:(asc|desc)$/, 'expected column:asc or column:desc')
  .transform((s): RankingColumn => {
    const [column, order] = s.split(':') as [string, 'asc' | 'desc'];
    return { column, order };
  });

export const stringList = z.preprocess(
  (v) => (typeof v === 'string' ? v.split(',').map((s) => s.trim()).filter(Boolean) : v),
  z.array(z.string().min(1)),
);

/**
 * `--storage-options` / `storage-options`: how to reach `s3://` paths. A JSON object on the command
 * line and in SEMDEDUP_STORAGE_OPTIONS, a mapping in a config file. Unset fields come from the AWS
 * env/config chain (AWS_ACCESS_KEY_ID, AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL, ...).
 * The JSON parse error is not echoed: the text holds the secret key.
 */
export const storageOptionsSchema: z.ZodType<StorageOptions, unknown> = z.preprocess(
  (v) => {
    if (typeof v !== 'string') return v;
    try {
      return JSON.parse(v) as unknown;
    } catch {
      return Symbol('invalid JSON');
    }
  },
  z
    .object(
      {
        /** e.g. http://127.0.0.1:9000 for an S3-compatible server. */
        endpoint: z.url().optional(),
        region: z.string().min(1).optional(),
        /** `http://endpoint/bucket/key` instead of `http://bucket.endpoint/key` (most S3-compatible servers). */
        forcePathStyle: z.boolean().optional(),
        accessKeyId: z.string().min(1).optional(),
        secretAccessKey: z.string().min(1).optional(),
        sessionToken: z.string().min(1).optional(),
      },
      { error: 'expected a JSON object like {"endpoint": "http://host:9000", "region": "us-east-1", "forcePathStyle": true}' },
    )
    .strict()
    .refine((o) => (o.accessKeyId === undefined) === (o.secretAccessKey === undefined), {
      message: 'give accessKeyId and secretAccessKey together',
    }),
);

/** `--storage-options` for commands without a config schema (export); InputError naming the flag. */
export function parseStorageOptions(value: unknown): StorageOptions | undefined {
  if (value === undefined) return undefined;
  return parseConfig(z.object({ storageOptions: storageOptionsSchema }), [{ storageOptions: value }], 'options').storageOptions;
}

export const runConfigSchema = z
  .object({
    /** Parquet/JSONL files, folders or globs. */
    input: z.preprocess((v) => (typeof v === 'string' ? [v] : v), z.array(z.string().min(1)).min(1, 'at least one input is required')),
    /** Output folder (NeMo layout). */
    output: z.string().min(1),
    /** Number of k-means clusters; taken from --centroids when given. */
    nClusters: z.coerce.number().int().positive().optional(),
    /** Duplicates are clips with cosine_sim_score >= 1 - eps; without eps the run stops after pairwise. */
    eps: z.coerce.number().min(0).max(2).optional(),
    /** NeMo kmeans_centroids.npy to skip fitting. */
    centroids: z.string().min(1).optional(),
    whichToKeep: z.enum(['hard', 'easy', 'random']).default('hard'),
    /** Metadata ranking, `col:asc|desc,...`; replaces whichToKeep, id ascending breaks ties. */
    ranking: z.preprocess(
      (v) => (typeof v === 'string' ? v.split(',').map((s) => s.trim()).filter(Boolean) : v),
      z.array(rankingColumn),
    ).default([]),
    metadataFields: stringList.default([]),
    distanceMetric: z.enum(['cosine', 'l2']).default('cosine'),
    idField: z.string().min(1).default('id'),
    embeddingField: z.string().min(1).default('embedding'),
    init: z.enum(['k-means++', 'k-means||', 'random']).default('k-means++'),
    /** k-means iterations (upper bound). */
    maxIter: z.coerce.number().int().positive().default(300),
    /** k-means tolerance, relative to the mean per-feature variance (scikit-learn/cuML). */
    tol: z.coerce.number().min(0).default(1e-4),
    seed: z.coerce.number().int().min(0).default(42),
    nInit: z.coerce.number().int().positive().default(1),
    /** Fraction of rows k-means is fitted on (all rows are assigned). */
    fitFraction: z.coerce.number().gt(0).max(1).default(1),
    /** Columns per pairwise block. */
    pairwiseBatchSize: z.coerce.number().int().positive().default(1024),
    backend: z.enum(['cpu', 'gpu', 'js']).default('cpu'),
    /**
     * Clusters a clip is compared in: 1 = its own only (NeMo semantics); 2 = also its second-nearest
     * centroid's cluster when that centroid is less than `probeMargin` farther (l2) than the nearest.
     */
    probe: z.coerce.number().int().min(1).max(2).default(1),
    /**
     * With probe 2: a clip is probed into its second cluster when l2_dist(second centroid) −
     * l2_dist(nearest) < this (units of the normalized embeddings; 0 probes nothing). See DEFAULT_PROBE_MARGIN.
     */
    probeMargin: z.coerce.number().min(0).default(DEFAULT_PROBE_MARGIN),
    /**
     * Continue the partial run a killed or failed run of the same output left (k-means,
     * assignment and finished clusters are reused); refused when its inputs or settings differ.
     */
    resume: z.preprocess((v) => (v === 'false' ? false : v === 'true' ? true : v), z.boolean()).default(false),
    /** Remove the output folder's previous contents first (NeMo's clear_output). */
    clearOutput: z.preprocess((v) => (v === 'false' ? false : v === 'true' ? true : v), z.boolean()).default(true),
    /** Normalized embeddings are kept in memory up to this many MiB, beyond it spilled to disk. */
    memoryBudgetMb: z.coerce.number().int().min(0).default(1024),
    /** Parquet decoder: duckdb (native, faster) or parquet-wasm. */
    reader: z.enum(['duckdb', 'parquet-wasm']).default('duckdb'),
    /** Rows per batch read from the input. */
    batchRows: z.coerce.number().int().positive().default(16384),
    /** Endpoint, region, path style and keys for s3:// inputs, centroids and output. */
    storageOptions: storageOptionsSchema.optional(),
  })
  .strict();

export type RunConfig = z.output<typeof runConfigSchema>;

/**
 * `semdedup replay`: history through the streaming topology. Shares the input, ranking and
 * kernel keys with `run`; centroids are required (streaming assigns to fixed centroids).
 */
export const replayConfigSchema = runConfigSchema
  .pick({
    input: true,
    output: true,
    eps: true,
    whichToKeep: true,
    ranking: true,
    metadataFields: true,
    distanceMetric: true,
    idField: true,
    embeddingField: true,
    seed: true,
    backend: true,
    clearOutput: true,
    batchRows: true,
    reader: true,
    storageOptions: true,
    probe: true,
    probeMargin: true,
  })
  .extend({
    /** Resident cluster states (embeddings) are kept under this many MiB; the rest is in the state's DuckDB file. */
    stateMemoryMb: z.coerce.number().positive().default(DEFAULT_STATE_MEMORY_MB),
    /** kmeans_centroids.npy, or a previous run's output folder holding one. */
    centroids: z.string().min(1),
    /** State folder that `semdedup stream` can continue from. */
    state: z.string().min(1).optional(),
    /** Clips per cluster buffer before it is folded into the cluster's state. */
    flushMaxRows: z.coerce.number().int().positive().default(4096),
    /** Publish duplicate verdicts to this Kafka topic as well. */
    outputTopic: z.string().min(1).optional(),
    /** Replay a Kafka topic from its first offset to the end offsets seen at start, instead of files. */
    fromTopic: z.string().min(1).optional(),
    brokers: stringList.optional(),
    /** Id type of JSON records read with --from-topic (Arrow records carry theirs). */
    idType: z.enum(['string', 'int64']).default('string'),
  })
  .extend({ input: z.preprocess((v) => (typeof v === 'string' ? [v] : v), z.array(z.string().min(1))).default([]) })
  .strict()
  .refine((c) => (c.input.length > 0) !== (c.fromTopic !== undefined), { message: 'give either --input or --from-topic (one of them)', path: ['input'] });

export type ReplayConfig = z.output<typeof replayConfigSchema>;

export function camelCaseKey(key: string): string {
  return key.replace(/[-_]([a-z])/g, (_, c: string) => c.toUpperCase());
}

function camelCaseKeys(obj: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(obj).map(([k, v]) => [camelCaseKey(k), v]));
}

/** Read a YAML or JSON config file into a plain object with camelCase keys. */
export function loadConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new InputError(`cannot read config file: ${(cause as Error).message}`, { cause, context: { file: path } });
  }
  let parsed: unknown;
  try {
    // yaml is loaded only when a config file is given.
    parsed = (createRequire(import.meta.url)('yaml') as typeof yamlModule).parse(text);
  } catch (cause) {
    throw new InputError(`config is not valid YAML/JSON: ${(cause as Error).message}`, { cause, context: { file: path } });
  }
  if (parsed === null || parsed === undefined) return {};
  if (typeof parsed !== 'object' || Array.isArray(parsed)) throw new InputError('config must be a mapping of keys to values', { context: { file: path } });
  return camelCaseKeys(parsed as Record<string, unknown>);
}

/** SEMDEDUP_N_CLUSTERS=50 → { nClusters: '50' } for the keys the schema knows. */
export function configFromEnv(keys: readonly string[], env: NodeJS.ProcessEnv = process.env): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of keys) {
    const name = `SEMDEDUP_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
    if (env[name] !== undefined) out[key] = env[name];
  }
  return out;
}

/** Validate merged settings; the error names each bad field in flag form. */
export function parseConfig<S extends z.ZodType>(schema: S, layers: Record<string, unknown>[], source = 'config'): z.output<S> {
  const merged: Record<string, unknown> = {};
  for (const layer of layers) for (const [k, v] of Object.entries(layer)) if (v !== undefined) merged[k] = v;
  const result = schema.safeParse(merged);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const field = issue.path.length ? issue.path.map((p) => (typeof p === 'string' ? p.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`) : `[${String(p)}]`)).join('.') : '';
    if (issue.code === 'unrecognized_keys') return `${field ? `${field}: ` : ''}unknown key(s) ${issue.keys.map((k) => k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)).join(', ')}`;
    return field ? `${field}: ${issue.message}` : issue.message;
  });
  throw new InputError(`invalid ${source}: ${problems.join('; ')}`, { context: { field: String(result.error.issues[0]?.path[0] ?? '') } });
}
