import type { Logger } from 'pino';

/** A named step of a topology; its id appears in logs, timings and checkpoint keys. */
export interface Step<C> {
  readonly id: string;
  run(ctx: C, log: Logger): Promise<void>;
}

export interface Topology<C> {
  readonly name: string;
  readonly steps: readonly Step<C>[];
}

export function step<C>(id: string, run: (ctx: C, log: Logger) => Promise<void>): Step<C> {
  return { id, run };
}

export function defineTopology<C>(name: string, steps: readonly Step<C>[]): Topology<C> {
  const ids = new Set<string>();
  for (const s of steps) {
    if (ids.has(s.id)) throw new Error(`topology ${name}: duplicate step id ${s.id}`);
    ids.add(s.id);
  }
  return { name, steps };
}

export interface RunnableContext {
  /** Seconds spent in each step, by step id. */
  readonly timings: Record<string, number>;
  /** Set by a step to end the run early (e.g. no eps: stop after pairwise). */
  stopAfter?: string;
}

/** Run the steps in order with a child logger each; record their wall time. */
export async function runTopology<C extends RunnableContext>(topology: Topology<C>, ctx: C, logger: Logger): Promise<void> {
  for (const s of topology.steps) {
    const log = logger.child({ step: s.id });
    const started = performance.now();
    log.debug('step started');
    await s.run(ctx, log);
    const seconds = (performance.now() - started) / 1000;
    ctx.timings[s.id] = Math.round(seconds * 1000) / 1000;
    log.info({ seconds: ctx.timings[s.id] }, 'step done');
    if (ctx.stopAfter === s.id) break;
  }
}
