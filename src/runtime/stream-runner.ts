/**
 * The runner of streaming topologies: named steps, wired declaratively, run by one loop.
 *
 * A stream topology has three lists of steps:
 * - `start`: once, before the first batch (e.g. recovery after a crash);
 * - `perBatch`: a typed pipeline every batch from the source goes through (each step gets the
 *   previous step's output; `null` ends that batch's chain early);
 * - `checkpoint`: run in order when enough rows wait (`flushMaxRows`), when the oldest waiting
 *   row is `flushMaxMs` old, when the source ends, and when the run is stopped (`signal`).
 *   While the context reports a backlog (rows already waiting behind the ones taken), the age
 *   limit stretches to `backlogFlushMaxMs`: those records are late anyway, and each checkpoint
 *   has a fixed cost (a kernel pass per touched cluster, a DuckDB commit), so small checkpoints
 *   would make a backlog drain several times slower; for the same reason the size limit doubles
 *   (`backlogFlushMaxRows`, at most `maxBufferedRows`): a flush's GEMMs get more rows at once
 *   and the per-checkpoint work is spread over more clips. Caught up, the limits hold again.
 * - `durable` (optional): run in order after the `checkpoint` steps, in the background, while the
 *   loop takes the next batches. They must work on what the `checkpoint` steps set aside, not on
 *   what the per-batch steps keep adding to. The durable steps of successive checkpoints run one
 *   checkpoint after the other (never interleaved), so their order across checkpoints holds; at
 *   most `durableInFlight` checkpoints wait for or run them (a checkpoint beyond that, and the
 *   end of the run, wait); a failure among them stops the run at the next batch or checkpoint. This is how a
 *   checkpoint's I/O waits (the state's commit, the verdicts' acks, the offset commit) overlap the
 *   decoding and assignment of the next batches. Time the loop still waits for them is timed as
 *   `wait-durable`.
 *
 * The loop pulls the next batch only after the previous one went through `perBatch`, so memory
 * is bounded by the source's prefetch plus what waits for a checkpoint; past `maxBufferedRows`
 * waiting rows it pauses the source for the checkpoint (backpressure). Every step gets a child
 * logger `{ step }` and its time adds up in `ctx.timings[step]` (seconds).
 */
import type { Logger } from 'pino';
import type { RunnableContext, Step } from './runner.js';

export interface BatchStep<C> {
  readonly id: string;
  run(input: unknown, ctx: C, log: Logger): unknown;
}

/** A typed chain of per-batch steps: `pipeline<C, In>().then('decode', decode).then(...)`. */
export class Pipeline<C, In, Out> {
  readonly steps: readonly BatchStep<C>[];
  private constructor(steps: readonly BatchStep<C>[]) {
    this.steps = steps;
  }
  static start<C, In>(): Pipeline<C, In, In> {
    return new Pipeline<C, In, In>([]);
  }
  then<Next>(id: string, run: (input: Out, ctx: C, log: Logger) => Next | null | Promise<Next | null>): Pipeline<C, In, Next> {
    return new Pipeline<C, In, Next>([...this.steps, { id, run: run as BatchStep<C>['run'] }]);
  }
}

export function pipeline<C, In>(): Pipeline<C, In, In> {
  return Pipeline.start<C, In>();
}

export interface StreamTopology<C, In> {
  readonly name: string;
  readonly start: readonly Step<C>[];
  readonly perBatch: Pipeline<C, In, unknown>;
  readonly checkpoint: readonly Step<C>[];
  /** Run after `checkpoint`, in the background (see the module doc). */
  readonly durable?: readonly Step<C>[];
}

export function defineStreamTopology<C, In>(name: string, parts: Omit<StreamTopology<C, In>, 'name'>): StreamTopology<C, In> {
  const ids = new Set<string>();
  for (const s of [...parts.start, ...parts.perBatch.steps, ...parts.checkpoint, ...(parts.durable ?? [])]) {
    if (ids.has(s.id)) throw new Error(`topology ${name}: duplicate step id ${s.id}`);
    ids.add(s.id);
  }
  return { name, ...parts };
}

