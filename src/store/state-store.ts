import { centroidsChecksum } from '../assign/centroids.js';
import type { RankFields } from '../rank/index.js';
import type { IdType, RankSpec } from '../shared/types.js';
import { InputError } from '../shared/errors.js';
import duckdb from '@duckdb/node-bindings';
import { DuckDBDataChunk } from '@duckdb/node-api';
import type { DuckDBAppender } from '@duckdb/node-api';
import type { MemberChanges, MemberRecord } from '../state/cluster-state.js';
import { Store, sqlString } from './index.js';

/** A member of a cluster's state with its cluster id, as persisted. */
export interface StoredMember extends MemberRecord {
  readonly centroid: number;
}

/** Where a source resumes: next offset per topic partition (or per file for replay). */
export interface SourcePosition {
  readonly source: string;
  readonly partition: number;
  readonly nextOffset: string;
}

/** What a state folder was built with; a continuation (stream or replay) must agree. */
export interface StateIdentity {
  readonly dim: number;
  readonly clusters: number;
  readonly centroidsChecksum: string;
  readonly rankSpec: string;
  readonly idType: string;
  /** Which verdicts were published depends on eps, so the changelog only continues with the same one. */
  readonly eps: string;
}

/** The identity of a state built with these centroids, ranking, id type and eps. */
export function stateIdentity(centroids: Float32Array, dim: number, rankSpec: RankSpec, idType: IdType, eps: number): StateIdentity {
  return { dim, clusters: centroids.length / dim, centroidsChecksum: centroidsChecksum(centroids), rankSpec: JSON.stringify(rankSpec), idType, eps: String(eps) };
}

const bigintSafe = (_k: string, v: unknown) => (typeof v === 'bigint' ? { $bigint: v.toString() } : v);
const bigintRevive = (_k: string, v: unknown) => (v && typeof v === 'object' && '$bigint' in v ? BigInt((v as { $bigint: string }).$bigint) : v);

/** Row group size of state files: see `Store.open` (checkpoints stay O(appended rows)). */
const STATE_ROW_GROUP_SIZE = 2048;

/**
 * Streaming state in DuckDB, keyed by cluster: every member with its rank fields, its embedding
 * as a little-endian float32 BLOB and its raw max; plus source positions. A checkpoint writes
 * changed members and positions in one transaction, so state and offsets never disagree.
 */
export class StateStore {
  readonly #store: Store;

  private constructor(store: Store) {
    this.#store = store;
  }

  static async open(path: string): Promise<StateStore> {
    const store = await Store.open(path, { rowGroupSize: STATE_ROW_GROUP_SIZE });
    // Embeddings are incompressible floats: DuckDB's string compression analysis (FSST,
    // dictionary) at every checkpoint cost more than the rest of the write.
    await store.run(`CREATE TABLE IF NOT EXISTS members (
      centroid INTEGER NOT NULL, id VARCHAR PRIMARY KEY, cosine_dist_to_cent FLOAT, l2_dist_to_cent FLOAT,
      rank_hash DOUBLE, metadata VARCHAR, embedding BLOB USING COMPRESSION uncompressed NOT NULL, raw_score FLOAT, raw_max_id VARCHAR)`);
    await store.run('CREATE TABLE IF NOT EXISTS positions (source VARCHAR, partition INTEGER, next_offset VARCHAR, PRIMARY KEY (source, partition))');
    await store.run('CREATE TABLE IF NOT EXISTS identity (key VARCHAR PRIMARY KEY, value VARCHAR)');
    await store.run('CREATE TEMP TABLE members_raised (id VARCHAR, raw_score FLOAT, raw_max_id VARCHAR)');
    return new StateStore(store);
  }

  /** Record the identity on first use; refuse a state built with other centroids or ranking. */
  async checkIdentity(identity: StateIdentity, path: string): Promise<void> {
    const rows = await this.#store.rows('SELECT key, value FROM identity');
    if (rows.length === 0) {
      for (const [key, value] of Object.entries(identity)) await this.#store.run(`INSERT INTO identity VALUES ('${key}', '${String(value).replace(/'/g, "''")}')`);
      return;
    }
    const stored = Object.fromEntries(rows.map((r) => [r.key as string, r.value as string]));
    for (const [key, value] of Object.entries(identity)) {
      if (stored[key] !== String(value)) {
        throw new InputError(`state was built with ${key} = ${stored[key]}, this run has ${String(value)}; use a new --state folder`, { context: { file: path, field: key } });
      }
    }
  }

