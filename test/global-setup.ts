/**
 * vitest globalSetup: makes sure a Kafka broker is there for the integration tests.
 *
 * - `KAFKA_BROKERS` set (CI service, your own cluster): used as is, nothing is started.
 * - unset: runs `scripts/kafka-up.sh` (idempotent; a few seconds the first time, ~0.3 s when the
 *   broker already runs) and points the tests at `127.0.0.1:${KAFKA_PORT:-9092}`.
 * - `SEMDEDUP_SKIP_KAFKA=1`: starts nothing (unit-only runs on a machine without Java).
 *
 * The broker is left running after the tests so the next run starts fast; stop it with
 * `npm run kafka:down`. Tests read the address with `inject('kafkaBrokers')` from vitest, or
 * `process.env.KAFKA_BROKERS`, which the forked workers inherit as well.
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Comma-separated `host:port` list; empty when Kafka was skipped. */
    kafkaBrokers: string;
  }
}

const KAFKA_UP = fileURLToPath(new URL('../scripts/kafka-up.sh', import.meta.url));

export default function setup(project: TestProject): void {
  let brokers = process.env.KAFKA_BROKERS ?? '';
  if (!brokers && process.env.SEMDEDUP_SKIP_KAFKA !== '1') {
    try {
      const out = execFileSync('bash', [KAFKA_UP], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 300_000 });
      process.stdout.write(out);
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string; message: string };
      throw new Error(`scripts/kafka-up.sh failed (set KAFKA_BROKERS to use another broker):\n${e.stdout ?? ''}${e.stderr ?? e.message}`);
    }
    brokers = `127.0.0.1:${process.env.KAFKA_PORT ?? '9092'}`;
    process.env.KAFKA_BROKERS = brokers;
  }
  project.provide('kafkaBrokers', brokers);
  // No teardown on purpose: the broker outlives the run (see above).
}
