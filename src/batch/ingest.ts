import { mkdir } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import * as arrow from 'apache-arrow';
import { EmbeddingSpill } from '../buffer/embedding-spill.js';
import { rankHash } from '../rank/index.js';
import type { Logger } from '../runtime/logging.js';
import { InputError } from '../shared/errors.js';
import { readInputSchemaFor, resolveInputFiles } from '../sources/index.js';
import { writeParquetFile } from '../sinks/parquet/index.js';
import { writeParquetFast } from '../sinks/plain-parquet.js';
import { createValidationState, type RejectedClip } from '../validate/index.js';
import { forEachValidBatch } from '../validate/read-validated.js';
import { idColumn, metadataColumns } from './columns.js';
import type { BatchContext } from './context.js';

/** Work files DuckDB reads once in this run: no fsync (removed with the work folder, even after a crash). */
const SCRATCH = { durable: false } as const;

/**
 * Read every input as a stream of record batches, validate, normalize, and keep: embeddings in
 * memory within the budget or spilled to a raw float32 file (for k-means and pairwise), ids +
 * metadata in small Parquet parts (for DuckDB). Refused rows go to rejected/.
 */
export async function ingestInputs(ctx: BatchContext, log: Logger): Promise<void> {
  const { config } = ctx;
  ctx.files = await resolveInputFiles(config.input, config.storageOptions);
  log.info({ files: ctx.files.length }, 'reading inputs');
  const fieldOptions = { idField: config.idField, embeddingField: config.embeddingField, metadataFields: config.metadataFields, storage: config.storageOptions };
  // The run's database is open and idle while inputs are read: DuckDB checks and decodes on it.
  const connection = ctx.store?.connection;
  const schema = await readInputSchemaFor(ctx.files, { ...fieldOptions, reader: config.reader, connection });
  ctx.idType = schema.idType;
  ctx.metadataTypes = { ...schema.metadataTypes };
  const rowsDir = join(ctx.workDir, 'rows');
  await mkdir(rowsDir, { recursive: true });
  let spill: EmbeddingSpill | null = null;
  let part = 0;
  let rows = 0;
  ctx.progress.start('ingest', schema.rows ?? ctx.files.length);
  const openSpill = async (dim: number): Promise<EmbeddingSpill> =>
    (spill ??= await EmbeddingSpill.create({
      dim,
      path: join(ctx.workDir, 'embeddings.f32'),
      expectedRows: schema.rows,
      budgetBytes: config.memoryBudgetMb * 1024 * 1024,
    }));
  const restoreThreads = await raiseReadThreads(ctx);
  const rejected = await forEachValidBatch(
    ctx.files,
    {
      ...fieldOptions,
      batchRows: config.batchRows,
      schema,
      reader: config.reader,
      // onBatch copies the rows into the store (or they were written there): buffers reusable.
      reuseValues: true,
      connection,
      // Valid rows are normalized straight into the in-memory store (no copy per batch).
      destination: async (n, dim) => (dim === undefined ? null : (await openSpill(dim)).nextRows(n)),
    },
    createValidationState(schema.dim),
    async (ok) => {
      const n = ok.ids.length;
      await (await openSpill(ok.dim)).append(ok.embeddings);
      const rowIndex = new Int32Array(n);
      const hashes = new Float64Array(n);
      for (let i = 0; i < n; i++) {
        rowIndex[i] = rows + i;
        hashes[i] = rankHash(ok.ids[i]!, config.seed);
      }
      await writeParquetFast(join(rowsDir, `part-${String(part++).padStart(5, '0')}.parquet`), [
        { name: 'row', type: 'int32', values: rowIndex },
        idColumn('id', ok.ids, ok.idType),
        { name: 'rank_hash', type: 'float64', values: hashes },
        ...metadataColumns(ok.metadata, ctx.metadataTypes),
      ], SCRATCH);
      rows += n;
      ctx.dim = ok.dim;
    },
    (raw) => ctx.progress.increment(schema.rows !== undefined ? raw.ids.length : 0),
  ).finally(async () => {
    ctx.progress.stop();
    await restoreThreads();
  });
  const finished = spill as EmbeddingSpill | null;
  if (finished) {
    ctx.embeddings = await finished.finish();
    log.debug({ inMemory: finished.inMemory }, 'embeddings kept');
  }
  ctx.rows = rows;
  ctx.rejectedRows = rejected.length;
  await reportRejected(rejected, ctx.stagingDir, log);
  if (rows === 0) throw noValidRows(rejected);
  log.info({ rows, rejected: rejected.length, dim: ctx.dim }, 'inputs read');
}

/**
 * Raise the run database's DuckDB threads to the machine's parallelism for reading the inputs
 * (as the DuckDB source's private database had); returns what restores them.
 */
async function raiseReadThreads(ctx: BatchContext): Promise<() => Promise<void>> {
  const store = ctx.store;
  const nothing = async (): Promise<void> => undefined;
  if (!store || ctx.config.reader !== 'duckdb') return nothing;
  const want = Math.max(1, os.availableParallelism());
  const [row] = await store.rows("SELECT current_setting('threads') AS threads");
  const had = Number(row?.threads);
  if (!(had < want)) return nothing;
  await store.run(`SET threads = ${want}`);
  return async () => store.run(`SET threads = ${had}`);
}

/** Write rejected/ when rows were refused and log what kinds of problems they had. */
export async function reportRejected(rejected: readonly RejectedClip[], stagingDir: string, log: Logger): Promise<void> {
  if (rejected.length === 0) return;
  await writeRejected(join(stagingDir, 'rejected', 'part-00000.parquet'), rejected);
  const reasons = new Map<string, number>();
  for (const r of rejected) {
    const kind = r.reason.replace(/:.*$/, '');
    reasons.set(kind, (reasons.get(kind) ?? 0) + 1);
  }
  const first = rejected[0]!;
  log.warn({ rejected: rejected.length, reasons: Object.fromEntries(reasons), first: `${first.file ?? ''}: row ${first.row}: ${first.reason}` }, 'rows refused; see rejected/');
}

export function noValidRows(rejected: readonly RejectedClip[]): InputError {
  const first = rejected[0];
  return new InputError(
    first ? `all ${rejected.length} rows were refused (first: ${first.file ?? ''} row ${first.row}: ${first.reason})` : 'the input has no rows',
    { context: { file: first?.file ?? undefined } },
  );
}

/** rejected/: the refused rows whole (id, reason, where they came from, embedding, metadata as JSON). */
export async function writeRejected(path: string, rejected: readonly RejectedClip[]): Promise<void> {
  await mkdir(join(path, '..'), { recursive: true });
  await writeParquetFile(path, [
    { name: 'id', type: { arrow: new arrow.Utf8() }, values: rejected.map((r) => r.id) },
    { name: 'reason', type: 'utf8', values: rejected.map((r) => r.reason) },
    { name: 'source_file', type: { arrow: new arrow.Utf8() }, values: rejected.map((r) => r.file) },
    { name: 'source_row', type: { arrow: new arrow.Float64() }, values: rejected.map((r) => r.row) },
    {
      name: 'embedding',
      type: { arrow: new arrow.List(new arrow.Field('item', new arrow.Float32(), true)) },
      values: rejected.map((r) => (r.embedding ? Array.from(r.embedding) : null)),
    },
    {
      name: 'metadata_json',
      type: 'utf8',
      values: rejected.map((r) => JSON.stringify(r.metadata, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))),
    },
  ]);
}
