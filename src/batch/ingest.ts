import { mkdir, open } from 'node:fs/promises';
import { join } from 'node:path';
import * as arrow from 'apache-arrow';
import { concatMap, lastValueFrom, defaultIfEmpty } from 'rxjs';
import { rankHash } from '../rank/index.js';
import type { Logger } from '../runtime/logging.js';
import { InputError } from '../shared/errors.js';
import { readInputSchema, readRawBatches, resolveInputFiles } from '../sources/index.js';
import { writeParquetFile } from '../sinks/parquet/index.js';
import { createValidationState, normalizeEmbeddings, validateRawBatch, type RejectedClip } from '../validate/index.js';
import { idColumn, metadataColumns } from './columns.js';
import type { BatchContext } from './context.js';

/**
 * Read every input as a stream of record batches, validate, normalize, and spill: embeddings to
 * one raw float32 file (for k-means and pairwise), ids + metadata to small Parquet parts (for
 * DuckDB). Refused rows are collected for rejected/. Memory stays at one batch.
 */
export async function ingestInputs(ctx: BatchContext, log: Logger): Promise<void> {
  const { config } = ctx;
  ctx.files = await resolveInputFiles(config.input);
  log.info({ files: ctx.files.length }, 'reading inputs');
  const fieldOptions = { idField: config.idField, embeddingField: config.embeddingField, metadataFields: config.metadataFields };
  const schema = await readInputSchema(ctx.files, fieldOptions);
  ctx.idType = schema.idType;
  ctx.metadataTypes = { ...schema.metadataTypes };
  const state = createValidationState(schema.dim);
  const rejected: RejectedClip[] = [];
  const rowsDir = join(ctx.workDir, 'rows');
  await mkdir(rowsDir, { recursive: true });
  ctx.embeddingsPath = join(ctx.workDir, 'embeddings.f32');
  const spill = await open(ctx.embeddingsPath, 'w');
  let part = 0;
  let rows = 0;
  ctx.progress.start('ingest', ctx.files.length);
  let lastFile: string | undefined;
  try {
    await lastValueFrom(
      readRawBatches(ctx.files, { ...fieldOptions, batchRows: config.batchRows }).pipe(
        concatMap(async (raw) => {
          if (raw.origin.file !== lastFile) {
            if (lastFile !== undefined) ctx.progress.increment();
            lastFile = raw.origin.file;
          }
          const { ok, rejected: refused } = validateRawBatch(raw, state);
          rejected.push(...refused);
          const n = ok.ids.length;
          if (n === 0) return;
          normalizeEmbeddings(ok.embeddings as Float32Array, ok.dim);
          const bytes = ok.embeddings;
          await spill.write(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
          const rowIndex = new Int32Array(n);
          const hashes = new Float64Array(n);
          for (let i = 0; i < n; i++) {
            rowIndex[i] = rows + i;
            hashes[i] = rankHash(ok.ids[i]!, config.seed);
          }
          await writeParquetFile(join(rowsDir, `part-${String(part++).padStart(5, '0')}.parquet`), [
            { name: 'row', type: 'int32', values: rowIndex },
            idColumn('id', ok.ids, ok.idType),
            { name: 'rank_hash', type: 'float64', values: hashes },
            ...metadataColumns(ok.metadata, ctx.metadataTypes),
          ]);
          rows += n;
          ctx.dim = ok.dim;
        }),
        defaultIfEmpty(undefined),
      ),
    );
  } finally {
    await spill.close();
    ctx.progress.stop();
  }
  ctx.rows = rows;
  ctx.rejectedRows = rejected.length;
  if (rejected.length > 0) {
    await writeRejected(join(ctx.stagingDir, 'rejected', 'part-00000.parquet'), rejected);
    const reasons = new Map<string, number>();
    for (const r of rejected) {
      const kind = r.reason.replace(/:.*$/, '');
      reasons.set(kind, (reasons.get(kind) ?? 0) + 1);
    }
    log.warn({ rejected: rejected.length, reasons: Object.fromEntries(reasons), first: `${rejected[0]!.file ?? ''}: row ${rejected[0]!.row}: ${rejected[0]!.reason}` }, 'rows refused; see rejected/');
  }
  if (rows === 0) {
    const first = rejected[0];
    throw new InputError(
      rejected.length
        ? `all ${rejected.length} rows were refused (first: ${first!.file ?? ''} row ${first!.row}: ${first!.reason})`
        : 'the input has no rows',
      { context: { file: first?.file ?? undefined } },
    );
  }
  log.info({ rows, rejected: rejected.length, dim: ctx.dim }, 'inputs read');
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
