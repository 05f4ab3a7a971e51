/**
 * Fast path for JSON clip records: the embedding array (most of a record's bytes) is parsed
 * straight from the record's bytes into float32, and only the rest of the record goes through
 * `JSON.parse`, with the array replaced by `[]`.
 *
 * Why: `JSON.parse` of 768 numbers with 17 significant digits costs ~100 µs per clip (a heap
 * double per element, then a copy into float32); this path is several times faster.
 *
 * Why it is exact: the array is accepted only if it is JSON's grammar for an array of numbers,
 * whole. The scan that finds it tracks strings (with escapes) and nesting as a JSON parser does,
 * so in a valid document it finds exactly the top-level member; and since a complete array
 * value is swapped for another complete array value, the rest parses as the whole document
 * would (or fails as it would: then the caller parses the whole document the usual way, for the
 * exact error message). Each number becomes the float32 that `Math.fround(Number(text))` gives:
 * the decimal digits are converted with an error far below float32 precision, and a number
 * whose value lies too near a float32 rounding boundary (or has too many digits or too large an
 * exponent for the fast conversion) is converted by `Number` itself. Anything unusual (escaped
 * keys, the field twice, a non-number element, a non-object document) makes it return null and
 * the caller takes the ordinary path.
 */

export interface SplitJsonRecord {
  /** The record's text with the embedding array replaced by `[]`. */
  readonly rest: string;
  /** The array's elements as float32 (a view of the caller's scratch). */
  readonly values: Float32Array;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const LBRACE = 0x7b;
const RBRACE = 0x7d;
const LBRACKET = 0x5b;
const RBRACKET = 0x5d;
const MINUS = 0x2d;
const PLUS = 0x2b;
const DOT = 0x2e;
const ZERO = 0x30;
const NINE = 0x39;

const isSpace = (c: number) => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
const isDigit = (c: number) => c >= ZERO && c <= NINE;

/** Exact powers of ten (10^0 … 10^22 are exact doubles). */
const POW10 = Array.from({ length: 23 }, (_, i) => Number(`1e${i}`));

/** Float32 bit views for the rounding-boundary check. */
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
/** 2^(e − 150): the float32 ulp for biased exponent e (e = 0: subnormal, same as e = 1). */
const ULP32 = Array.from({ length: 256 }, (_, e) => 2 ** (Math.max(e, 1) - 150));

/** The bytes being parsed, for 4-byte reads. */
let view: DataView = new DataView(new ArrayBuffer(4));
let lastField = '';
let lastKey = Buffer.alloc(0);

/** Reusable scratch for the values (grown as needed; callers copy out before the next call). */
let scratch = new Float32Array(1024);

/**
 * Split a JSON record into its embedding array (as float32) and the rest, or null when the fast
 * path does not apply (see the module doc).
 */
export function splitJsonEmbedding(bytes: Uint8Array, field: string): SplitJsonRecord | null {
  if (field !== lastField) {
    lastField = field;
    lastKey = Buffer.from(field, 'utf8');
  }
  const key = lastKey;
  view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = bytes.length;
  let p = 0;
  while (p < n && isSpace(bytes[p]!)) p++;
  if (bytes[p] !== LBRACE) return null;
  p++;
  let arrayStart = -1;
  let arrayEnd = -1;
  let count = 0;
  for (;;) {
    while (p < n && isSpace(bytes[p]!)) p++;
    if (bytes[p] === RBRACE) break;
    if (bytes[p] !== QUOTE) return null;
    // Key: raw bytes up to the closing quote; an escaped key could spell the field: slow path.
    const keyStart = ++p;
    while (p < n && bytes[p] !== QUOTE) {
      if (bytes[p] === BACKSLASH) return null;
      p++;
    }
    if (p >= n) return null;
    const isField = p - keyStart === key.length && bytesAt(bytes, keyStart, key);
    p++;
    while (p < n && isSpace(bytes[p]!)) p++;
    if (bytes[p] !== COLON) return null;
    p++;
    while (p < n && isSpace(bytes[p]!)) p++;
    if (isField) {
      if (arrayStart >= 0 || bytes[p] !== LBRACKET) return null; // twice, or not an array
      arrayStart = p;
      const parsed = parseNumberArray(bytes, p);
      if (parsed < 0) return null;
      arrayEnd = parsed;
      count = parsedCount;
      p = parsed;
    } else {
      p = skipValue(bytes, p);
      if (p < 0) return null;
    }
    while (p < n && isSpace(bytes[p]!)) p++;
    if (bytes[p] === COMMA) {
      p++;
      continue;
    }
    if (bytes[p] === RBRACE) break;
    return null;
  }
  if (arrayStart < 0) return null;
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const rest = `${buf.toString('utf8', 0, arrayStart)}[]${buf.toString('utf8', arrayEnd)}`;
  return { rest, values: scratch.subarray(0, count) };
}

/** Elements of the last `parseNumberArray` (in `scratch`). */
let parsedCount = 0;

/**
 * Parse `[ number, … ]` starting at `p` (the `[`) into `scratch`; returns the position after
 * `]`, or -1 when it is not exactly an array of JSON numbers.
 */
function parseNumberArray(bytes: Uint8Array, p: number): number {
  const n = bytes.length;
  let count = 0;
  p++;
  while (p < n && isSpace(bytes[p]!)) p++;
  if (bytes[p] === RBRACKET) {
    parsedCount = 0;
    return p + 1;
  }
  for (;;) {
    const end = parseNumber(bytes, p);
    if (end < 0) return -1;
    if (count === scratch.length) {
      const next = new Float32Array(scratch.length * 2);
      next.set(scratch);
      scratch = next;
    }
    scratch[count++] = parsedValue;
    p = end;
    while (p < n && isSpace(bytes[p]!)) p++;
    const c = bytes[p];
    if (c === COMMA) {
      p++;
      while (p < n && isSpace(bytes[p]!)) p++;
      continue;
    }
    if (c === RBRACKET) {
      parsedCount = count;
      return p + 1;
    }
    return -1;
  }
}

/** Value of the last `parseNumber` (already rounded to float32). */
let parsedValue = 0;

/**
 * One JSON number at `p` (grammar `-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?`) into `parsedValue`
 * as float32; returns the position after it, or -1.
 */
function parseNumber(bytes: Uint8Array, start: number): number {
  let p = start;
  let c = bytes[p]!;
  const negative = c === MINUS;
  if (negative) c = bytes[++p]!;
  // Significant digits: the first 15 exactly in `hi`, the next 4 in `lo`; more: slow path.
  let hi = 0;
  let lo = 0;
  let digits = 0;
  let loDigits = 0;
  /** Power of ten applied to hi·10^loDigits + lo. */
  let scale = 0;
  if (c === ZERO) {
    c = bytes[++p]!;
  } else if (c > ZERO && c <= NINE) {
    do {
      if (digits < 15) hi = hi * 10 + (c - ZERO);
      else if (digits < 19) {
        lo = lo * 10 + (c - ZERO);
        loDigits++;
      } else scale++;
      digits++;
      c = bytes[++p]!;
    } while (c >= ZERO && c <= NINE);
  } else return -1;
  if (c === DOT) {
    c = bytes[++p]!;
    if (!(c >= ZERO && c <= NINE)) return -1;
    if (digits === 0) {
      // 0.000…: leading zeros are not significant.
      while (c === ZERO) {
        scale--;
        c = bytes[++p]!;
      }
    }
    // Four digits per step while they fit the exact part (most of a float32's ~17 digits).
    const limit = bytes.length - 4;
    while (digits <= 11 && p <= limit) {
      const w = view.getUint32(p, true);
      if ((w & 0xf0f0f0f0) !== 0x30303030 || ((w + 0x06060606) & 0xf0f0f0f0) !== 0x30303030) break;
      const d = w - 0x30303030; // each byte 0…9, the first digit in the low byte
      const pairs = (d * 10 + (d >>> 8)) & 0x00ff00ff; // bytes 0 and 2: two-digit values
      hi = hi * 10000 + (pairs & 0xff) * 100 + (pairs >>> 16);
      digits += 4;
      scale -= 4;
      p += 4;
    }
    c = bytes[p]!;
    while (c >= ZERO && c <= NINE) {
      if (digits < 15) {
        hi = hi * 10 + (c - ZERO);
        scale--;
      } else if (digits < 19) {
        lo = lo * 10 + (c - ZERO);
        loDigits++;
        scale--;
      }
      digits++;
      c = bytes[++p]!;
    }
  }
  if (c === 0x65 || c === 0x45) {
    c = bytes[++p]!;
    let expNegative = false;
    if (c === MINUS || c === PLUS) {
      expNegative = c === MINUS;
      c = bytes[++p]!;
    }
    if (!(c >= ZERO && c <= NINE)) return -1;
    let exp = 0;
    do {
      if (exp < 100000) exp = exp * 10 + (c - ZERO);
      c = bytes[++p]!;
    } while (c >= ZERO && c <= NINE);
    scale += expNegative ? -exp : exp;
  }
  let v: number;
  if (digits > 19 || scale < -22 || scale > 22) {
    parsedValue = Math.fround(slowNumber(bytes, start, p));
    return p;
  }
  // |error| ≤ ~2 double ulps: hi·10^k and the sum round once each, the scaling once.
  const m = loDigits > 0 ? hi * POW10[loDigits]! + lo : hi;
  v = scale < 0 ? m / POW10[-scale]! : m * POW10[scale]!;
  if (negative) v = -v;
  f32[0] = v;
  const r = f32[0]!;
  if (v !== r) {
    const bits = u32[0]!;
    const e = (bits >>> 23) & 0xff;
    if (e === 0xff) {
      // Beyond float32's range: Number decides how it rounds to the largest float or infinity.
      parsedValue = Math.fround(slowNumber(bytes, start, p));
      return p;
    }
    // Near the midpoint between two float32 values, the double that Number would give decides.
    let half = ULP32[e]! / 2;
    // Just below a power of two the spacing toward zero is half as wide.
    if ((bits & 0x7fffff) === 0 && Math.abs(v) < Math.abs(r)) half /= 2;
    const off = Math.abs(v - r);
    if (Math.abs(off - half) <= half * 2 ** -20) {
      parsedValue = Math.fround(slowNumber(bytes, start, p));
      return p;
    }
  }
  parsedValue = r;
  return p;
}

function slowNumber(bytes: Uint8Array, start: number, end: number): number {
  let s = '';
  for (let i = start; i < end; i++) s += String.fromCharCode(bytes[i]!);
  return Number(s);
}

/**
 * Skip one JSON value at `p` (not validated beyond what delimiting needs: the rest goes through
 * JSON.parse). Returns the position after it, or -1.
 */
function skipValue(bytes: Uint8Array, p: number): number {
  const n = bytes.length;
  const c = bytes[p];
  if (c === QUOTE) return skipString(bytes, p);
  if (c === LBRACE || c === LBRACKET) {
    let depth = 0;
    while (p < n) {
      const b = bytes[p]!;
      if (b === QUOTE) {
        p = skipString(bytes, p);
        if (p < 0) return -1;
        continue;
      }
      if (b === LBRACE || b === LBRACKET) depth++;
      else if (b === RBRACE || b === RBRACKET) {
        depth--;
        if (depth === 0) return p + 1;
      }
      p++;
    }
    return -1;
  }
  if (c === MINUS || (c !== undefined && isDigit(c))) {
    const end = parseNumberSyntax(bytes, p);
    return end;
  }
  for (const word of LITERALS) {
    if (p + word.length <= n && bytesAt(bytes, p, word)) return p + word.length;
  }
  return -1;
}

const LITERALS = [Buffer.from('true'), Buffer.from('false'), Buffer.from('null')];

/** Whether `bytes` holds `word` at `p` (the caller checked the length fits). */
function bytesAt(bytes: Uint8Array, p: number, word: Uint8Array): boolean {
  for (let i = 0; i < word.length; i++) if (bytes[p + i] !== word[i]) return false;
  return true;
}

/** Position after the string starting at `p` (a quote), honoring backslash escapes; -1 if unterminated. */
function skipString(bytes: Uint8Array, p: number): number {
  const n = bytes.length;
  p++;
  while (p < n) {
    const b = bytes[p]!;
    if (b === BACKSLASH) p += 2;
    else if (b === QUOTE) return p + 1;
    else p++;
  }
  return -1;
}

/** Position after a number with JSON's syntax at `p`, or -1 (the value is not computed). */
function parseNumberSyntax(bytes: Uint8Array, p: number): number {
  const n = bytes.length;
  if (bytes[p] === MINUS) p++;
  if (bytes[p] === ZERO) p++;
  else if (p < n && isDigit(bytes[p]!)) while (p < n && isDigit(bytes[p]!)) p++;
  else return -1;
  if (bytes[p] === DOT) {
    p++;
    if (!(p < n && isDigit(bytes[p]!))) return -1;
    while (p < n && isDigit(bytes[p]!)) p++;
  }
  if (bytes[p] === 0x65 || bytes[p] === 0x45) {
    p++;
    if (bytes[p] === MINUS || bytes[p] === PLUS) p++;
    if (!(p < n && isDigit(bytes[p]!))) return -1;
    while (p < n && isDigit(bytes[p]!)) p++;
  }
  return p;
}
