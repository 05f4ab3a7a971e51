import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/runtime/logging.js';
import { step } from '../../src/runtime/runner.js';
import { defineStreamTopology, pipeline, runStreamTopology } from '../../src/runtime/stream-runner.js';
import type { StreamRunnableContext } from '../../src/runtime/stream-runner.js';

interface Ctx extends StreamRunnableContext {
  pendingRows: number;
  pendingSince: number | null;
  backlog: boolean;
  events: string[];
}

const newCtx = (): Ctx => ({ pendingRows: 0, pendingSince: null, backlog: false, events: [], timings: {} });

/** Batches are row counts; a checkpoint records how many rows it made durable. */
const topology = defineStreamTopology<Ctx, number>('test', {
  start: [step('start', async (ctx) => void ctx.events.push('start'))],
  perBatch: pipeline<Ctx, number>()
    .then('take', (rows, ctx) => {
      ctx.pendingSince ??= performance.now();
      ctx.pendingRows += rows;
      return rows === 0 ? null : rows;
    })
    .then('log', (rows, ctx) => void ctx.events.push(`batch ${rows}`)),
  checkpoint: [
    step('checkpoint', async (ctx) => {
      ctx.events.push(`checkpoint ${ctx.pendingRows}`);
      ctx.pendingRows = 0;
      ctx.pendingSince = null;
    }),
  ],
});

