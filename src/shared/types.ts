/** Shared value types passed between stages. Immutable by convention. */

/** Ids travel as their canonical string form; `idType` says how to compare and write them. */
export type IdType = 'string' | 'int64';

/**
 * A batch of clips as it moves through the core: ids, a row-major float32 embedding matrix
 * and optional metadata columns (plain arrays aligned with `ids`).
 */
export interface ClipBatch {
  readonly ids: string[];
  readonly idType: IdType;
  readonly dim: number;
  /** n × dim, row-major. Raw on decode, unit length after `normalizeEmbeddings`. */
  readonly embeddings: Float32Array;
  /** Metadata columns by name, each aligned with `ids`. */
  readonly metadata: Readonly<Record<string, MetadataValue[]>>;
  /** Where the rows came from, for error messages (file + first row, or topic/partition). */
  readonly origin: BatchOrigin;
}

export type MetadataValue = string | number | bigint | boolean | null;

export interface BatchOrigin {
  readonly file?: string;
  /** Row number (0-based, within `file`) of the batch's first row. */
  readonly firstRow?: number;
  readonly topic?: string;
  readonly partition?: number;
}

/** A row refused by validation, with the reason; written to rejected/ or the dead-letter topic. */
export interface RejectedRow {
  readonly id: string | null;
  readonly reason: string;
  readonly file?: string;
  readonly row?: number;
}

export type WhichToKeep = 'hard' | 'easy' | 'random';
export type DistanceMetric = 'cosine' | 'l2';

export interface RankingColumn {
  readonly column: string;
  readonly order: 'asc' | 'desc';
}

/** How clips of a cluster are ordered before pairwise; shared by batch (ORDER BY) and stream. */
export interface RankSpec {
  readonly whichToKeep: WhichToKeep;
  readonly distanceMetric: DistanceMetric;
  /** Metadata ranking; when non-empty it replaces whichToKeep (id ascending breaks ties). */
  readonly ranking: readonly RankingColumn[];
  /** Seed of the id hash used by `random`. */
  readonly seed: number;
}

/**
 * A batch as decoded from a source, before validation: ids may be null and each embedding has
 * its own length (Arrow list layout), so validation can refuse rows one by one.
 */
export interface RawClipBatch {
  readonly ids: (string | null)[];
  readonly idType: IdType;
  /** Concatenated embedding values of all rows, as float32. */
  readonly values: Float32Array;
  /** n + 1 offsets into `values`: row i is values[offsets[i] .. offsets[i+1]). */
  readonly offsets: Int32Array;
  /** 1 where the row's embedding is null. */
  readonly embeddingNull: Uint8Array;
  readonly metadata: Readonly<Record<string, MetadataValue[]>>;
  readonly origin: BatchOrigin;
  /**
   * Optional, aligned with `ids`: a decode problem of the row (e.g. a JSONL line that is not
   * valid JSON), or null. Validation must refuse a row whose entry is non-null, with that reason.
   */
  readonly rowErrors?: readonly (string | null)[];
  /**
   * Optional: hand `values` back to the reader for a later batch. Set only when the reader was
   * asked to reuse its buffers (`reuseValues`); the consumer calls it once it no longer reads
   * `values` or anything viewing them.
   */
  readonly release?: () => void;
}

/** Column names and metadata Arrow types of an input, fixed by its first file. */
export interface InputSchemaInfo {
  readonly idType: IdType;
  /** Metadata column name → Arrow type (apache-arrow `DataType`), used to write them back unchanged. */
  readonly metadataTypes: Readonly<Record<string, unknown>>;
}
