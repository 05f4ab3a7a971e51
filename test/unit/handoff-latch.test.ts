import { describe, expect, it } from 'vitest';
import { HandoffQueue, Latch, handOffAndWait } from '../../src/sources/kafka/handoff.js';

describe('Latch (the "closed" signal Kafka sources race their waits against)', () => {
  it('leaves no waiter behind a finished race, however many races ran', async () => {
    const latch = new Latch();
    for (let i = 0; i < 1000; i++) expect(await latch.race([Promise.resolve(i)])).toBe(i);
    expect(latch.waiting).toBe(0);
  });

  it('opening wakes the races in progress with undefined; later races return at once', async () => {
    const latch = new Latch();
    const never = new Promise<number>(() => {});
    const racing = [latch.race([never]), latch.race([never])];
    expect(latch.waiting).toBe(2);
    latch.open();
    expect(await Promise.all(racing)).toEqual([undefined, undefined]);
    expect(latch.waiting).toBe(0);
    expect(latch.isOpen).toBe(true);
    expect(await latch.race([never])).toBeUndefined();
  });

  it('handOffAndWait: taken → true; a close while waiting → false and the item removed', async () => {
    const payload = { heartbeat: async () => {}, isRunning: () => true, isStale: () => false };
    const queue = new HandoffQueue<string>();
    const closed = new Latch();
    const reader = (async () => {
      for await (const item of queue.drain()) return item;
      return null;
    })();
    expect(await handOffAndWait(queue, 'a', payload, { heartbeatIntervalMs: 5, closed })).toBe(true);
    expect(await reader).toBe('a');
    // Nobody takes 'b': heartbeats go on until the close.
    let beats = 0;
    const waiting = handOffAndWait(queue, 'b', { ...payload, heartbeat: async () => void beats++ }, { heartbeatIntervalMs: 5, closed });
    await new Promise((r) => setTimeout(r, 40));
    closed.open();
    expect(await waiting).toBe(false);
    expect(beats).toBeGreaterThan(1);
    expect(closed.waiting).toBe(0);
  });
});
