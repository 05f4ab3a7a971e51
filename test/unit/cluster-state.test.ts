import { describe, expect, it } from 'vitest';
import { createJsKernel } from '../../src/kernels/index.js';
import { compareRankKeys, rankHash, type RankFields } from '../../src/rank/index.js';
import type { RankSpec } from '../../src/shared/types.js';
import { ClusterState, MemberChanges, type IncomingClip } from '../../src/state/cluster-state.js';
import { gaussian, prng } from '../helpers/fixtures.js';

/** Brute force over a whole cluster: NeMo's rules on the full rank order. */
function bruteForce(clips: IncomingClip[], spec: RankSpec) {
  const sorted = [...clips].sort((a, b) => compareRankKeys(a.rank, b.rank, spec, 'string'));
  const out = new Map<string, { maxId: string; score: number }>();
  sorted.forEach((c, j) => {
    let score = 0;
    let at = j;
    for (let i = 0; i < j; i++) {
      let dot = 0;
      for (let k = 0; k < c.embedding.length; k++) dot += sorted[i]!.embedding[k]! * c.embedding[k]!;
      const s = Math.fround(dot);
      if (s > score || (s === score && i < at)) {
        score = s;
        at = i;
      }
    }
    out.set(c.rank.id, { maxId: sorted[at]!.rank.id, score });
  });
  return out;
}

function makeClips(n: number, dim: number, seed: number): IncomingClip[] {
  const rand = prng(seed);
  const clips: IncomingClip[] = [];
  for (let i = 0; i < n; i++) {
    let e: Float32Array;
    if (i > 2 && rand() < 0.2) e = clips[Math.floor(rand() * clips.length)]!.embedding.slice();
    else e = Float32Array.from({ length: dim }, () => gaussian(rand) + (rand() < 0.5 ? 0.3 : -0.1));
    let s = 0;
    for (const x of e) s += x * x;
    e = e.map((x) => x / Math.sqrt(s));
    const id = `c${String(i).padStart(3, '0')}`;
    // Coarse distances so rank ties (broken by id) happen often.
    const rank: RankFields = { id, cosineDistToCent: Math.fround(Math.floor(rand() * 8) / 8), l2DistToCent: Math.fround(rand()), hash: rankHash(id, 42), metadata: { m: rand() < 0.2 ? null : Math.floor(rand() * 4) } };
    clips.push({ rank, embedding: e });
  }
  return clips;
}

const specs: [string, RankSpec][] = [
  ['hard', { whichToKeep: 'hard', distanceMetric: 'cosine', ranking: [], seed: 42 }],
  ['easy', { whichToKeep: 'easy', distanceMetric: 'cosine', ranking: [], seed: 42 }],
  ['random', { whichToKeep: 'random', distanceMetric: 'cosine', ranking: [], seed: 42 }],
  ['l2', { whichToKeep: 'hard', distanceMetric: 'l2', ranking: [], seed: 42 }],
  ['metadata', { whichToKeep: 'hard', distanceMetric: 'cosine', ranking: [{ column: 'm', order: 'desc' }], seed: 42 }],
];

describe('ClusterState: incremental equals batch after any arrival order', () => {
  const kernel = createJsKernel();
  it.each(specs)('%s ranking, shuffled arrivals in random flush sizes', async (_name, spec) => {
    const clips = makeClips(90, 8, 17);
    const expected = bruteForce(clips, spec);
    for (const seed of [1, 2, 3]) {
      const rand = prng(seed);
      const order = [...clips].sort(() => rand() - 0.5);
      const state = new ClusterState(0, 8, spec, 'string');
      const published = new Map<string, { maxId: string; score: number }>();
      for (let i = 0; i < order.length; ) {
        const size = 1 + Math.floor(rand() * 12);
        const { changed } = await state.addClips(order.slice(i, i + size), kernel);
        for (const v of changed) published.set(v.id, { maxId: v.maxId, score: v.score });
        i += size;
      }
      for (const v of state.verdicts()) expect({ id: v.id, maxId: v.maxId, score: v.score }).toEqual({ id: v.id, ...expected.get(v.id)! });
      // The changelog's latest value per key equals the final state.
      for (const [id, v] of published) expect(v).toEqual(expected.get(id));
      expect(published.size).toBe(clips.length);
    }
  });

  it('restores from its members and continues identically', async () => {
    const spec = specs[0]![1];
    const clips = makeClips(60, 8, 5);
    const a = new ClusterState(3, 8, spec, 'string');
    await a.addClips(clips.slice(0, 35), kernel);
    const b = ClusterState.restore(3, 8, spec, 'string', a.members().reverse());
    await b.addClips(clips.slice(35), kernel);
    const expected = bruteForce(clips, spec);
    for (const v of b.verdicts()) expect({ maxId: v.maxId, score: v.score }).toEqual(expected.get(v.id));
    expect(b.verdicts().every((v) => v.centroid === 3)).toBe(true);
  });
});

