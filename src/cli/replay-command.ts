import type { Command } from 'commander';
import { configFromEnv, loadConfigFile, parseConfig, replayConfigSchema } from '../shared/config.js';
import { addIncrementalStateOptions } from './incremental-options.js';
import type { CliContext } from './run-command.js';

const collect = (value: string, previous: string[] | undefined) => [...(previous ?? []), value];

export function registerReplayCommand(program: Command, ctx: CliContext): void {
  const cmd = program
    .command('replay')
    .description('feed Parquet history through the streaming topology (no broker needed); NeMo output layout out, optional state for `stream` to continue')
    .option('--input <path>', 'Parquet/JSONL file, folder or glob; repeat for several (any order gives the same result)', collect)
    .option('--centroids <file|dir>', 'kmeans_centroids.npy, or a `run` output folder holding one (required)')
    .option('--output <dir>', 'output folder (NeMo layout, as `run`)')
    .option('--eps <e>', 'write duplicates/ (score >= 1 - eps) and publish only duplicates')
    .option('--state <dir>', 'streaming state folder to build or continue; `semdedup stream --state` continues from it')
    .option('--which-to-keep <mode>', 'hard, easy or random (default: hard)')
    .option('--ranking <col:asc|desc,...>', 'rank by metadata columns instead; id ascending breaks ties')
    .option('--metadata-fields <a,b>', 'input columns carried to kmeans_results and usable by --ranking')
    .option('--distance-metric <m>', 'cosine or l2 (default: cosine)')
    .option('--id-field <name>', 'id column (default: id)')
    .option('--embedding-field <name>', 'embedding column (default: embedding)')
    .option('--seed <n>', 'seed of the random ranking hash (default: 42)')
    .option('--flush-max-rows <n>', 'clips buffered per cluster before the kernel folds them into state (default: 4096)')
    .option('--batch-rows <n>', 'rows per input batch (default: 16384)')
    .option('--reader <name>', 'Parquet decoder: duckdb (native) or parquet-wasm (default: duckdb)')
    .option('--backend <name>', 'cpu, gpu or js (default: cpu)');
  addIncrementalStateOptions(cmd)
    .option('--from-topic <topic>', 'replay this Kafka topic from its first offset to the end offsets seen at start, instead of --input')
    .option('--id-type <type>', 'id type of JSON records read with --from-topic: string or int64 (default: string)')
    .option('--output-topic <topic>', 'also publish duplicate verdicts to this Kafka topic')
    .option('--brokers <list>', 'Kafka brokers for --from-topic / --output-topic (default: 127.0.0.1:9092)')
    .option('--no-clear-output', 'refuse to run when the output folder already holds results')
    .option('--storage-options <json>', 'for s3:// paths: {"endpoint", "region", "forcePathStyle", "accessKeyId", "secretAccessKey"} (default: the AWS env/config chain)')
    .option('--config <file>', 'YAML/JSON config with the same keys as these flags')
    .option('--json', 'print summary.json on stdout')
    .addHelpText('after', '\nExamples:\n  semdedup replay --input history/ --centroids out/kmeans_centroids.npy --output replayed/ --eps 0.01 --state state/\n  semdedup replay --from-topic clips --brokers 127.0.0.1:9092 --centroids out/ --output replayed/ --eps 0.01\n')
    .action(async (opts: Record<string, unknown>) => {
      const { config: configPath, json, ...flags } = opts;
      if (flags.clearOutput === true) delete flags.clearOutput;
      const fileLayer = typeof configPath === 'string' ? loadConfigFile(configPath) : {};
      const config = parseConfig(replayConfigSchema, [fileLayer, configFromEnv(Object.keys(replayConfigSchema.shape)), flags], 'options');
      const summary = await (await import('../replay/run.js')).runReplay(config, { logger: ctx.logger });
      if (json) process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
      else {
        const dup = summary.duplicates === null ? 'no --eps: pairwise scores written' : `${summary.duplicates} duplicates (eps ${config.eps})`;
        process.stdout.write(`semdedup replay: ${summary.rows} clips replayed (${summary.clips_in_state} in state) in ${summary.clusters} clusters → ${dup}; ${summary.rejected_rows} rows rejected\n  output: ${config.output}\n`);
      }
    });
}
