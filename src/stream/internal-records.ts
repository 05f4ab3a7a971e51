/**
 * Records of the internal by-cluster topic between the router and the dedup workers
 * (docs/SCALING.md). Each is an Arrow IPC stream (content-type
 * `application/vnd.apache.arrow.stream`) of clips of ONE cluster, keyed by the cluster id and
 * written to partition `cluster % partitions`, so a cluster lives in one partition. Columns: `id`,
 * `embedding` (unit length, float32 fixed-size list), the metadata fields, and the assignment —
 * `centroid` (int32), `l2_dist_to_cent`, `cosine_dist_to_cent` (float32). Encoding and decoding
 * are the Kafka clip records' own (`encodeArrowRows` via `clipMessagesArrow`,
 * `decodeKafkaRecords`): the assignment columns are carried as three more metadata columns.
 *
 * ```ts
 * const messages = routedClipMessages(clips, assignment, { partitions: 12 });
 * await sink.send(internalTopic, messages);
 * ```
 */
import { Float32, Int32 } from 'apache-arrow';
import type { CentroidAssignment } from '../assign/index.js';
import { InputError } from '../shared/errors.js';
import type { ClipBatch, MetadataValue, RawClipBatch } from '../shared/types.js';
import { clipMessagesArrow } from '../sinks/kafka/index.js';
import type { KafkaOutMessage } from '../sinks/kafka/index.js';
import type { KafkaDecodeOptions } from '../sources/kafka/index.js';

/** Column names of the assignment, as in NeMo's kmeans_results. */
export const ROUTED_COLUMNS = { centroid: 'centroid', l2: 'l2_dist_to_cent', cosine: 'cosine_dist_to_cent' } as const;
const ROUTED_NAMES: readonly string[] = Object.values(ROUTED_COLUMNS);

/** The internal topic's default name. */
export function defaultInternalTopic(inputTopic: string): string {
  return `${inputTopic}.by-cluster`;
}

/** The partition a cluster's clips go to (explicit, never the key hash: the mapping must be stable). */
export function partitionOfCluster(cluster: number, partitions: number): number {
  return cluster % partitions;
}

/**
 * Settings the scale-out roles cannot take: metadata fields named like the internal records'
 * own columns, and `--probe 2` (a probed clip would belong to two clusters, possibly in two
 * partitions: not routed that way yet).
 */
export function checkScaleOutConfig(config: { readonly metadataFields: readonly string[]; readonly probe?: number }): void {
  if ((config.probe ?? 1) !== 1) {
    throw new InputError('--probe 2 is not supported with --role router/worker yet (a probed clip is compared in two clusters, which may live in two partitions); use --role all', { context: { field: 'probe' } });
  }
  checkMetadataFieldsForScaleOut(config.metadataFields);
}

/** Metadata field names the internal records need for themselves. */
export function checkMetadataFieldsForScaleOut(metadataFields: readonly string[]): void {
  const clash = metadataFields.filter((f) => ROUTED_NAMES.includes(f) || f === 'id' || f === 'embedding');
  if (clash.length > 0) {
    throw new InputError(`metadata field(s) ${clash.join(', ')} clash with the columns of the internal by-cluster records; rename them for --role router/worker`, { context: { field: 'metadata-fields' } });
  }
}

/**
 * Normalized, assigned clips → internal messages: per cluster one Arrow record (split when over
 * ~900 kB), key = cluster id, partition = cluster % partitions.
 */
export function routedClipMessages(clips: ClipBatch, a: CentroidAssignment, options: { partitions: number }): KafkaOutMessage[] {
  const n = clips.ids.length;
  const { dim } = clips;
  const byCluster = new Map<number, number[]>();
  for (let i = 0; i < n; i++) {
    const c = a.centroid[i]!;
    let rows = byCluster.get(c);
    if (!rows) byCluster.set(c, (rows = []));
    rows.push(i);
  }
  const out: KafkaOutMessage[] = [];
  const names = Object.keys(clips.metadata);
  const metadataTypes = { [ROUTED_COLUMNS.centroid]: new Int32(), [ROUTED_COLUMNS.l2]: new Float32(), [ROUTED_COLUMNS.cosine]: new Float32() };
  for (const [cluster, rows] of [...byCluster].sort((x, y) => x[0] - y[0])) {
    const m = rows.length;
    const values = new Float32Array(m * dim);
    rows.forEach((row, j) => values.set(clips.embeddings.subarray(row * dim, (row + 1) * dim), j * dim));
    const metadata: Record<string, MetadataValue[]> = {};
    for (const name of names) metadata[name] = rows.map((row) => clips.metadata[name]![row] ?? null);
    metadata[ROUTED_COLUMNS.centroid] = rows.map(() => cluster);
    metadata[ROUTED_COLUMNS.l2] = rows.map((row) => a.l2DistToCent[row]!);
    metadata[ROUTED_COLUMNS.cosine] = rows.map((row) => a.cosineDistToCent[row]!);
    const raw: RawClipBatch = {
      ids: rows.map((row) => clips.ids[row]!),
      idType: clips.idType,
      values,
      offsets: Int32Array.from({ length: m + 1 }, (_, j) => j * dim),
      embeddingNull: new Uint8Array(m),
      metadata,
      origin: clips.origin,
    };
    const partition = partitionOfCluster(cluster, options.partitions);
    for (const msg of clipMessagesArrow(raw, { metadataTypes, maxRows: Number.MAX_SAFE_INTEGER })) {
      out.push({ ...msg, key: String(cluster), partition });
    }
  }
  return out;
}

/** How a worker decodes internal records: the user's metadata plus the assignment columns. */
export function routedDecodeOptions(options: { metadataFields: readonly string[]; idType: KafkaDecodeOptions['idType']; dim: number }): KafkaDecodeOptions {
  return { idField: 'id', embeddingField: 'embedding', metadataFields: [...options.metadataFields, ...ROUTED_NAMES], idType: options.idType, dim: options.dim };
}
