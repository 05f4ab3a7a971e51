import { z } from 'zod';
import { InputError } from './errors.js';
import { DEFAULT_PROBE_MARGIN, DEFAULT_STATE_MEMORY_MB, rankingColumn, stringList } from './config.js';

/**
 * Settings of `semdedup stream` and `semdedup produce`, in the style of `runConfigSchema`:
 * camelCase keys, defaults and units per field; config files may use kebab- or snake_case;
 * precedence defaults < config file < SEMDEDUP_* env < flags. Kafka credentials come from the
 * config file or KAFKA_* env vars only (never flags, which other users can read in `ps`), and are
 * never logged (`redactStreamConfig`).
 */
const flag = z.preprocess((v) => (v === 'false' || v === '0' ? false : v === 'true' || v === '1' ? true : v), z.boolean());

const kafkaConnection = {
  /** Bootstrap brokers, `host:port[,host:port...]`. */
  brokers: stringList.pipe(z.array(z.string().regex(/^[^\s:]+:\d+$/, 'expected host:port')).min(1, 'at least one broker is required')),
  clientId: z.string().min(1).default('semdedup'),
  /** TLS to the brokers (Node's default CAs unless sslCaFile is given). */
  ssl: flag.default(false),
  /** PEM file of the CA(s) to trust; implies ssl. */
  sslCaFile: z.string().min(1).optional(),
  saslMechanism: z.enum(['plain', 'scram-sha-256', 'scram-sha-512']).optional(),
  /** SASL user and password: config file or KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD. */
  saslUsername: z.string().min(1).optional(),
  saslPassword: z.string().min(1).optional(),
  /**
   * How long a Kafka write (verdicts, dead letters) or offset commit keeps retrying a transient
   * failure — broker down or restarting, leader moving — before the command stops with the
   * error (milliseconds; each retry is logged).
   */
  kafkaRetryWindowMs: z.coerce.number().int().min(0).default(120_000),
};

export const streamConfigSchema = z
  .object({
    ...kafkaConnection,
    /** Topic of clip records (JSON or Arrow IPC values). */
    inputTopic: z.string().min(1),
    /** Topic of duplicate verdicts (keyed changelog); created compacted when missing. */
    outputTopic: z.string().min(1),
    /** Consumer group. */
    group: z.string().min(1),
    /** Refused records go here; default `<input-topic>.dlq`. */
    deadLetterTopic: z.string().min(1).optional(),
    /** NeMo kmeans_centroids.npy, or a `semdedup run` output folder holding one. */
    centroids: z.string().min(1),
    /** State folder (holds state.duckdb); reusing it continues the previous run. */
    state: z.string().min(1),
    /** Duplicates are clips with cosine_sim_score >= 1 - eps. */
    eps: z.coerce.number().min(0).max(2).default(0.01),
    whichToKeep: z.enum(['hard', 'easy', 'random']).default('hard'),
    ranking: z.preprocess(
      (v) => (typeof v === 'string' ? v.split(',').map((s) => s.trim()).filter(Boolean) : v),
      z.array(rankingColumn),
    ).default([]),
    /** Record fields carried with each clip (and usable by --ranking). */
    metadataFields: stringList.default([]),
    distanceMetric: z.enum(['cosine', 'l2']).default('cosine'),
    seed: z.coerce.number().int().min(0).default(42),
    idField: z.string().min(1).default('id'),
    embeddingField: z.string().min(1).default('embedding'),
    /** JSON ids must be strings (`string`) or integers (`int64`); fixes id order for ranking. */
    idType: z.enum(['string', 'int64']).default('string'),
    /** Consume up to the end offsets seen at start, checkpoint, commit, exit 0. */
    stopAtEnd: flag.default(false),
    /**
     * Records larger than this are refused (dead letter, reason naming both sizes) before they
     * are decoded (bytes). The dead letter then carries no value: see `value-omitted`.
     */
    maxRecordBytes: z.coerce.number().int().positive().default(8 << 20),
    /** Checkpoint when this many rows wait (rows). */
    flushMaxRows: z.coerce.number().int().positive().default(4096),
    /** Checkpoint when the oldest waiting row is this old (milliseconds). */
    flushMaxMs: z.coerce.number().int().min(1).default(100),
    /** Pause the consumer while more rows than this wait for a checkpoint (rows; default 4 × flush-max-rows). */
    maxBufferedRows: z.coerce.number().int().positive().optional(),
    /** Prometheus /metrics and /healthz port; 0 turns the server off. */
    metricsPort: z.coerce.number().int().min(0).max(65535).default(9464),
    metricsHost: z.string().min(1).default('127.0.0.1'),
    backend: z.enum(['cpu', 'gpu', 'js']).default('cpu'),
    /** Compared sets per clip: 1 = own cluster (NeMo); 2 = also the second-nearest within probeMargin (as `run --probe 2`). */
    probe: z.coerce.number().int().min(1).max(2).default(1),
    /** With probe 2: l2 margin to the second-nearest centroid (normalized units; 0 probes nothing). */
    probeMargin: z.coerce.number().min(0).default(DEFAULT_PROBE_MARGIN),
    /** Resident cluster states (embeddings) are kept under this many MiB; the rest is served from state.duckdb. */
    stateMemoryMb: z.coerce.number().positive().default(DEFAULT_STATE_MEMORY_MB),
    /** Partitions of the output topic when it has to be created (default: the input's). */
    outputPartitions: z.coerce.number().int().positive().optional(),
    /** Scale-out (docs/SCALING.md): `all` = one process does both stages; `router` / `worker` = one stage. */
    role: z.enum(['all', 'router', 'worker']).default('all'),
    /** Partitions of the internal by-cluster topic when the router creates it (default: min(clusters, 16)). */
    partitions: z.coerce.number().int().positive().optional(),
    /** The internal topic between router and workers (default `<input-topic>.by-cluster`). */
    internalTopic: z.string().min(1).optional(),
    /** Consumer-group session timeout (ms): how soon a dead worker's partitions move to the others. */
    sessionTimeoutMs: z.coerce.number().int().min(1000).default(30000),
  })
  .strict()
  .superRefine((c, ctx) => {
    for (const { column } of c.ranking) {
      if (!c.metadataFields.includes(column)) {
        ctx.addIssue({ code: 'custom', path: ['ranking'], message: `ranking column "${column}" is not among --metadata-fields; add it there` });
      }
    }
    if ((c.saslUsername === undefined) !== (c.saslPassword === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['saslUsername'], message: 'SASL needs both a username and a password' });
    }
  });

