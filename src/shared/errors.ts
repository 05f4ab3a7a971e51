/**
 * One errors file. `InputError` is the user's data or config: printed as one line, no stack.
 * `RetriableError` may succeed on retry. `InvariantError` is a bug in semdedup.
 */
export interface ErrorContext {
  step?: string;
  file?: string;
  row?: number;
  field?: string;
  cluster?: number;
  topic?: string;
  partition?: number;
  offset?: string;
}

export class SemdedupError extends Error {
  readonly context: ErrorContext;
  readonly retriable: boolean;
  constructor(message: string, options: { cause?: unknown; context?: ErrorContext; retriable?: boolean } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.context = options.context ?? {};
    this.retriable = options.retriable ?? false;
  }
}

/** The user's input or configuration is wrong; exit code 2, message without a stack trace. */
export class InputError extends SemdedupError {}

export class RetriableError extends SemdedupError {
  constructor(message: string, options: { cause?: unknown; context?: ErrorContext } = {}) {
    super(message, { ...options, retriable: true });
  }
}

/** Invariant violation — likely a bug in semdedup. */
export class InvariantError extends SemdedupError {
  constructor(message: string, options: { cause?: unknown; context?: ErrorContext } = {}) {
    super(`invariant violation (likely a bug): ${message}`, options);
  }
}

export function invariant(condition: unknown, message: string): asserts condition {
  if (!condition) throw new InvariantError(message);
}

/** One line naming where the problem is: `file: row 12: field embedding: problem`. */
export function formatErrorLine(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const ctx = err instanceof SemdedupError ? err.context : {};
  const where: string[] = [];
  if (ctx.file && !err.message.includes(ctx.file)) where.push(ctx.file);
  if (ctx.row !== undefined) where.push(`row ${ctx.row}`);
  if (ctx.field && !err.message.includes(ctx.field)) where.push(`field ${ctx.field}`);
  if (ctx.cluster !== undefined) where.push(`cluster ${ctx.cluster}`);
  if (ctx.topic) where.push(`topic ${ctx.topic}${ctx.partition !== undefined ? `[${ctx.partition}]` : ''}`);
  return where.length ? `${where.join(': ')}: ${err.message}` : err.message;
}