/** The per-batch step of the topologies built in the tests below; rows wait from `agoMs` before now. */
function takeRows(rows: number, ctx: Ctx, agoMs = 0): null {
  ctx.pendingSince ??= performance.now() - agoMs;
  ctx.pendingRows += rows;
  ctx.events.push(`batch ${rows}`);
  return null;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A source that yields `items`: numbers are batches, `wait N` pauses N ms. */
async function* source(items: (number | string)[]): AsyncGenerator<number> {
  for (const item of items) {
    if (typeof item === 'number') yield item;
    else await sleep(Number(item.split(' ')[1]));
  }
}

const opts = { flushMaxRows: 20, flushMaxMs: 40, maxBufferedRows: 1000 };

describe('runStreamTopology', () => {
  it('checkpoints by size, and once more at the end', async () => {
    const ctx = newCtx();
    const reason = await runStreamTopology(topology, ctx, source([5, 5, 5, 5, 5, 5]), silentLogger(), { ...opts, flushMaxMs: 60_000 });
    expect(reason).toBe('end');
    expect(ctx.events).toEqual(['start', 'batch 5', 'batch 5', 'batch 5', 'batch 5', 'checkpoint 20', 'batch 5', 'batch 5', 'checkpoint 10']);
    expect(Object.keys(ctx.timings).sort()).toEqual(['checkpoint', 'log', 'start', 'take']);
  });

  it('checkpoints by age while the source is quiet', async () => {
    const ctx = newCtx();
    await runStreamTopology(topology, ctx, source([3, 'wait 150', 4]), silentLogger(), opts);
    expect(ctx.events).toEqual(['start', 'batch 3', 'checkpoint 3', 'batch 4', 'checkpoint 4']);
  });

  it('stretches the age limit while the source has a backlog', async () => {
    const ctx = newCtx();
    ctx.backlog = true;
    await runStreamTopology(topology, ctx, source([3, 'wait 150', 4, 'wait 400', 1]), silentLogger(), opts);
    // 40 ms × 10 = 400 ms: the first checkpoint waits past the 150 ms pause.
    expect(ctx.events).toEqual(['start', 'batch 3', 'batch 4', 'checkpoint 7', 'batch 1', 'checkpoint 1']);
  });

  it('doubles the size limit while the source has a backlog (capped by maxBufferedRows)', async () => {
    const ctx = newCtx();
    ctx.backlog = true;
    await runStreamTopology(topology, ctx, source([15, 15, 15]), silentLogger(), { ...opts, flushMaxMs: 60_000 });
    expect(ctx.events).toEqual(['start', 'batch 15', 'batch 15', 'batch 15', 'checkpoint 45']);
    const capped = newCtx();
    capped.backlog = true;
    await runStreamTopology(topology, capped, source([15, 15, 15]), silentLogger(), { ...opts, flushMaxMs: 60_000, maxBufferedRows: 25, pause: () => {}, resume: () => {} });
    expect(capped.events).toEqual(['start', 'batch 15', 'batch 15', 'checkpoint 30', 'batch 15', 'checkpoint 15']);
    const caughtUp = newCtx();
    await runStreamTopology(topology, caughtUp, source([15, 15, 15]), silentLogger(), { ...opts, flushMaxMs: 60_000 });
    expect(caughtUp.events).toEqual(['start', 'batch 15', 'batch 15', 'checkpoint 30', 'batch 15', 'checkpoint 15']);
  });

  it('in a backlog, rows fetched long ago are not due at once after a checkpoint: the age counts from its end', async () => {
    // Every batch arrives as if fetched a second before it is taken (prefetched while the last
    // checkpoint ran): older than the stretched limit (400 ms) the moment it is taken.
    const late = defineStreamTopology<Ctx, number>('late', {
      start: [],
      perBatch: pipeline<Ctx, number>().then('take', (rows, ctx) => takeRows(rows, ctx, 1000)),
      checkpoint: [
        step('checkpoint', async (ctx) => {
          ctx.events.push(`checkpoint ${ctx.pendingRows}`);
          ctx.pendingRows = 0;
          ctx.pendingSince = null;
        }),
      ],
    });
    const ctx = newCtx();
    ctx.backlog = true;
    await runStreamTopology(late, ctx, source([5, 5, 5, 5, 5, 5]), silentLogger(), opts);
    // The first is due at once (no checkpoint yet); the rest wait for rows or 400 ms after it.
    expect(ctx.events).toEqual(['batch 5', 'checkpoint 5', 'batch 5', 'batch 5', 'batch 5', 'batch 5', 'batch 5', 'checkpoint 25']);
  });

  it('a batch ended early by a step still counts; an abort checkpoints what was taken and stops', async () => {
    const ctx = newCtx();
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    const reason = await runStreamTopology(topology, ctx, source([2, 0, 'wait 10000', 9]), silentLogger(), { ...opts, flushMaxMs: 60_000, signal: controller.signal });
    expect(reason).toBe('signal');
    expect(ctx.events).toEqual(['start', 'batch 2', 'checkpoint 2']);
  });

  it('pauses the source for the checkpoint when too many rows wait', async () => {
    const ctx = newCtx();
    const pause = () => ctx.events.push('pause');
    const resume = () => ctx.events.push('resume');
    await runStreamTopology(topology, ctx, source([50, 1]), silentLogger(), { ...opts, maxBufferedRows: 30, pause, resume });
    expect(ctx.events).toEqual(['start', 'batch 50', 'pause', 'checkpoint 50', 'resume', 'batch 1', 'checkpoint 1']);
  });

  it('refuses duplicate step ids', () => {
    expect(() => defineStreamTopology<Ctx, number>('x', { start: [step('a', async () => {})], perBatch: pipeline<Ctx, number>().then('a', (x) => x), checkpoint: [] })).toThrow(/duplicate step id a/);
  });

  it('runs durable steps in the background (one checkpoint in flight), in order, and waits for the last', async () => {
    interface DurableCtx extends Ctx {
      cut: number | null;
    }
    const withDurable = defineStreamTopology<DurableCtx, number>('durable', {
      start: [],
      perBatch: pipeline<DurableCtx, number>().then('take', (rows, ctx) => takeRows(rows, ctx)),
      checkpoint: [
        step('cut', async (ctx) => {
          ctx.events.push(`cut ${ctx.pendingRows}`);
          ctx.cut = ctx.pendingRows;
          ctx.pendingRows = 0;
          ctx.pendingSince = null;
        }),
      ],
      durable: [
        step('write', async (ctx) => {
          await sleep(30);
          ctx.events.push(`write ${ctx.cut}`);
        }),
        step('commit', async (ctx) => {
          ctx.events.push(`commit ${ctx.cut}`);
          ctx.cut = null;
        }),
      ],
    });
    const ctx: DurableCtx = { ...newCtx(), cut: null };
    await runStreamTopology(withDurable, ctx, source([20, 1, 2, 20, 3]), silentLogger(), { ...opts, flushMaxMs: 60_000, durableInFlight: 1 });
    // Batches 1 and 2 are taken while the first write runs; the second cut waits for its commit.
    expect(ctx.events).toEqual(['batch 20', 'cut 20', 'batch 1', 'batch 2', 'batch 20', 'write 20', 'commit 20', 'cut 23', 'batch 3', 'write 23', 'commit 23', 'cut 3', 'write 3', 'commit 3']);
    expect(Object.keys(ctx.timings).sort()).toEqual(['commit', 'cut', 'take', 'wait-durable', 'write']);
  });

  it('with two checkpoints in flight, runs their durable steps one checkpoint after the other', async () => {
    interface QueueCtx extends Ctx {
      cuts: number[];
    }
    const queued = defineStreamTopology<QueueCtx, number>('queued', {
      start: [],
      perBatch: pipeline<QueueCtx, number>().then('take', (rows, ctx) => takeRows(rows, ctx)),
      checkpoint: [
        step('cut', async (ctx) => {
          ctx.events.push(`cut ${ctx.pendingRows}`);
          ctx.cuts.push(ctx.pendingRows);
          ctx.pendingRows = 0;
          ctx.pendingSince = null;
        }),
      ],
      durable: [
        step('write', async (ctx) => {
          ctx.events.push(`write ${ctx.cuts[0]} start`);
          await sleep(40);
          ctx.events.push(`write ${ctx.cuts[0]} end`);
        }),
        step('commit', async (ctx) => void ctx.events.push(`commit ${ctx.cuts.shift()}`)),
      ],
    });
    const ctx: QueueCtx = { ...newCtx(), cuts: [] };
    await runStreamTopology(queued, ctx, source([20, 21, 22, 1]), silentLogger(), { ...opts, flushMaxMs: 60_000 });
    const writes = ctx.events.filter((e) => e.startsWith('write') || e.startsWith('commit'));
    expect(writes).toEqual(['write 20 start', 'write 20 end', 'commit 20', 'write 21 start', 'write 21 end', 'commit 21', 'write 22 start', 'write 22 end', 'commit 22', 'write 1 start', 'write 1 end', 'commit 1']);
    // The second cut did not wait for the first write; the third waited for it (two in flight).
    expect(ctx.events.indexOf('cut 21')).toBeLessThan(ctx.events.indexOf('write 20 end'));
    expect(ctx.events.indexOf('cut 22')).toBeGreaterThan(ctx.events.indexOf('commit 20'));
  });

  it('stops with the error of a failed durable step', async () => {
    const failing = defineStreamTopology<Ctx, number>('failing', {
      start: [],
      perBatch: pipeline<Ctx, number>().then('take', (rows, ctx) => takeRows(rows, ctx)),
      checkpoint: [
        step('cut', async (ctx) => {
          ctx.pendingRows = 0;
          ctx.pendingSince = null;
        }),
      ],
      durable: [
        step('write', async () => {
          throw new Error('disk full');
        }),
      ],
    });
    await expect(runStreamTopology(failing, newCtx(), source([20, 'wait 20', 1, 1]), silentLogger(), { ...opts, flushMaxMs: 60_000 })).rejects.toThrow('disk full');
  });
  it('does not keep the batches it is done with (their fetch buffers), however long it runs', async () => {
    // A stop promise pending for the whole run and raced against each batch kept every batch
    // reachable from its reactions: a 200k-clip drain held all its Kafka fetch responses.
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const taken: WeakRef<object>[] = [];
    let alive = -1;
    interface Batch {
      readonly rows: number;
      readonly payload: Float32Array;
    }
    const holding = defineStreamTopology<Ctx, Batch>('holding', {
      start: [],
      perBatch: pipeline<Ctx, Batch>().then('take', async (batch, ctx) => {
        ctx.pendingSince ??= performance.now();
        ctx.pendingRows += batch.rows;
        if (taken.length === 30) {
          await sleep(0); // WeakRef targets stay alive until the job that made them ends
          gc();
          alive = taken.filter((r) => r.deref() !== undefined).length;
        }
        return null;
      }),
      checkpoint: [
        step('cut', async (ctx) => {
          ctx.pendingRows = 0;
          ctx.pendingSince = null;
        }),
      ],
    });
    async function* batches(): AsyncGenerator<Batch> {
      for (let i = 0; i < 30; i++) {
        const batch = { rows: 1, payload: new Float32Array(1 << 16) };
        taken.push(new WeakRef(batch));
        yield batch;
        await sleep(1);
      }
    }
    const controller = new AbortController();
    await runStreamTopology(holding, newCtx(), batches(), silentLogger(), { ...opts, flushMaxRows: 1000, signal: controller.signal });
    // The batch being processed, and at most the one before it.
    expect(alive).toBeGreaterThanOrEqual(1);
    expect(alive).toBeLessThanOrEqual(2);
  });
});
