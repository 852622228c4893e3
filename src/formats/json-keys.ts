/** Checks of the keys of JSON bytes: written plainly and once (requests), or duplicated anywhere (configuration files). */

import { scannedPlainKeys } from './json-bytes.js';
import { hasBackslash, QUOTE, skipSpace, stringEnd } from './json-tokens.js';

/**
 * Whether every key of the top level of a valid JSON object (`raw`, which a parser accepted) is
 * written plainly (no escape) and once. Where one is not, parsers may disagree on what the body
 * says (which of two keys wins; a key spelled with `\u` escapes decodes to a name a byte search
 * does not see): a gateway that checked the body as it parsed it must send what it parsed.
 * `parsed`: the object parseJsonBytes made of `raw`, whose scan of a large body already knows.
 */
export function plainUniqueKeys(raw: Buffer, parsed?: object): boolean {
  const known = scannedPlainKeys(parsed);
  if (known !== undefined) return known;
  const seen = new Set<string>();
  let depth = 0;
  let atKey = false;
  for (let i = skipSpace(raw, 0); i < raw.length; i++) {
    const c = raw[i] as number;
    if (c === QUOTE) {
      const end = stringEnd(raw, i);
      if (atKey) {
        if (hasBackslash(raw, i + 1, end - 1)) return false;
        const key = raw.toString('utf8', i + 1, end - 1);
        if (seen.has(key)) return false;
        seen.add(key);
        atKey = false;
      }
      i = end - 1;
    } else if (c === 0x7b || c === 0x5b) {
      depth++;
      atKey = depth === 1 && c === 0x7b;
    } else if (c === 0x7d || c === 0x5d) {
      depth--;
    } else if (c === 0x2c && depth === 1) {
      atKey = true;
    }
  }
  return true;
}

/** A key written twice in one object: where the object is, and the byte offsets of both. */
export interface DuplicateKey {
  /** The object's place from the top: member names and array indexes. */
  readonly path: readonly (string | number)[];
  readonly key: string;
  readonly first: number;
  readonly second: number;
}

/**
 * Every key written twice in one object, at any depth, of `raw`, a valid JSON text (which
 * JSON.parse resolves silently: the last wins). Keys are compared decoded (`"a"` and `"\u0061"`
 * are one key). For configuration files, small: clarity over speed.
 */
export function duplicateKeys(raw: Buffer): DuplicateKey[] {
  interface Open {
    /** The container this one is a member of (its path is only made for a duplicate: a copy per level was quadratic in the depth). */
    readonly parent: Open | null;
    /** An object's keys and where each was first written; null for an array. */
    readonly seen: Map<string, number> | null;
    /** The member whose value comes next: its key (object) or index (array). */
    member: string | number;
    atKey: boolean;
  }
  const pathOf = (open: Open): (string | number)[] => {
    const path: (string | number)[] = [];
    for (let at = open.parent; at !== null; at = at.parent) path.push(at.member);
    return path.reverse();
  };
  const found: DuplicateKey[] = [];
  const open: Open[] = [];
  for (let i = skipSpace(raw, 0); i < raw.length; i++) {
    const c = raw[i] as number;
    const top = open.at(-1);
    if (c === QUOTE) {
      const end = stringEnd(raw, i);
      if (top?.seen != null && top.atKey) {
        const key = JSON.parse(raw.toString('utf8', i, end)) as string;
        const first = top.seen.get(key);
        if (first === undefined) top.seen.set(key, i);
        else found.push({ path: pathOf(top), key, first, second: i });
        top.member = key;
        top.atKey = false;
      }
      i = end - 1;
    } else if (c === 0x7b || c === 0x5b) {
      open.push({ parent: top ?? null, seen: c === 0x7b ? new Map() : null, member: 0, atKey: c === 0x7b });
    } else if (c === 0x7d || c === 0x5d) {
      open.pop();
    } else if (c === 0x2c && top !== undefined) {
      if (top.seen === null) top.member = (top.member as number) + 1;
      else top.atKey = true;
    }
  }
  return found;
}
