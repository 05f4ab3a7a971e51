import type { Command } from 'commander';
import type { StreamSummary } from '../stream/run.js';
import { configFromEnv, loadConfigFile, parseConfig } from '../shared/config.js';
import { kafkaSettingsFromEnv, streamConfigSchema } from '../shared/stream-config.js';
import type { StreamConfig } from '../shared/stream-config.js';
import { addIncrementalStateOptions } from './incremental-options.js';
import type { CliContext } from './run-command.js';

/** Merge defaults < config file < KAFKA_* env (credentials) < SEMDEDUP_* env < flags, and validate. */
export function resolveStreamConfig(opts: Record<string, unknown>): StreamConfig {
  const { config: configPath, json: _json, verbose: _verbose, ...flags } = opts;
  const fileLayer = typeof configPath === 'string' ? loadConfigFile(configPath) : {};
  const keys = Object.keys(streamConfigSchema.shape);
  return parseConfig(streamConfigSchema, [fileLayer, kafkaSettingsFromEnv(), configFromEnv(keys), flags], typeof configPath === 'string' ? `config (${configPath} + flags)` : 'options');
}

export function printStreamSummary(s: StreamSummary): void {
  const t = Object.entries(s.timings).map(([k, v]) => `${k} ${v.toFixed(2)}s`).join(', ');
  process.stdout.write(
    `semdedup stream: ${s.clipsIn} clips in (${s.clipsPerSecond}/s), ${s.verdictsOut} duplicate verdicts out, ${s.deadLetters} rows dead-lettered; ` +
      `state holds ${s.stateSize} clips; ${s.checkpoints} checkpoints; stopped by ${s.stopped === 'end' ? 'reaching the end offsets' : 'signal'}\n` +
      `  time: ${s.seconds.toFixed(2)}s (${t})\n`,
  );
}

