/**
 * Internal by-cluster records (router → worker): one Arrow record per cluster, key = cluster,
 * partition = cluster % partitions, decoded back with the assignment and metadata intact; the
 * worker's split into fresh clips, replays (same id, same cluster) and clashes (same id, other
 * cluster) without a broker.
 */
import { describe, expect, it } from 'vitest';
import type { CentroidAssignment } from '../../src/assign/index.js';
import { silentLogger } from '../../src/runtime/logging.js';
import type { ClipBatch } from '../../src/shared/types.js';
import { decodeKafkaRecords } from '../../src/sources/kafka/index.js';
import type { KafkaRecord } from '../../src/sources/kafka/index.js';
import { checkMetadataFieldsForScaleOut, routedClipMessages, routedDecodeOptions } from '../../src/stream/internal-records.js';
import { freshClips } from '../../src/stream/worker-partitions.js';
import type { PartitionState } from '../../src/stream/worker-partitions.js';

const dim = 4;
const clips: ClipBatch = {
  ids: ['a', 'b', 'c', 'd', 'e'],
  idType: 'string',
  dim,
  embeddings: Float32Array.from({ length: 5 * dim }, (_, i) => ((i * 7) % 5) / 5 + 0.1),
  metadata: { duration_s: [1.5, 2, null, 4, 5], video: ['v1', 'v2', 'v1', null, 'v3'] },
  origin: {},
};
const assignment: CentroidAssignment = {
  centroid: Int32Array.from([3, 1, 3, 4, 1]),
  l2DistToCent: Float32Array.from([0.1, 0.2, 0.3, 0.4, 0.5]),
  cosineDistToCent: Float32Array.from([0.01, 0.02, 0.03, 0.04, 0.05]),
};

function asRecords(partitions: number): KafkaRecord[] {
  return routedClipMessages(clips, assignment, { partitions }).map((m, i) => ({
    topic: 'clips.by-cluster',
    partition: m.partition!,
    offset: String(i),
    key: Buffer.from(String(m.key)),
    value: m.value as Buffer,
    headers: Object.fromEntries(Object.entries(m.headers ?? {}).map(([k, v]) => [k, Buffer.from(String(v))])),
    timestamp: '0',
  }));
}

const fakeState = (clusterOf: Map<string, number> = new Map()): PartitionState => ({ partition: 0, clusterOf } as unknown as PartitionState);

describe('internal by-cluster records', () => {
  it('one record per cluster, keyed by it, on partition cluster % partitions', () => {
    const messages = routedClipMessages(clips, assignment, { partitions: 3 });
    expect(messages.map((m) => [m.key, m.partition])).toEqual([['1', 1], ['3', 0], ['4', 1]]);
    expect(messages.every((m) => (m.headers as Record<string, string>)['content-type'] === 'application/vnd.apache.arrow.stream')).toBe(true);
  });

  it('decode back: ids, unit embeddings bit for bit, metadata, centroid and distances', () => {
    const decoded = decodeKafkaRecords(asRecords(3), routedDecodeOptions({ metadataFields: ['duration_s', 'video'], idType: 'string', dim }));
    const raw = decoded.raw;
    expect(raw.ids).toEqual(['b', 'e', 'a', 'c', 'd']);
    expect(raw.metadata.centroid).toEqual([1, 1, 3, 3, 4]);
    expect(raw.metadata.duration_s).toEqual([2, 5, 1.5, null, 4]);
    expect(raw.metadata.video).toEqual(['v2', 'v3', 'v1', 'v1', null]);
    expect(raw.metadata.l2_dist_to_cent![0]).toBeCloseTo(0.2, 6);
    const order = [1, 4, 0, 2, 3];
    order.forEach((src, j) => expect(Array.from(raw.values.subarray(j * dim, (j + 1) * dim))).toEqual(Array.from(clips.embeddings.subarray(src * dim, (src + 1) * dim))));
  });

  it('worker split: a known id in the same cluster is a replay, in another cluster a dead letter', () => {
    const decoded = decodeKafkaRecords(asRecords(1), routedDecodeOptions({ metadataFields: ['duration_s', 'video'], idType: 'string', dim }));
    const state = fakeState(new Map([['a', 3], ['d', 2]]));
    const fresh = freshClips(decoded, state, ['duration_s', 'video'], dim, silentLogger());
    expect(fresh.clips.ids).toEqual(['b', 'e', 'c']);
    expect(Array.from(fresh.clusters)).toEqual([1, 1, 3]);
    expect(fresh.replayed).toBe(1);
    expect(fresh.refused.map((r) => r.reason)).toEqual(['duplicate id d (already in cluster 2; this copy is in cluster 4)']);
    expect(fresh.clips.metadata).toEqual({ duration_s: [2, 5, null], video: ['v2', 'v3', 'v1'] });
  });

  it('refuses metadata fields named like the internal columns', () => {
    expect(() => checkMetadataFieldsForScaleOut(['centroid'])).toThrow(/clash/);
    expect(() => checkMetadataFieldsForScaleOut(['duration_s'])).not.toThrow();
  });
});