/** What the runner reads from a stream context to decide when to checkpoint. */
export interface StreamRunnableContext extends RunnableContext {
  /** Rows (and skipped records) taken in since the last checkpoint; the checkpoint steps reset it. */
  readonly pendingRows: number;
  /** `performance.now()` when the oldest of them arrived; null when none waits. */
  readonly pendingSince: number | null;
  /** True while more records are known to wait in the source (consumer lag > 0). */
  readonly backlog: boolean;
}

export interface StreamRunOptions {
  readonly flushMaxRows: number;
  readonly flushMaxMs: number;
  /** The age limit while the source has a backlog. Default 10 × flushMaxMs. */
  readonly backlogFlushMaxMs?: number;
  /** The size limit while the source has a backlog. Default 2 × flushMaxRows, at most maxBufferedRows. */
  readonly backlogFlushMaxRows?: number;
  readonly maxBufferedRows: number;
  /** Stop taking batches, checkpoint what was taken, return. */
  readonly signal?: AbortSignal;
  /** Stop and restart fetching (backpressure). */
  readonly pause?: () => void;
  readonly resume?: () => void;
  /** Checkpoints whose `durable` steps may be pending at once (default 2). */
  readonly durableInFlight?: number;
  /** Called once when durable steps failed (the run then stops), e.g. to release what waits for them. */
  readonly onDurableFailure?: (err: unknown) => void;
  /** Called after each checkpoint with its wall time, ms. */
  readonly onCheckpoint?: (ms: number) => void;
}

export type StreamStopReason = 'end' | 'signal';

