import { join } from 'node:path';
import { idColumn, metadataColumns } from '../batch/columns.js';
import type { IdType, MetadataValue } from '../shared/types.js';
import { writeParquetFile, type ColumnSpec } from './parquet/index.js';

/** Writes one Parquet file from columns: `writeParquetFile` (parquet-wasm) unless a caller passes another (e.g. through DuckDB). */
export type ParquetFileWriter = (path: string, columns: readonly ColumnSpec[]) => Promise<unknown>;

/** One cluster's clips in rank order, as NeMo's kmeans_results holds them. */
export interface ClusterClips {
  readonly centroid: number;
  readonly ids: readonly string[];
  /** n × dim normalized embeddings. */
  readonly embeddings: Float32Array;
  readonly dim: number;
  readonly metadata: Readonly<Record<string, MetadataValue[]>>;
  readonly l2DistToCent: Float32Array;
  readonly cosineDistToCent: Float32Array;
}

export interface OutputTypes {
  readonly idType: IdType;
  readonly metadataTypes: Readonly<Record<string, unknown>>;
}

/** kmeans_results/centroid=K/part-00000.parquet: id, embedding, metadata, centroid, distances. */
export async function writeKmeansResults(dir: string, clips: ClusterClips, types: OutputTypes, write: ParquetFileWriter = writeParquetFile): Promise<void> {
  await write(join(dir, 'kmeans_results', `centroid=${clips.centroid}`, 'part-00000.parquet'), [
    idColumn('id', clips.ids, types.idType),
    { name: 'embedding', type: 'fixed-list-float32', values: clips.embeddings, listSize: clips.dim },
    ...metadataColumns(clips.metadata, types.metadataTypes),
    { name: 'centroid', type: 'int32', values: new Int32Array(clips.ids.length).fill(clips.centroid) },
    { name: 'l2_dist_to_cent', type: 'float32', values: clips.l2DistToCent },
    { name: 'cosine_dist_to_cent', type: 'float32', values: clips.cosineDistToCent },
  ]);
}

/** pairwise_results/cluster_K.parquet: id, max_id, cosine_sim_score (rank order). */
export async function writePairwiseResults(
  dir: string,
  centroid: number,
  ids: readonly string[],
  maxIds: readonly string[],
  scores: Float32Array,
  types: OutputTypes,
  write: ParquetFileWriter = writeParquetFile,
): Promise<void> {
  await write(join(dir, 'pairwise_results', `cluster_${centroid}.parquet`), [
    idColumn('id', ids, types.idType),
    idColumn('max_id', maxIds, types.idType),
    { name: 'cosine_sim_score', type: 'float32', values: scores },
  ]);
}
