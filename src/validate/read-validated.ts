import type { DuckDBConnection } from '@duckdb/node-api';
import { concatMap, defaultIfEmpty, lastValueFrom, Subject } from 'rxjs';
import { readRawBatches, type InputSchema } from '../sources/index.js';
import type { ClipBatch, RawClipBatch } from '../shared/types.js';
import { validateRawBatch, type RejectedClip, type ValidationState } from './index.js';

export interface ReadValidatedOptions {
  readonly idField: string;
  readonly embeddingField: string;
  readonly metadataFields: readonly string[];
  readonly batchRows: number;
  readonly schema: InputSchema;
  readonly reader?: 'duckdb' | 'parquet-wasm';
  /** Normalize embeddings to unit length (default true). False for data a run already normalized. */
  readonly normalize?: boolean;
  /**
   * Where the valid rows of a batch of `rows` rows should be written (room for `rows` × `dim`
   * floats), or null for a fresh array; `dim` is undefined until the first valid row fixed it.
   * Lets the batch ingest fill its embedding store directly instead of copying each batch.
   */
  readonly destination?: (rows: number, dim: number | undefined) => Promise<Float32Array | null>;
  /**
   * The caller keeps nothing that views `batch.embeddings` once `onBatch` has returned (it
   * copies them or they live in `destination`): the reader may then reuse the decode buffers.
   */
  readonly reuseValues?: boolean;
  /** DuckDB reader: the connection to read on (see `ReadRawBatchesOptions.connection`). */
  readonly connection?: DuckDBConnection;
}

/**
 * Read files as record batches, validate and normalize each, and hand valid clips to `onBatch`
 * one batch at a time (pull-based: the reader waits for `onBatch` to finish). Returns the
 * refused rows; `onRaw` sees every decoded batch (progress).
 */
export async function forEachValidBatch(
  files: readonly string[],
  options: ReadValidatedOptions,
  state: ValidationState,
  onBatch: (batch: ClipBatch) => Promise<void>,
  onRaw?: (raw: RawClipBatch) => void,
): Promise<RejectedClip[]> {
  const rejected: RejectedClip[] = [];
  const demand = new Subject<void>();
  await lastValueFrom(
    readRawBatches(files, { ...options, demand, initialDemand: 2 }).pipe(
      concatMap(async (raw) => {
        onRaw?.(raw);
        // Each decoded batch is fresh memory, so valid rows are normalized in place (or written
        // normalized to the destination). Re-normalizing a float32 unit vector can move its last
        // bits: skipped when asked.
        const into = (await options.destination?.(raw.ids.length, state.dim)) ?? undefined;
        const { ok, rejected: refused } = validateRawBatch(raw, state, { ownsValues: true, normalize: options.normalize !== false, into });
        rejected.push(...refused);
        if (ok.ids.length > 0) await onBatch(ok);
        if (options.reuseValues) raw.release?.();
        demand.next();
      }),
      defaultIfEmpty(undefined),
    ),
  );
  return rejected;
}
