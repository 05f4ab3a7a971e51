/**
 * Stream metrics (Prometheus text format through prom-client) and the small HTTP server that
 * serves them. Metrics are declared here, apart from logs; steps only call `inc`/`set`/`observe`.
 * Each stream gets its own registry, so several streams (tests) in one process do not collide.
 */
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface StreamMetrics {
  readonly registry: Registry;
  readonly clipsIn: Counter<'format'>;
  readonly verdictsOut: Counter;
  readonly deadLetters: Counter<'reason'>;
  readonly consumerLag: Gauge<'partition'>;
  readonly flushLatency: Histogram;
  readonly bufferedRows: Gauge;
  readonly checkpoints: Counter;
  readonly paused: Gauge;
}

export function createStreamMetrics(options: { processMetrics?: boolean } = {}): StreamMetrics {
  const registry = new Registry();
  if (options.processMetrics) collectDefaultMetrics({ register: registry });
  const registers = [registry];
  return {
    registry,
    clipsIn: new Counter({ name: 'clips_in_total', help: 'Clips accepted into the dedup state, by record format', labelNames: ['format'], registers }),
    verdictsOut: new Counter({ name: 'verdicts_out_total', help: 'Duplicate verdicts published (acknowledged by the brokers)', registers }),
    deadLetters: new Counter({ name: 'dead_letter_total', help: 'Rows refused and written to the dead-letter topic, by reason class', labelNames: ['reason'], registers }),
    consumerLag: new Gauge({ name: 'consumer_lag', help: 'Records behind the partition end when its last batch was fetched', labelNames: ['partition'], registers }),
    flushLatency: new Histogram({
      name: 'flush_latency_seconds',
      help: 'Time of one checkpoint: kernel flush of the buffers and the state write',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    bufferedRows: new Gauge({ name: 'buffered_rows', help: 'Rows taken in since the last checkpoint', registers }),
    checkpoints: new Counter({ name: 'checkpoints_total', help: 'Checkpoints completed (state durable, verdicts published, offsets committed)', registers }),
    paused: new Gauge({ name: 'consumer_paused', help: '1 while the consumer is paused for backpressure', registers }),
  };
}

/**
 * Reason classes for the `reason` label: the dead letter's header keeps the full reason, the
 * label keeps few values (a free-text label would grow without bound). Several problems of one
 * record are joined by "; " — the first one classifies it.
 */
const REASON_CLASSES: readonly [RegExp, string][] = [
  [/^invalid JSON|^not a JSON object/, 'invalid_json'],
  [/^empty value/, 'empty_value'],
  [/Arrow|^(id|embedding|metadata) column/, 'invalid_arrow'],
  [/^duplicate id/, 'duplicate_id'],
  [/^id is null/, 'missing_id'],
  [/^wrong dimension/, 'wrong_dimension'],
  [/^embedding has (NaN|Inf)/, 'non_finite'],
  [/^embedding is the zero vector/, 'zero_vector'],
  [/^embedding is null/, 'missing_embedding'],
  [/^no field|^field "/, 'bad_field'],
  [/^record of \d+ bytes exceeds/, 'oversized'],
];

export function reasonClass(reason: string): string {
  const first = reason.split('; ')[0]!;
  return REASON_CLASSES.find(([re]) => re.test(first))?.[1] ?? 'other';
}

export interface MetricsServer {
  readonly url: string;
  close(): Promise<void>;
}

/** Serves `/metrics` (Prometheus text) and `/healthz` (200 while `healthy()` says so, else 503). */
export async function startMetricsServer(registry: Registry, options: { host: string; port: number; healthy: () => boolean }): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/metrics') {
      registry.metrics().then(
        (text) => {
          res.writeHead(200, { 'content-type': registry.contentType });
          res.end(text);
        },
        (err: unknown) => {
          res.writeHead(500, { 'content-type': 'text/plain' });
          res.end(String(err));
        },
      );
    } else if (path === '/healthz') {
      const ok = options.healthy();
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' });
      res.end(ok ? 'ok\n' : 'unhealthy\n');
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found: try /metrics or /healthz\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { address, port } = server.address() as AddressInfo;
  return {
    url: `http://${address.includes(':') ? `[${address}]` : address}:${port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
