import type { Command } from 'commander';
import type { StreamSummary } from '../stream/run.js';
import { configFromEnv, loadConfigFile, parseConfig } from '../shared/config.js';
import { kafkaSettingsFromEnv, streamConfigSchema } from '../shared/stream-config.js';
import type { StreamConfig } from '../shared/stream-config.js';
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
  program
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
    .option('--flush-max-rows <n>', 'checkpoint when this many rows wait (default: 4096)')
    .option('--flush-max-ms <ms>', 'checkpoint when the oldest waiting row is this old (default: 100)')
    .option('--max-buffered-rows <n>', 'pause the consumer past this many waiting rows (default: 4 x flush-max-rows)')
    .option('--metrics-port <port>', 'Prometheus /metrics and /healthz; 0 = off (default: 9464)')
    .option('--metrics-host <host>', 'address the metrics server listens on (default: 127.0.0.1)')
    .option('--backend <name>', 'kernel backend: cpu, gpu or js (default: cpu)')
    .option('--client-id <id>', 'Kafka client id (default: semdedup)')
    .option('--ssl', 'TLS to the brokers (or KAFKA_SSL=1; KAFKA_SSL_CA_FILE for a private CA)')
    .option('--config <file>', 'YAML/JSON config with the same keys as these flags; SASL credentials go here or in KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD / KAFKA_SASL_MECHANISM')
    .option('--json', 'print the summary as JSON on stdout')
    .addHelpText(
      'after',
      `
Examples:
  semdedup stream --brokers 127.0.0.1:9092 --input-topic clips --output-topic dups --group semdedup \\
    --centroids out/ --state state/ --eps 0.01
  semdedup stream ... --stop-at-end          # drain the topic as it is now, then exit

Out: key = clip id, value = {"id","max_id","cosine_sim_score","centroid"}; a later record for a key
supersedes the earlier one. SIGTERM/SIGINT: stop fetching, checkpoint, publish, commit, exit 0.`,
    )
    .action(async (opts: Record<string, unknown>) => {
      const config = resolveStreamConfig(opts);
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
        const summary = await (await import('../stream/run.js')).runStream(config, { logger: ctx.logger, signal: controller.signal });
        if (opts.json) process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
        else printStreamSummary(summary);
      } finally {
        process.off('SIGTERM', onSignal);
        process.off('SIGINT', onSignal);
      }
    });
}