/** Run `topology` over `batches` until the source ends or `signal` aborts; the last checkpoint included. */
export async function runStreamTopology<C extends StreamRunnableContext, In>(
  topology: StreamTopology<C, In>,
  ctx: C,
  batches: AsyncIterable<In>,
  logger: Logger,
  options: StreamRunOptions,
): Promise<StreamStopReason> {
  const logs = new Map<string, Logger>();
  const logOf = (id: string): Logger => {
    let log = logs.get(id);
    if (!log) logs.set(id, (log = logger.child({ step: id })));
    return log;
  };
  const timed = async <T>(id: string, run: () => T | Promise<T>): Promise<T> => {
    const started = performance.now();
    try {
      return await run();
    } finally {
      ctx.timings[id] = (ctx.timings[id] ?? 0) + (performance.now() - started) / 1000;
    }
  };
  /** The durable steps of checkpoints not done yet, oldest first (each chained after the one before); the first failure among them. */
  const inflight: Promise<void>[] = [];
  let failure: { err: unknown } | null = null;
  const durableInFlight = Math.max(1, options.durableInFlight ?? 2);
  /** Wait until at most `keep` checkpoints have durable steps pending. */
  const settle = async (keep = 0): Promise<void> => {
    // How long the loop waits for them shows in timings as `wait-durable`.
    while (inflight.length > keep) await timed('wait-durable', () => inflight.shift()!);
    if (failure) throw failure.err;
  };
  const durable = topology.durable ?? [];
  /** When the last checkpoint's own steps ended (the backlog age limit counts from there). */
  let lastCheckpointEnd = -Infinity;
  const checkpoint = async (): Promise<void> => {
    await settle(durableInFlight - 1);
    if (ctx.pendingRows === 0 && ctx.pendingSince === null) return;
    const started = performance.now();
    for (const s of topology.checkpoint) await timed(s.id, () => s.run(ctx, logOf(s.id)));
    lastCheckpointEnd = performance.now();
    if (durable.length === 0) {
      options.onCheckpoint?.(performance.now() - started);
      return;
    }
    const previous = inflight.at(-1) ?? Promise.resolve();
    // After the previous checkpoint's durable steps, and not at all when they failed.
    const run = previous.then(async () => {
      for (const s of durable) await timed(s.id, () => s.run(ctx, logOf(s.id)));
      options.onCheckpoint?.(performance.now() - started);
    });
    run.catch((err: unknown) => {
      if (failure) return;
      failure = { err };
      options.onDurableFailure?.(err);
    });
    inflight.push(run);
  };

  for (const s of topology.start) await timed(s.id, () => s.run(ctx, logOf(s.id)));
  const backlogFlushMaxMs = options.backlogFlushMaxMs ?? 10 * options.flushMaxMs;
  const backlogFlushMaxRows = Math.min(options.backlogFlushMaxRows ?? 2 * options.flushMaxRows, options.maxBufferedRows);
  /**
   * When the oldest waiting row is due for a checkpoint (null: nothing waits). In a backlog the
   * age counts from the end of the last checkpoint at the earliest: rows fetched while it ran
   * (or long before, waiting in the prefetch) would otherwise be due as soon as they are taken,
   * so a slow checkpoint (a state reloaded under a memory budget) made the next ones small, and
   * small ones slower per clip.
   */
  const dueAt = (): number | null => {
    if (ctx.pendingSince === null) return null;
    return ctx.backlog ? Math.max(ctx.pendingSince, lastCheckpointEnd) + backlogFlushMaxMs : ctx.pendingSince + options.flushMaxMs;
  };

  // One stop promise per wait, dropped after it: a promise still pending after a Promise.race keeps
  // a reaction that holds the race's outcome, so one run-long stop promise raced against every
  // batch kept every batch taken so far (and through their record keys, each whole kafkajs fetch
  // response: the drain's RSS grew with the topic).
  let wakeOnStop: ((reason: 'signal') => void) | null = null;
  options.signal?.addEventListener('abort', () => wakeOnStop?.('signal'), { once: true });
  const stopOrAbort = (): Promise<'signal'> =>
    new Promise<'signal'>((resolve) => {
      wakeOnStop = resolve;
      if (options.signal?.aborted) resolve('signal');
    });
  const iterator = batches[Symbol.asyncIterator]();
  let next: Promise<IteratorResult<In>> | null = null;
  let reason: StreamStopReason = 'end';
  try {
    for (;;) {
      if (options.signal?.aborted) {
        reason = 'signal';
        break;
      }
      next ??= iterator.next();
      const deadline = dueAt();
      let timer: NodeJS.Timeout | undefined;
      const due = deadline === null ? null : new Promise<'due'>((resolve) => (timer = setTimeout(() => resolve('due'), Math.max(0, deadline - performance.now()))));
      const got = await Promise.race([next, stopOrAbort(), ...(due ? [due] : [])]);
      wakeOnStop = null;
      clearTimeout(timer);
      if (got === 'signal') {
        reason = 'signal';
        break;
      }
      if (got === 'due') {
        await checkpoint();
        continue;
      }
      next = null;
      // Set by a durable step in the background (TypeScript cannot see the closure assign it).
      const failed = failure as { err: unknown } | null;
      if (failed) throw failed.err;
      if (got.done) break;
      let value: unknown = got.value;
      for (const s of topology.perBatch.steps) {
        value = await timed(s.id, () => s.run(value, ctx, logOf(s.id)));
        if (value === null) break;
      }
      if (ctx.pendingRows >= options.maxBufferedRows) {
        // Backpressure: nothing more is fetched until the waiting rows are durable.
        options.pause?.();
        try {
          await checkpoint();
        } finally {
          options.resume?.();
        }
      } else if (ctx.pendingRows >= (ctx.backlog ? backlogFlushMaxRows : options.flushMaxRows) || performance.now() >= (dueAt() ?? Infinity)) {
        await checkpoint();
      }
    }
    // Stop fetching, then a final checkpoint: what was taken in becomes durable, published and committed.
    if (reason === 'signal') options.pause?.();
    await checkpoint();
    await settle();
  } finally {
    // Never leave a write running behind the caller (it closes the state next).
    await Promise.allSettled(inflight);
    // A batch fetched but not processed is not committed: the next run reads it again.
    if (next) void next.catch(() => undefined);
  }
  return reason;
}