export type StreamConfig = z.output<typeof streamConfigSchema>;

export const produceConfigSchema = z
  .object({
    ...kafkaConnection,
    /** Parquet/JSONL files, folders or globs. */
    input: z.preprocess((v) => (typeof v === 'string' ? [v] : v), z.array(z.string().min(1)).min(1, 'at least one input is required')),
    topic: z.string().min(1),
    format: z.enum(['json', 'arrow']).default('json'),
    /** Partitions when the topic has to be created. */
    partitions: z.coerce.number().int().positive().default(4),
    /** Rows read per batch; with arrow also the rows per message at most (messages stay under ~900 kB). */
    batchRows: z.coerce.number().int().positive().default(1000),
    idField: z.string().min(1).default('id'),
    embeddingField: z.string().min(1).default('embedding'),
    metadataFields: stringList.default([]),
  })
  .strict();

export type ProduceConfig = z.output<typeof produceConfigSchema>;

type KafkaConnectionSettings = Pick<StreamConfig, 'brokers' | 'clientId' | 'ssl' | 'sslCaFile' | 'saslMechanism' | 'saslUsername' | 'saslPassword'> & { kafkaRetryWindowMs?: number };

/** Kafka credentials from the environment (KAFKA_SASL_USERNAME, ...), as config keys. */
export function kafkaSettingsFromEnv(env: NodeJS.ProcessEnv = process.env): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (env.KAFKA_SASL_MECHANISM) out.saslMechanism = env.KAFKA_SASL_MECHANISM.toLowerCase();
  if (env.KAFKA_SASL_USERNAME) out.saslUsername = env.KAFKA_SASL_USERNAME;
  if (env.KAFKA_SASL_PASSWORD) out.saslPassword = env.KAFKA_SASL_PASSWORD;
  if (env.KAFKA_SSL) out.ssl = env.KAFKA_SSL;
  if (env.KAFKA_SSL_CA_FILE) out.sslCaFile = env.KAFKA_SSL_CA_FILE;
  return out;
}

/** The connection settings of `createKafkaClient` (credentials included: do not log the result). */
export async function kafkaConnectionOf(c: KafkaConnectionSettings): Promise<{ brokers: string[]; clientId: string; retryWindowMs?: number; ssl?: boolean | { ca: string }; sasl?: { mechanism: 'plain' | 'scram-sha-256' | 'scram-sha-512'; username: string; password: string } }> {
  let ssl: boolean | { ca: string } | undefined = c.ssl ? true : undefined;
  if (c.sslCaFile) {
    const { readFile } = await import('node:fs/promises');
    try {
      ssl = { ca: await readFile(c.sslCaFile, 'utf8') };
    } catch (cause) {
      throw new InputError(`cannot read the CA file: ${(cause as Error).message}`, { cause, context: { file: c.sslCaFile, field: 'ssl-ca-file' } });
    }
  }
  const sasl = c.saslUsername && c.saslPassword ? { mechanism: c.saslMechanism ?? 'scram-sha-512', username: c.saslUsername, password: c.saslPassword } : undefined;
  return { brokers: [...c.brokers], clientId: c.clientId, ...(c.kafkaRetryWindowMs === undefined ? {} : { retryWindowMs: c.kafkaRetryWindowMs }), ...(ssl === undefined ? {} : { ssl }), ...(sasl ? { sasl } : {}) };
}

const SECRET_KEYS = new Set(['saslUsername', 'saslPassword']);

/** The config with credentials replaced, for logs and summaries. */
export function redactStreamConfig<T extends object>(c: T): T {
  return Object.fromEntries(Object.entries(c).map(([k, v]) => [k, SECRET_KEYS.has(k) && v !== undefined ? '[redacted]' : v])) as T;
}
