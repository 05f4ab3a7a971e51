import { centroidsChecksum } from '../assign/centroids.js';
import type { RankFields } from '../rank/index.js';
import type { IdType, RankSpec } from '../shared/types.js';
import { InputError } from '../shared/errors.js';
import type { MemberRecord } from '../state/cluster-state.js';
import { Store } from './index.js';

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

/**
 * Streaming state in DuckDB, keyed by cluster: every member with its rank fields, its embedding
 * as a little-endian float32 BLOB and its raw max; plus source positions. A checkpoint writes
 * touched members and positions in one transaction, so state and offsets never disagree.
 */
export class StateStore {
  readonly #store: Store;
  /** Ids already in `members`: a touched one only needs its raw max rewritten, not its embedding. */
  readonly #persisted: Set<string>;

  private constructor(store: Store, persisted: Set<string>) {
    this.#store = store;
    this.#persisted = persisted;
  }

  static async open(path: string): Promise<StateStore> {
    const store = await Store.open(path);
    await store.run(`CREATE TABLE IF NOT EXISTS members (
      centroid INTEGER NOT NULL, id VARCHAR PRIMARY KEY, cosine_dist_to_cent FLOAT, l2_dist_to_cent FLOAT,
      rank_hash DOUBLE, metadata VARCHAR, embedding BLOB NOT NULL, raw_score FLOAT, raw_max_id VARCHAR)`);
    await store.run('CREATE TABLE IF NOT EXISTS positions (source VARCHAR, partition INTEGER, next_offset VARCHAR, PRIMARY KEY (source, partition))');
    await store.run('CREATE TABLE IF NOT EXISTS identity (key VARCHAR PRIMARY KEY, value VARCHAR)');
    const persisted = new Set<string>();
    const reader = await store.connection.runAndReadAll('SELECT id FROM members');
    for (const id of reader.getColumnsJS()[0] ?? []) persisted.add(id as string);
    return new StateStore(store, persisted);
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
   * Persist touched members and source positions atomically. New members are inserted whole;
   * members already stored only change their raw max, so only that is updated (rewriting their
   * embeddings made checkpoints cost O(state) bytes: most touched members are old ones).
   */
  async checkpoint(members: readonly StoredMember[], positions: readonly SourcePosition[]): Promise<void> {
    const db = this.#store;
    const fresh = members.filter((m) => !this.#persisted.has(m.rank.id));
    const raised = members.filter((m) => this.#persisted.has(m.rank.id));
    await db.run('BEGIN TRANSACTION');
    try {
      if (fresh.length > 0) {
        await db.run('CREATE OR REPLACE TEMP TABLE members_in AS SELECT * FROM members LIMIT 0');
        const appender = await db.connection.createAppender('members_in', 'main', 'temp');
        for (const m of fresh) {
          appender.appendInteger(m.centroid);
          appender.appendVarchar(m.rank.id);
          appender.appendFloat(m.rank.cosineDistToCent);
          appender.appendFloat(m.rank.l2DistToCent);
          appender.appendDouble(m.rank.hash);
          appender.appendVarchar(JSON.stringify(m.rank.metadata, bigintSafe));
          appender.appendBlob(new Uint8Array(m.embedding.buffer, m.embedding.byteOffset, m.embedding.byteLength));
          appender.appendFloat(m.rawScore);
          if (m.rawMaxId === null) appender.appendNull();
          else appender.appendVarchar(m.rawMaxId);
          appender.endRow();
        }
        appender.closeSync();
        await db.run('INSERT INTO members SELECT * FROM members_in');
        await db.run('DROP TABLE members_in');
      }
      if (raised.length > 0) {
        await db.run('CREATE OR REPLACE TEMP TABLE members_raised (id VARCHAR, raw_score FLOAT, raw_max_id VARCHAR)');
        const appender = await db.connection.createAppender('members_raised', 'main', 'temp');
        for (const m of raised) {
          appender.appendVarchar(m.rank.id);
          appender.appendFloat(m.rawScore);
          if (m.rawMaxId === null) appender.appendNull();
          else appender.appendVarchar(m.rawMaxId);
          appender.endRow();
        }
        appender.closeSync();
        await db.run('UPDATE members SET raw_score = r.raw_score, raw_max_id = r.raw_max_id FROM members_raised r WHERE members.id = r.id');
        await db.run('DROP TABLE members_raised');
      }
      for (const p of positions) {
        await db.run(`INSERT OR REPLACE INTO positions VALUES ('${p.source.replace(/'/g, "''")}', ${p.partition}, '${p.nextOffset}')`);
      }
      await db.run('COMMIT');
    } catch (err) {
      await db.run('ROLLBACK').catch(() => {});
      throw err;
    }
    for (const m of fresh) this.#persisted.add(m.rank.id);
  }

  close(): void {
    this.#store.close();
  }
}
