/**
 * The state store and the engine's memory budget: a pre-multi-probe state file is migrated to
 * (centroid, id) keys; with `stateMemoryMb` the resident cluster states stay under the budget
 * after every checkpoint while states are evicted and reloaded (their arrays reused, never while a
 * checkpoint write still reads them), and the verdicts equal an unbudgeted engine's.
 */
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { describe, expect, it } from 'vitest';
import { createJsKernel } from '../../src/kernels/index.js';
import type { ClipBatch, RankSpec } from '../../src/shared/types.js';
import { DedupEngine, type DedupEngineOptions } from '../../src/state/dedup-engine.js';
import type { Verdict } from '../../src/state/cluster-state.js';
import { SlotArrayPool, allocateSlotArrays } from '../../src/state/slot-array-pool.js';
import { StateStore, stateIdentity } from '../../src/store/state-store.js';
import { gaussian, prng, tempDir } from '../helpers/fixtures.js';

const spec: RankSpec = { whichToKeep: 'hard', distanceMetric: 'cosine', ranking: [], seed: 42 };

function unit(v: Float32Array): Float32Array {
  let s = 0;
  for (const x of v) s += x * x;
  return v.map((x) => x / Math.sqrt(s));
}

/** n clips around k centers (a fifth exact copies), in batches of `batch`. */
function makeBatches(n: number, dim: number, centers: Float32Array[], batch: number, seed: number): ClipBatch[] {
  const rand = prng(seed);
  const rows: Float32Array[] = [];
  for (let i = 0; i < n; i++) {
    if (i > 3 && rand() < 0.2) rows.push(rows[Math.floor(rand() * rows.length)]!.slice());
    else {
      const c = centers[Math.floor(rand() * centers.length)]!;
      rows.push(unit(c.map((x) => x + 0.4 * gaussian(rand))));
    }
  }
  const out: ClipBatch[] = [];
  for (let i = 0; i < n; i += batch) {
    const part = rows.slice(i, i + batch);
    const embeddings = new Float32Array(part.length * dim);
    part.forEach((r, j) => embeddings.set(r, j * dim));
    out.push({ ids: part.map((_, j) => `clip-${String(i + j).padStart(5, '0')}`), idType: 'string', embeddings, dim, metadata: {}, origin: {} });
  }
  return out;
}

async function collect(engine: DedupEngine): Promise<Map<string, Verdict>> {
  const out = new Map<string, Verdict>();
  for await (const chunk of engine.storedVerdicts()) for (const v of chunk) out.set(v.id, v);
  return out;
}

describe('state memory budget', () => {
  const dim = 16;
  const rand = prng(3);
  const centers = Array.from({ length: 8 }, () => Float32Array.from({ length: dim }, () => gaussian(rand)));
  const centroids = Float32Array.from(centers.flatMap((c) => [...unit(c)].map((x) => x * 0.8)));

  it.each([1, 2])('--probe %i: resident bytes stay under the budget after each checkpoint; verdicts equal the unbudgeted ones', async (probe) => {
    const dir = tempDir('semdedup-budget-');
    const options: DedupEngineOptions = { centroids, dim, rankSpec: spec, idType: 'string', kernel: createJsKernel(), eps: 0.05, flushMaxRows: 16, metadataFields: [], probe, probeMargin: 0.3 };
    const budgetMb = 0.1;
    const results: Map<string, Verdict>[] = [];
    let budgeted: DedupEngine | null = null;
    for (const stateMemoryMb of [undefined, budgetMb]) {
      const store = await StateStore.open(join(dir, `state-${stateMemoryMb ?? 'all'}.duckdb`));
      try {
        const engine = await DedupEngine.create({ ...options, stateMemoryMb }, store);
        for (const [i, batch] of makeBatches(2400, dim, centers, 50, 11).entries()) {
          await engine.add(batch);
          if (i % 3 === 2) {
            await engine.checkpoint();
            if (stateMemoryMb !== undefined) expect(engine.residentBytes).toBeLessThanOrEqual(stateMemoryMb * 1024 * 1024);
          }
        }
        await engine.checkpoint();
        expect(engine.size).toBe(2400);
        results.push(await collect(engine));
        if (stateMemoryMb !== undefined) budgeted = engine;
        else expect(engine.residentBytes).toBeGreaterThan(budgetMb * 1024 * 1024 * 2);
      } finally {
        store.close();
      }
    }
    expect(budgeted!.statesEvicted).toBeGreaterThan(20);
    expect(budgeted!.statesLoaded).toBeGreaterThan(20);
    expect(budgeted!.checkpointSpills).toBeGreaterThan(0);
    // Reloaded states take the arrays of evicted ones rather than new ones.
    expect(budgeted!.arrayPool.reused).toBeGreaterThan(10);
    const [all, bounded] = results as [Map<string, Verdict>, Map<string, Verdict>];
    expect(bounded.size).toBe(2400);
    expect([...bounded.values()].filter((v) => v.score >= 0.95).length).toBeGreaterThan(100);
    for (const [id, v] of all) expect(bounded.get(id), id).toEqual(v);
  });
});

