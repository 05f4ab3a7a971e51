/**
 * The hand-off between kafkajs's `eachBatch` callbacks and a source's async iterator, shared by
 * `createKafkaSource` (source.ts), `createGroupKafkaSource` and `readPartitionRanges`
 * (group-source.ts): a single-reader queue, and the wait that keeps a batch's callback (and so
 * its fetch) open until the reader takes it, heartbeating meanwhile.
 */
import type { EachBatchPayload, KafkaMessage } from 'kafkajs';
import type { KafkaHeaders, KafkaRecord } from './types.js';

export type Handoff<T> =
  | { readonly kind: 'item'; readonly item: T; readonly take: () => void }
  | { readonly kind: 'end' }
  | { readonly kind: 'error'; readonly error: Error };

/**
 * Single-reader queue between kafkajs's callbacks and the async iterator. Items queue in
 * order; `finish` adds a terminal item that is returned after them, forever.
 */
export class HandoffQueue<T> {
  #items: Handoff<T>[] = [];
  #terminal: Handoff<T> | null = null;
  #waiter: ((item: Handoff<T>) => void) | null = null;

  get finished(): boolean {
    return this.#terminal !== null;
  }

  push(item: Handoff<T>): void {
    if (this.#terminal) return;
    this.#deliver(item);
  }

  finish(item: Handoff<T>): void {
    if (this.#terminal) return;
    this.#terminal = item;
    if (this.#items.length === 0) this.#deliver(item);
  }

  /** Drops every item not taken yet and ends with `item` (close: those would be read again anyway). */
  abort(item: Handoff<T>): void {
    this.#items = [];
    this.finish(item);
  }

  /** Removes an item the reader has not taken yet (its partition was revoked). */
  remove(item: Handoff<T>): void {
    this.#items = this.#items.filter((i) => i !== item);
  }

  next(): Promise<Handoff<T>> {
    const item = this.#items.shift() ?? (this.#items.length === 0 ? this.#terminal : null);
    if (item) return Promise.resolve(item);
    return new Promise((resolve) => {
      this.#waiter = resolve;
    });
  }

  /** The items in order, each taken as it is yielded; throws the terminal error, returns at the end. */
  async *drain(): AsyncGenerator<T> {
    for (;;) {
      const h = await this.next();
      if (h.kind === 'end') return;
      if (h.kind === 'error') throw h.error;
      h.take();
      yield h.item;
    }
  }

  #deliver(item: Handoff<T>): void {
    const waiter = this.#waiter;
    if (waiter) {
      this.#waiter = null;
      waiter(item);
    } else {
      this.#items.push(item);
    }
  }
}

/**
 * A one-shot signal (a source closing) that waits race against. A promise settled only at the
 * end, raced again and again, keeps one reaction per race (each holding what that race settled
 * with) until it settles: for a source consuming all day, one per batch. A wait on a latch is
 * dropped when its race is over.
 */
export class Latch {
  #open = false;
  readonly #waiters = new Set<() => void>();

  get isOpen(): boolean {
    return this.#open;
  }

  open(): void {
    if (this.#open) return;
    this.#open = true;
    for (const wake of this.#waiters) wake();
    this.#waiters.clear();
  }

  /** Waiters now (tests: none may stay behind a finished race). */
  get waiting(): number {
    return this.#waiters.size;
  }

  /** `Promise.race(others)`, cut short (undefined) when the latch opens. */
  async race<T>(others: readonly Promise<T>[]): Promise<T | undefined> {
    if (this.#open) return undefined;
    let wake!: () => void;
    const opened = new Promise<undefined>((resolve) => (wake = () => resolve(undefined)));
    this.#waiters.add(wake);
    try {
      return await Promise.race([...others, opened]);
    } finally {
      this.#waiters.delete(wake);
    }
  }
}

/**
 * Queues `item` and waits for the reader to take it, heartbeating every `heartbeatIntervalMs`
 * so a slow reader does not get the member kicked from the group. True: taken. False: given up
 * (closed, or kafkajs stopped or staled the batch) and removed, not delivered and not resolved,
 * so kafkajs (or the partition's next owner) fetches it again. A failed heartbeat (rebalancing)
 * removes it too and throws: kafkajs rejoins and refetches from the committed offset.
 */
export async function handOffAndWait<T>(
  queue: HandoffQueue<T>,
  item: T,
  payload: Pick<EachBatchPayload, 'heartbeat' | 'isRunning' | 'isStale'>,
  options: { readonly heartbeatIntervalMs: number; readonly closed: Latch },
): Promise<boolean> {
  let taken = false;
  let signalTaken!: () => void;
  const takenSignal = new Promise<void>((resolve) => {
    signalTaken = resolve;
  });
  const handoff: Handoff<T> = {
    kind: 'item',
    item,
    take: () => {
      taken = true;
      signalTaken();
    },
  };
  queue.push(handoff);
  while (!taken) {
    let timer: NodeJS.Timeout | undefined;
    await options.closed.race([takenSignal, new Promise<void>((resolve) => (timer = setTimeout(resolve, options.heartbeatIntervalMs)))]);
    clearTimeout(timer);
    if (taken) break;
    if (options.closed.isOpen || !payload.isRunning() || payload.isStale()) {
      queue.remove(handoff);
      return false;
    }
    try {
      await payload.heartbeat();
    } catch (err) {
      queue.remove(handoff);
      throw err;
    }
  }
  return true;
}

export function toRecord(topic: string, partition: number, m: KafkaMessage): KafkaRecord {
  return {
    topic,
    partition,
    offset: m.offset,
    key: m.key,
    value: m.value ?? EMPTY,
    // On the consuming side kafkajs gives Buffers (an array for a repeated key), never strings.
    headers: (m.headers ?? {}) as KafkaHeaders,
    timestamp: m.timestamp,
  };
}

const EMPTY = Buffer.alloc(0);