describe('ClusterState with the cpu kernel: one-product flush and two-call fallback agree with brute force', async () => {
  const { createCpuKernel } = await import('../../src/kernels/cpu/index.js');
  const cpu = await createCpuKernel({ threads: 1 });
  const { crossRankedMax: _cross, ...withoutCross } = cpu;
  const variants: [string, typeof cpu][] = [
    ['crossRankedMax', cpu],
    ['two rankedMax calls', withoutCross as typeof cpu],
  ];
  it.each(variants)('%s, every ranking, random flush sizes', async (_name, kernel) => {
    for (const [, spec] of specs) {
      const clips = makeClips(120, 8, 23);
      const expected = bruteForce(clips, spec);
      const rand = prng(9);
      const order = [...clips].sort(() => rand() - 0.5);
      const state = new ClusterState(0, 8, spec, 'string');
      const published = new Map<string, { maxId: string; score: number }>();
      for (let i = 0; i < order.length; ) {
        const size = 1 + Math.floor(rand() * 20);
        const { changed } = await state.addClips(order.slice(i, i + size), kernel);
        for (const v of changed) published.set(v.id, { maxId: v.maxId, score: v.score });
        i += size;
      }
      const byId = new Map(clips.map((c) => [c.rank.id, c]));
      const dot = (a: string, b: string) => byId.get(a)!.embedding.reduce((s, x, k) => s + x * byId.get(b)!.embedding[k]!, 0);
      for (const v of state.verdicts()) {
        const e = expected.get(v.id)!;
        expect(v.score).toBeCloseTo(e.score, 5);
        // float32 GEMM sums may order two candidates within an ulp differently from the float64
        // reference: then the pick must be an equally good one (identical rows are exact ties).
        if (v.maxId !== e.maxId) expect(Math.abs(dot(v.id, v.maxId) - e.score), `${v.id}: ${v.maxId} for ${e.maxId}`).toBeLessThan(1e-6);
        expect(published.get(v.id)).toEqual({ maxId: v.maxId, score: v.score });
      }
    }
  });
});

describe('ClusterState.takeChanges', () => {
  it('hands over new members whole and stored members only when their raw max rose', async () => {
    const kernel = createJsKernel();
    const spec = specs[0]![1];
    const clips = makeClips(80, 8, 31);
    const state = new ClusterState(2, 8, spec, 'string');
    await state.addClips(clips.slice(0, 40), kernel);
    const first = new MemberChanges();
    state.takeChanges(first);
    expect(first.newRanks.map((r) => r.id).sort()).toEqual(clips.slice(0, 40).map((c) => c.rank.id).sort());
    expect(first.raisedIds).toEqual([]);
    expect(state.dirtyCount).toBe(0);
    // Embeddings handed over are the members' own rows.
    const byId = new Map(state.members().map((m) => [m.rank.id, m]));
    first.newRanks.forEach((r, i) => expect(Array.from(first.newEmbeddings[i]!)).toEqual(Array.from(byId.get(r.id)!.embedding)));

    const before = new Map(state.members().map((m) => [m.rank.id, m]));
    await state.addClips(clips.slice(40), kernel);
    const second = new MemberChanges();
    state.takeChanges(second);
    expect(second.newRanks.map((r) => r.id).sort()).toEqual(clips.slice(40).map((c) => c.rank.id).sort());
    const after = new Map(state.members().map((m) => [m.rank.id, m]));
    const raised = [...before.keys()].filter((id) => after.get(id)!.rawScore !== before.get(id)!.rawScore || after.get(id)!.rawMaxId !== before.get(id)!.rawMaxId);
    expect(raised.length).toBeGreaterThan(0);
    expect([...second.raisedIds].sort()).toEqual(raised.sort());
    second.raisedIds.forEach((id, i) => {
      expect(second.raisedRawScore[i]).toBe(after.get(id)!.rawScore);
      expect(second.raisedRawMaxId[i]).toBe(after.get(id)!.rawMaxId);
    });
    const third = new MemberChanges();
    state.takeChanges(third);
    expect(third.size).toBe(0);
  });
});