  async loadMembers(): Promise<StoredMember[]> {
    const reader = await this.#store.connection.runAndReadAll('SELECT * FROM members');
    const cols = reader.getColumnsJS() as unknown[][];
    const names = reader.columnNames();
    if (cols.length < names.length) return []; // an empty table yields no column arrays
    const col = (n: string) => cols[names.indexOf(n)]!;
    const [centroid, id, cos, l2, hash, meta, emb, raw, rawMax] = ['centroid', 'id', 'cosine_dist_to_cent', 'l2_dist_to_cent', 'rank_hash', 'metadata', 'embedding', 'raw_score', 'raw_max_id'].map(col);
    return id!.map((_, i) => {
      const bytes = emb![i] as Uint8Array;
      const embedding = new Float32Array(bytes.byteLength / 4);
      new Uint8Array(embedding.buffer).set(bytes);
      const rank: RankFields = {
        id: id![i] as string,
        cosineDistToCent: cos![i] as number,
        l2DistToCent: l2![i] as number,
        hash: hash![i] as number,
        metadata: JSON.parse(meta![i] as string, bigintRevive),
      };
      return { centroid: centroid![i] as number, rank, embedding, rawScore: raw![i] as number, rawMaxId: (rawMax![i] as string | null) ?? null };
    });
  }

  async loadPositions(): Promise<SourcePosition[]> {
    const rows = await this.#store.rows('SELECT source, partition, next_offset FROM positions');
    return rows.map((r) => ({ source: r.source as string, partition: r.partition as number, nextOffset: r.next_offset as string }));
  }

  /**
   * Persist changed members and source positions atomically. New members are inserted whole;
   * stored members only change their raw max, so only that is updated (rewriting their
   * embeddings made checkpoints cost O(state) bytes: most changed members are old ones).
   * Rows go in as DuckDB data chunks (bulk copies per column, one call per string), appended
   * inside the transaction.
   */
  async checkpoint(changes: MemberChanges, positions: readonly SourcePosition[]): Promise<void> {
    const db = this.#store;
    await db.run('BEGIN TRANSACTION');
    try {
      // Appends are synchronous and join the open transaction.
      if (changes.newRanks.length > 0) {
        const appender = await db.connection.createAppender('members', 'main', db.catalog);
        try {
          appendNewMembers(appender, changes);
          appender.flushSync();
        } finally {
          appender.closeSync();
        }
      }
      // The rest in one round trip: at a checkpoint every 100 ms each statement's trip through
      // the driver's thread pool is a visible part of the verdict latency.
      const statements: string[] = [];
      if (changes.raisedIds.length > 0) {
        // A temp table kept for the connection's life, emptied in the same transaction.
        const appender = await db.connection.createAppender('members_raised', 'main', 'temp');
        try {
          appendRaisedMembers(appender, changes);
          appender.flushSync();
        } finally {
          appender.closeSync();
        }
        statements.push('UPDATE members SET raw_score = r.raw_score, raw_max_id = r.raw_max_id FROM temp.main.members_raised r WHERE members.id = r.id');
        statements.push('DELETE FROM temp.main.members_raised');
      }
      if (positions.length > 0) {
        statements.push(`INSERT OR REPLACE INTO positions VALUES ${positions.map((p) => `(${sqlString(p.source)}, ${p.partition}, ${sqlString(p.nextOffset)})`).join(', ')}`);
      }
      statements.push('COMMIT');
      await db.run(statements.join(';\n'));
    } catch (err) {
      await db.run('ROLLBACK').catch(() => {});
      throw err;
    }
  }

