import { basename } from 'node:path';
import type { Command } from 'commander';
import { DEFAULT_ROWS_PER_FILE, exportDeduplicated } from '../export/index.js';
import { parseStorageOptions } from '../shared/config.js';
import { parseCount } from './inspect-command.js';
import type { CliContext } from './run-command.js';

/** `part-00000.parquet (1000000 rows), ...`, shortened when there are many files. */
function fileList(files: readonly { path: string; rows: number }[]): string {
  const show = files.length > 4 ? [files[0]!, files[1]!, files[files.length - 1]!] : files;
  const text = show.map((f) => `${basename(f.path)} (${f.rows} rows)`);
  if (files.length > 4) text.splice(2, 0, `... ${files.length - 3} more ...`);
  return text.join(', ');
}

const collect = (value: string, previous: string[] | undefined) => [...(previous ?? []), value];

export function registerExportCommand(program: Command, ctx: CliContext): void {
  program
    .command('export')
    .description('write the deduplicated data set: the input minus the clips listed in duplicates/, same columns and types, as Parquet')
    .requiredOption('--input <path>', 'the Parquet/JSONL file, folder or glob the run read; repeat for several', collect)
    .requiredOption('--duplicates <dir>', "the run's duplicates/ folder (Parquet with an id column), e.g. out/duplicates")
    .requiredOption('--output <dir>', 'folder for part-00000.parquet, part-00001.parquet, ... (previous part files there are replaced)')
    .option('--rows-per-file <n>', `rows per output file at most (default: ${DEFAULT_ROWS_PER_FILE})`)
    .option('--id-field <name>', 'id column of the input (default: id)')
    .option('--embedding-field <name>', 'JSONL input only: field written as list<float32> (default: embedding)')
    .option('--allow-missing', 'export even when the duplicate list names ids that are not in the input (default: refuse with exit code 2)')
    .option('--storage-options <json>', 'for s3:// paths: {"endpoint", "region", "forcePathStyle", "accessKeyId", "secretAccessKey"} (default: SEMDEDUP_STORAGE_OPTIONS, then the AWS env/config chain)')
    .option('--json', 'print {input_rows, removed, kept, missing, files, schema, ...} as JSON')
    .addHelpText(
      'after',
      `
Every input column is kept with its type (fixed_size_list stays fixed_size_list, int64 stays
int64); JSONL input is written as Parquet. Rows keep the input order. Files are written under
temporary names and renamed when complete. kept + removed = input rows.

Examples:
  semdedup export --input .data/sample/clips.parquet --duplicates out/sample/duplicates --output out/sample-dedup
  semdedup export --input 'emb/*.parquet' --duplicates out/duplicates --output clean/ --rows-per-file 500000 --json
  semdedup export --input s3://bucket/emb/ --duplicates s3://bucket/dedup/duplicates --output s3://bucket/clean/`,
    )
    .action(async (opts: Record<string, unknown>) => {
      const result = await exportDeduplicated({
        input: opts.input as string[],
        duplicates: String(opts.duplicates),
        output: String(opts.output),
        rowsPerFile: opts.rowsPerFile === undefined ? undefined : parseCount(opts.rowsPerFile, '--rows-per-file', 1),
        idField: opts.idField as string | undefined,
        embeddingField: opts.embeddingField as string | undefined,
        allowMissing: Boolean(opts.allowMissing),
        storage: parseStorageOptions(opts.storageOptions ?? process.env.SEMDEDUP_STORAGE_OPTIONS),
        logger: ctx.logger,
      });
      if (opts.json) {
        process.stdout.write(JSON.stringify(result, null, 2) + '\n');
        return;
      }
      const missing = result.missing > 0 ? `; ${result.missing} listed ids were not in the input (--allow-missing)` : '';
      process.stdout.write(
        `semdedup: kept ${result.kept} of ${result.input_rows} rows, removed ${result.removed} duplicates${missing}\n` +
          `  wrote ${result.files.length} file(s) to ${result.output}: ${fileList(result.files)}\n` +
          `  columns: ${result.schema.join(', ')}\n`,
      );
    });
}