describe('reuse of evicted states\' arrays', () => {
  it('the pool hands out arrays only after their write settled, big enough and not much bigger, and drops the smallest first', () => {
    const dim = 4;
    const pool = new SlotArrayPool(1 << 20);
    const a = allocateSlotArrays(64, dim);
    const b = allocateSlotArrays(100, dim);
    pool.release(a, 0);
    pool.release(b, 2);
    expect(pool.take(80, 1)).toBeNull(); // b waits for write epoch 2 to settle; a is too small
    expect(pool.take(80, 2)).toBe(b);
    expect(pool.take(200, 5)).toBeNull();
    pool.release(allocateSlotArrays(300, dim), 0);
    expect(pool.take(100, 5)).toBeNull(); // 300 slots: more than twice what is asked
    expect(pool.take(40, 5)).toBe(a);
    expect(pool.size).toBe(1);

    const bytesOf64 = 64 * dim * 4 + 64 * 29;
    const full = new SlotArrayPool(3 * bytesOf64);
    const small = allocateSlotArrays(64, dim);
    full.release(allocateSlotArrays(70, dim), 0);
    full.release(small, 0);
    full.release(allocateSlotArrays(72, dim), 0);
    expect(full.dropped).toBe(1);
    expect(full.take(64, 0)).not.toBe(small); // the smallest went first
    expect(full.bytes).toBe(72 * dim * 4 + 72 * 29);
  });

  it('a checkpoint cut before states are evicted and reloaded still writes the embeddings it took', async () => {
    // As the stream does: a cut's write (its changes are views of the cluster matrices) runs in
    // the background while more clips are added and the next checkpoint is cut, which evict
    // states and grow or load others; the evicted arrays must not be reused before that write.
    const dim = 16;
    const rand = prng(5);
    const centers = Array.from({ length: 8 }, () => Float32Array.from({ length: dim }, () => gaussian(rand)));
    const centroids = Float32Array.from(centers.flatMap((c) => [...unit(c)].map((x) => x * 0.8)));
    const dir = tempDir('semdedup-pin-');
    const store = await StateStore.open(join(dir, 'state.duckdb'));
    const sent = new Map<string, Float32Array>();
    try {
      // The write of a checkpoint that did not spill starts late (a slow disk, dead letters first).
      const write = store.checkpoint.bind(store);
      store.checkpoint = async (changes, positions) => {
        await new Promise((r) => setTimeout(r, 5));
        return write(changes, positions);
      };
      const engine = await DedupEngine.create({ centroids, dim, rankSpec: spec, idType: 'string', kernel: createJsKernel(), eps: 0.05, flushMaxRows: 8, metadataFields: [], stateMemoryMb: 0.05 }, store);
      const batches = makeBatches(3000, dim, centers, 40, 21);
      for (const b of batches) for (let i = 0; i < b.ids.length; i++) sent.set(b.ids[i]!, b.embeddings.slice(i * dim, (i + 1) * dim));
      let writing: Promise<void> = Promise.resolve();
      for (const batch of batches) {
        await engine.add(batch);
        const cut = await engine.cutCheckpoint();
        await writing; // persists in cut order, each after the one before
        writing = cut.persist();
      }
      await writing;
      expect(engine.statesEvicted).toBeGreaterThan(50);
      expect(engine.arrayPool.reused).toBeGreaterThan(10);
    } finally {
      store.close();
    }
    const reopened = await StateStore.open(join(dir, 'state.duckdb'));
    try {
      const members = await reopened.loadMembers();
      expect(members.filter((m) => m.home === m.centroid)).toHaveLength(3000);
      for (const m of members) expect(Array.from(m.embedding), m.rank.id).toEqual(Array.from(sent.get(m.rank.id)!));
    } finally {
      reopened.close();
    }
  });
});