export function registerStreamCommand(program: Command, ctx: CliContext): void {
  const cmd = program
    .command('stream')
    .description('incremental semantic dedup of clips arriving on Kafka: duplicate verdicts out on a keyed topic')
    .option('--brokers <host:port,...>', 'Kafka bootstrap brokers')
    .option('--input-topic <topic>', 'topic of clip records (JSON, or Arrow IPC with content-type application/vnd.apache.arrow.stream)')
    .option('--output-topic <topic>', 'topic of duplicate verdicts, key = clip id (created compacted when missing)')
    .option('--group <id>', 'consumer group')
    .option('--centroids <file.npy|dir>', 'kmeans_centroids.npy, or a `semdedup run` output folder holding one')
    .option('--state <dir>', 'state folder (state.duckdb); reuse it to continue')
    .option('--eps <e>', 'duplicates are clips with cosine_sim_score >= 1 - eps (default: 0.01)')
    .option('--which-to-keep <mode>', 'hard, easy or random (default: hard)')
    .option('--ranking <col:asc|desc,...>', 'rank by metadata fields instead; id ascending breaks ties')
    .option('--metadata-fields <a,b>', 'record fields carried with each clip (needed by --ranking)')
    .option('--distance-metric <m>', 'cosine or l2 (default: cosine)')
    .option('--seed <n>', 'seed of the random ranking (default: 42)')
    .option('--id-field <name>', 'id field (default: id)')
    .option('--embedding-field <name>', 'embedding field (default: embedding)')
    .option('--id-type <t>', 'string or int64: the type of the ids (default: string)')
    .option('--dead-letter-topic <topic>', 'refused records go here with a reason header (default: <input-topic>.dlq)')
    .option('--stop-at-end', 'consume up to the end offsets seen at start, checkpoint, commit, exit 0')
    .option('--max-record-bytes <n>', 'refuse (dead-letter) records larger than this, bytes (default: 8388608 = 8 MiB)')
    .option('--kafka-retry-window-ms <ms>', 'keep retrying a Kafka write or commit that fails transiently (broker down) this long before stopping (default: 120000)')
    .option('--flush-max-rows <n>', 'checkpoint when this many rows wait (default: 4096)')
    .option('--flush-max-ms <ms>', 'checkpoint when the oldest waiting row is this old (default: 100)')
    .option('--max-buffered-rows <n>', 'pause the consumer past this many waiting rows (default: 4 x flush-max-rows)');
  addIncrementalStateOptions(cmd)
    .option('--metrics-port <port>', 'Prometheus /metrics and /healthz; 0 = off (default: 9464)')
    .option('--metrics-host <host>', 'address the metrics server listens on (default: 127.0.0.1)')
    .option('--backend <name>', 'kernel backend: cpu, gpu or js (default: cpu)')
    .option('--client-id <id>', 'Kafka client id (default: semdedup)')
    .option('--ssl', 'TLS to the brokers (or KAFKA_SSL=1; KAFKA_SSL_CA_FILE for a private CA)')
    .option('--role <role>', 'all (one process does both stages, the default), router (validate, assign, write the internal by-cluster topic) or worker (dedup the clusters of owned internal partitions); see docs/SCALING.md')
    .option('--partitions <n>', 'router: partitions of the internal topic when it creates it (default: min(clusters, 16)); the cluster → partition mapping is cluster % n')
    .option('--internal-topic <topic>', 'router/worker: the internal topic between them (default: <input-topic>.by-cluster; created with retention.ms=-1)')
    .option('--session-timeout-ms <ms>', 'consumer-group session timeout: how soon a dead member\'s partitions move (default: 30000; broker minimum 6000)')
    .option('--config <file>', 'YAML/JSON config with the same keys as these flags; SASL credentials go here or in KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD / KAFKA_SASL_MECHANISM')
    .option('--json', 'print the summary as JSON on stdout')
    .addHelpText(
      'after',
      `
Examples:
  semdedup stream --brokers 127.0.0.1:9092 --input-topic clips --output-topic dups --group semdedup \\
    --centroids out/ --state state/ --eps 0.01
  semdedup stream ... --stop-at-end          # drain the topic as it is now, then exit

Scale-out (docs/SCALING.md): routers and workers are separate consumer groups (--group):
  semdedup stream --role router --group semdedup-router --partitions 12 ...   # any number of routers
  semdedup stream --role worker --group semdedup-worker --state state-w1/ ... # one per node; add more to scale
  Workers own whole clusters: internal partition p holds the clusters c with c % partitions = p.
  Worker --stop-at-end: exit once the group has committed the internal topic up to its end at start.
  Router --stop-at-end: as for --role all (expects to be the router group's only member).

Out: key = clip id, value = {"id","max_id","cosine_sim_score","centroid"}; a later record for a key
supersedes the earlier one. SIGTERM/SIGINT: stop fetching, checkpoint, publish, commit, exit 0.`,
    )
    .action(async (opts: Record<string, unknown>) => {
      // The router keeps no state: --state is not needed there.
      const config = resolveStreamConfig(opts.role === 'router' && opts.state === undefined ? { ...opts, state: '(none: router)' } : opts);
      const controller = new AbortController();
      let signals = 0;
      const onSignal = (name: NodeJS.Signals): void => {
        signals++;
        if (signals === 1) {
          ctx.logger.info({ signal: name }, 'stopping: checkpoint, publish, commit, close (signal again to exit at once)');
          controller.abort();
        } else {
          process.exit(130);
        }
      };
      process.on('SIGTERM', onSignal);
      process.on('SIGINT', onSignal);
      try {
        if (config.role !== 'all') {
          const { runScaleOutRole, printScaleOutSummary } = await import('../stream/scale-out.js');
          const summary = await runScaleOutRole(config, { logger: ctx.logger, signal: controller.signal });
          if (opts.json) process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
          else printScaleOutSummary(summary);
          return;
        }
        const summary = await (await import('../stream/run.js')).runStream(config, { logger: ctx.logger, signal: controller.signal });
        if (opts.json) process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
        else printStreamSummary(summary);
      } finally {
        process.off('SIGTERM', onSignal);
        process.off('SIGINT', onSignal);
      }
    });
}
