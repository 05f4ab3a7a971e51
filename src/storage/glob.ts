/**
 * Glob matching shared by the storage backends (Node 20 has no `fs.promises.glob`, and S3 has no
 * globs at all): `*` and `?` within one path segment, `**` across segments, `[...]` classes.
 */

export function hasGlob(p: string): boolean {
  return /[*?[]/.test(p);
}

export function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Dataset conventions (Spark, pyarrow): `_SUCCESS`, `.crc`, `_temporary/` are not data. */
export function isHiddenName(name: string): boolean {
  return name.startsWith('.') || name.startsWith('_');
}

/**
 * Split a `/`-separated glob into the literal segments before the first wildcard (where to start
 * listing), the rest (matched against paths relative to that base) and how deep a match can be.
 */
export function splitGlob(pattern: string): { baseSegments: string[]; rest: string; depth: number } {
  const segs = pattern.split('/');
  const first = segs.findIndex(hasGlob);
  const restSegs = segs.slice(first);
  return {
    baseSegments: segs.slice(0, first),
    rest: restSegs.join('/'),
    depth: restSegs.some((s) => s.includes('**')) ? Number.POSITIVE_INFINITY : restSegs.length,
  };
}

export function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') {
      if (glob[i + 1] === '*') {
        const atSegStart = i === 0 || glob[i - 1] === '/';
        if (atSegStart && glob[i + 2] === '/') {
          re += '(?:[^/]+/)*';
          i += 2;
        } else {
          re += '.*';
          i += 1;
        }
      } else {
        re += '[^/]*';
      }
    } else if (c === '?') {
      re += '[^/]';
    } else if (c === '[') {
      const close = glob.indexOf(']', i + 2);
      if (close < 0) re += '\\[';
      else {
        let cls = glob.slice(i + 1, close).replace(/\\/g, '\\\\');
        if (cls.startsWith('!')) cls = `^${cls.slice(1)}`;
        re += `[${cls}]`;
        i = close;
      }
    } else {
      re += c.replace(/[.+^${}()|\\\]]/g, '\\$&');
    }
  }
  return new RegExp(`^${re}$`);
}
