/**
 * Pausing and committing on a kafkajs consumer, shared by `createKafkaSource` (source.ts) and
 * `createGroupKafkaSource` (group-source.ts), so both survive kafkajs restarting a crashed
 * consumer (a broker outage): pauses are remembered and applied again on every join, pause and
 * resume do not throw while the consumer is down, and commits retry within the retry window.
 */
import type { Consumer } from 'kafkajs';
import type { Logger } from '../../runtime/logging.js';
import { kafkaError, withKafkaRetryWindow } from './client.js';
import type { KafkaCommitPosition } from './types.js';

export interface ReaderPauses {
  /** Stops fetching `only` (all of `allPartitions` when null) and remembers it. */
  pause(only: readonly number[] | null): void;
  /** Fetches `only` again (all when null) and forgets it. */
  resume(only: readonly number[] | null): void;
  /** consumer.pause that logs instead of throwing while kafkajs restarts the consumer. */
  pauseSafely(only: readonly number[] | null): void;
  resumeSafely(only: readonly number[] | null): void;
}

/**
 * kafkajs forgets paused partitions when it restarts a crashed consumer, and pause/resume
 * throw while it is down: remember what the reader paused and apply it again on every join
 * (with `alsoPausedOnJoin`, e.g. partitions that reached their end).
 */
export function trackReaderPauses(
  consumer: Consumer,
  topic: string,
  options: { readonly allPartitions: () => readonly number[]; readonly logger: Logger; readonly alsoPausedOnJoin?: () => readonly number[] },
): ReaderPauses {
  const { logger } = options;
  const pausedByReader = new Set<number>();
  const pauseSafely = (only: readonly number[] | null): void => {
    try {
      consumer.pause([only ? { topic, partitions: [...only] } : { topic }]);
    } catch (err) {
      logger.debug({ err }, 'pause while the consumer restarts; applied when it rejoins');
    }
  };
  const resumeSafely = (only: readonly number[] | null): void => {
    try {
      consumer.resume([only ? { topic, partitions: [...only] } : { topic }]);
    } catch (err) {
      logger.debug({ err }, 'resume while the consumer restarts; nothing is paused after it rejoins');
    }
  };
  consumer.on(consumer.events.GROUP_JOIN, () => {
    const keep = new Set([...pausedByReader, ...(options.alsoPausedOnJoin?.() ?? [])]);
    if (keep.size > 0) pauseSafely([...keep]);
  });
  return {
    pause: (only) => {
      for (const p of only ?? options.allPartitions()) pausedByReader.add(p);
      pauseSafely(only);
    },
    resume: (only) => {
      for (const p of only ?? options.allPartitions()) pausedByReader.delete(p);
      resumeSafely(only);
    },
    pauseSafely,
    resumeSafely,
  };
}

/**
 * Commits `positions` (all of `topic`). While kafkajs restarts the consumer (after a broker
 * outage) a commit throws: it is retried until the consumer has rejoined, within `windowMs`.
 * `mayCommit`, checked before each attempt: false resolves false, nothing committed (the group
 * moved on meanwhile). `refused(err)`: an error that means "not committed" rather than a
 * failure; resolves false. Other failures throw a SemdedupError.
 */
export async function commitWithinRetryWindow(
  consumer: Consumer,
  topic: string,
  positions: readonly KafkaCommitPosition[],
  options: { readonly windowMs: number; readonly logger: Logger; readonly mayCommit?: () => boolean; readonly refused?: (err: unknown) => boolean },
): Promise<boolean> {
  try {
    return await withKafkaRetryWindow(
      async () => {
        if (options.mayCommit && !options.mayCommit()) return false;
        try {
          await consumer.commitOffsets(positions.map((p) => ({ topic, partition: p.partition, offset: p.offset })));
          return true;
        } catch (err) {
          if (options.refused?.(err)) return false;
          throw err;
        }
      },
      { windowMs: options.windowMs, logger: options.logger, what: 'Kafka offset commit', context: { partitions: positions.map((p) => p.partition) } },
    );
  } catch (err) {
    throw kafkaError('Kafka: offset commit failed', err, { topic, partition: positions[0]!.partition });
  }
}