  close(): void {
    this.#store.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Data chunks (little-endian hosts only, as the DuckDB Parquet sink)

const T = duckdb.Type;
const NEW_MEMBER_TYPES = [T.INTEGER, T.VARCHAR, T.FLOAT, T.FLOAT, T.DOUBLE, T.VARCHAR, T.BLOB, T.FLOAT, T.VARCHAR];
const RAISED_TYPES = [T.VARCHAR, T.FLOAT, T.VARCHAR];

/** Rows [start, end) of `values` into a numeric vector, as one bulk copy. */
function copyNumbers(vector: duckdb.Vector, values: ArrayLike<number>, start: number, end: number, Typed: Float32ArrayConstructor | Float64ArrayConstructor | Int32ArrayConstructor): void {
  const out = new Typed(end - start);
  for (let i = start; i < end; i++) out[i - start] = values[i]!;
  duckdb.copy_data_to_vector(vector, 0, out.buffer as ArrayBuffer, 0, out.byteLength);
}

const encoder = new TextEncoder();

/** Rows [start, end) of `values` into a VARCHAR vector; nulls marked invalid. */
function copyStrings(vector: duckdb.Vector, values: readonly (string | null)[], start: number, end: number): void {
  let validity: Uint8Array | null = null;
  for (let i = start; i < end; i++) {
    const s = values[i];
    if (s === null || s === undefined) {
      if (!validity) {
        validity = new Uint8Array(Math.ceil((end - start) / 64) * 8).fill(0xff);
      }
      validity[(i - start) >> 3]! &= ~(1 << ((i - start) & 7));
      continue;
    }
    // The plain assign takes a C string, which would stop at a NUL.
    if (s.includes('\0')) duckdb.vector_assign_string_element_len(vector, i - start, encoder.encode(s));
    else duckdb.vector_assign_string_element(vector, i - start, s);
  }
  if (validity) {
    duckdb.vector_ensure_validity_writable(vector);
    duckdb.copy_data_to_vector_validity(vector, 0, validity.buffer as ArrayBuffer, 0, validity.byteLength);
  }
}

function appendChunks(appender: DuckDBAppender, types: readonly duckdb.Type[], rows: number, fill: (vector: (column: number) => duckdb.Vector, start: number, end: number) => void): void {
  const capacity = duckdb.vector_size();
  const logical = types.map((t) => duckdb.create_logical_type(t));
  for (let start = 0; start < rows; start += capacity) {
    const end = Math.min(rows, start + capacity);
    const chunk = duckdb.create_data_chunk(logical);
    fill((column) => duckdb.data_chunk_get_vector(chunk, column), start, end);
    duckdb.data_chunk_set_size(chunk, end - start);
    appender.appendDataChunk(new DuckDBDataChunk(chunk));
  }
}

function appendNewMembers(appender: DuckDBAppender, c: MemberChanges): void {
  const ranks = c.newRanks;
  const ids = ranks.map((r) => r.id);
  appendChunks(appender, NEW_MEMBER_TYPES, ranks.length, (vector, start, end) => {
    copyNumbers(vector(0), c.newCentroid, start, end, Int32Array);
    copyStrings(vector(1), ids, start, end);
    const cos = new Float32Array(end - start);
    const l2 = new Float32Array(end - start);
    const hash = new Float64Array(end - start);
    const meta: string[] = new Array(end - start);
    for (let i = start; i < end; i++) {
      const r = ranks[i]!;
      cos[i - start] = r.cosineDistToCent;
      l2[i - start] = r.l2DistToCent;
      hash[i - start] = r.hash;
      meta[i - start] = JSON.stringify(r.metadata, bigintSafe);
    }
    duckdb.copy_data_to_vector(vector(2), 0, cos.buffer, 0, cos.byteLength);
    duckdb.copy_data_to_vector(vector(3), 0, l2.buffer, 0, l2.byteLength);
    duckdb.copy_data_to_vector(vector(4), 0, hash.buffer, 0, hash.byteLength);
    copyStrings(vector(5), meta, 0, end - start);
    const emb = vector(6);
    for (let i = start; i < end; i++) {
      const e = c.newEmbeddings[i]!;
      duckdb.vector_assign_string_element_len(emb, i - start, new Uint8Array(e.buffer, e.byteOffset, e.byteLength));
    }
    copyNumbers(vector(7), c.newRawScore, start, end, Float32Array);
    copyStrings(vector(8), c.newRawMaxId, start, end);
  });
}

function appendRaisedMembers(appender: DuckDBAppender, c: MemberChanges): void {
  appendChunks(appender, RAISED_TYPES, c.raisedIds.length, (vector, start, end) => {
    copyStrings(vector(0), c.raisedIds, start, end);
    copyNumbers(vector(1), c.raisedRawScore, start, end, Float32Array);
    copyStrings(vector(2), c.raisedRawMaxId, start, end);
  });
}