describe('StateStore migration', () => {
  it('a state written with `id` as PRIMARY KEY opens as (centroid, id) entries; probe settings default to 1', async () => {
    const dir = tempDir('semdedup-migrate-');
    const path = join(dir, 'state.duckdb');
    const centroids = Float32Array.from([1, 0, 0, 1]);
    const identity = stateIdentity(centroids, 2, spec, 'string', 0.01);
    const db = await DuckDBInstance.create(path);
    const conn = await db.connect();
    try {
      await conn.run(`CREATE TABLE members (centroid INTEGER NOT NULL, id VARCHAR PRIMARY KEY, cosine_dist_to_cent FLOAT, l2_dist_to_cent FLOAT,
        rank_hash DOUBLE, metadata VARCHAR, embedding BLOB NOT NULL, raw_score FLOAT, raw_max_id VARCHAR)`);
      const blob = (a: number, b: number) => `'${Array.from(new Uint8Array(Float32Array.from([a, b]).buffer), (x) => `\\x${x.toString(16).padStart(2, '0')}`).join('')}'::BLOB`;
      await conn.run(`INSERT INTO members VALUES (0, 'a', 0.1, 0.2, 1, '{}', ${blob(1, 0)}, '-inf'::FLOAT, NULL), (0, 'b', 0.05, 0.1, 2, '{}', ${blob(1, 0)}, 1, 'a'), (1, 'c', 0, 0, 3, '{}', ${blob(0, 1)}, '-inf'::FLOAT, NULL)`);
      await conn.run('CREATE TABLE identity (key VARCHAR PRIMARY KEY, value VARCHAR)');
      for (const [k, v] of Object.entries(identity)) if (k !== 'probe') await conn.run(`INSERT INTO identity VALUES ('${k}', '${String(v).replace(/'/g, "''")}')`);
    } finally {
      conn.closeSync();
      db.closeSync();
    }
    const store = await StateStore.open(path);
    try {
      await store.checkIdentity(identity, path);
      await expect(store.checkIdentity(stateIdentity(centroids, 2, spec, 'string', 0.01, { probe: 2, probeMargin: 0.01 }), path)).rejects.toThrow(/probe = 1/);
      const members = await store.loadMembers(0);
      expect(members.map((m) => [m.rank.id, m.home, m.probe, m.rawMaxId]).sort()).toEqual([['a', 0, -1, null], ['b', 0, -1, 'a']]);
      expect(Array.from(members.find((m) => m.rank.id === 'b')!.embedding)).toEqual([1, 0]);
      expect(await store.loadIds()).toHaveLength(3);
      const engine = await DedupEngine.create({ centroids, dim: 2, rankSpec: spec, idType: 'string', kernel: createJsKernel(), eps: 0.01, flushMaxRows: 4, metadataFields: [] }, store);
      expect(engine.size).toBe(3);
      const verdicts = new Map<string, Verdict>();
      for await (const chunk of engine.storedVerdicts()) for (const v of chunk) verdicts.set(v.id, v);
      expect(verdicts.get('b')).toEqual({ id: 'b', maxId: 'a', score: 1, centroid: 0 });
    } finally {
      store.close();
    }
  });
});
