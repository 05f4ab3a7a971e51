import type { Command } from 'commander';
import { configFromEnv, loadConfigFile, parseConfig } from '../shared/config.js';
import { kafkaSettingsFromEnv, produceConfigSchema } from '../shared/stream-config.js';
import type { ProduceConfig } from '../shared/stream-config.js';
import type { CliContext } from './run-command.js';

const collect = (value: string, previous: string[] | undefined) => [...(previous ?? []), value];

export function resolveProduceConfig(opts: Record<string, unknown>): ProduceConfig {
  const { config: configPath, json: _json, verbose: _verbose, ...flags } = opts;
  const fileLayer = typeof configPath === 'string' ? loadConfigFile(configPath) : {};
  const keys = Object.keys(produceConfigSchema.shape);
  return parseConfig(produceConfigSchema, [fileLayer, kafkaSettingsFromEnv(), configFromEnv(keys), flags], typeof configPath === 'string' ? `config (${configPath} + flags)` : 'options');
}

export function registerProduceCommand(program: Command, ctx: CliContext): void {
  program
    .command('produce')
    .description('load clips from Parquet/JSONL into a Kafka topic (JSON or Arrow IPC records)')
    .option('--input <path>', 'Parquet/JSONL file, folder or glob; repeat for several', collect)
    .option('--brokers <host:port,...>', 'Kafka bootstrap brokers')
    .option('--topic <topic>', 'topic to write (created when missing)')
    .option('--format <f>', 'json (one record per clip, key = id) or arrow (IPC streams of many rows, key = first id) (default: json)')
    .option('--partitions <n>', 'partitions when the topic is created (default: 4)')
    .option('--batch-rows <n>', 'rows read per batch; with arrow also rows per record at most (default: 1000)')
    .option('--id-field <name>', 'id column (default: id)')
    .option('--embedding-field <name>', 'embedding column (default: embedding)')
    .option('--metadata-fields <a,b>', 'columns sent along with each clip')
    .option('--client-id <id>', 'Kafka client id (default: semdedup)')
    .option('--ssl', 'TLS to the brokers')
    .option('--config <file>', 'YAML/JSON config with the same keys as these flags (and SASL credentials)')
    .option('--json', 'print the summary as JSON on stdout')
    .action(async (opts: Record<string, unknown>) => {
      const config = resolveProduceConfig(opts);
      const summary = await (await import('../stream/produce.js')).produceClips(config, { logger: ctx.logger });
      if (opts.json) process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
      else {
        process.stdout.write(
          `semdedup produce: ${summary.rows} clips in ${summary.messages} ${summary.format} records (${(summary.bytes / 1e6).toFixed(1)} MB) to ${summary.topic} ` +
            `(${summary.partitions} partitions) in ${summary.seconds.toFixed(2)}s${summary.skippedRows ? `; ${summary.skippedRows} undecodable lines skipped` : ''}\n`,
        );
      }
    });
}
