/**
 * A client's JSON body with a few top-level members changed, as pieces of its own bytes: a key's
 * model map, its output cap or a stream's usage request change a field or two, and everything
 * else goes as the client wrote it. Re-serialising would cost a whole parse and stringify of an
 * agent's conversation, and change what JSON numbers cannot hold exactly: an integer past 2^53
 * (a tool schema's bound, a `seed`) rounded, `-0` made `0`, `1e400` made `null`.
 */
import { copiedUnread, scannedMembers, type TopMember } from './json-bytes.js';
import { skipSpace, stringEnd, valueEnd } from './json-tokens.js';

/** The client's bytes and what changes in them: each member's new value (undefined: left out). */
export interface ClientBytes {
  readonly raw: Buffer;
  /** What parseJsonBytes made of `raw` (its scan knows where a large body's members are). */
  readonly document: object;
  readonly changes: ReadonlyMap<string, unknown>;
}

const NO_CHANGES: ReadonlyMap<string, unknown> = new Map();

/** The client's bytes unchanged. */
export function unchanged(raw: Buffer, document: object): ClientBytes {
  return { raw, document, changes: NO_CHANGES };
}

/** The same bytes with more changes (later ones win). */
export function withChanges(bytes: ClientBytes, changes: Iterable<readonly [string, unknown]>): ClientBytes {
  const all = new Map(bytes.changes);
  for (const [key, value] of changes) all.set(key, value);
  return { ...bytes, changes: all };
}

/**
 * The body with its changes made: `raw` itself when there are none, else its pieces around the
 * new values (a member that was not there comes first). Null where that cannot be done (`raw` is
 * not an object): the caller serialises the request instead. The caller has checked that every
 * top-level key is written plainly and once (plainUniqueKeys), so a key's bytes are its name.
 */
export function splicedBody(bytes: ClientBytes): Buffer | readonly Buffer[] | null {
  const { raw, changes } = bytes;
  if (changes.size === 0) return raw;
  const members = scannedMembers(bytes.document) ?? topMembers(raw);
  if (members === null) return null;
  const pieces: Buffer[] = [];
  // Ranges of the client's bytes that follow each other go as one piece, and so does the text of
  // the gateway's own between two ranges.
  let from = 0;
  let to = 0;
  let text = '';
  const copy = (start: number, end: number): void => {
    if (text === '' && start === to) return void (to = end);
    if (to > from) pieces.push(raw.subarray(from, to));
    if (text !== '') pieces.push(Buffer.from(text));
    text = '';
    from = start;
    to = end;
  };
  const add = (more: string): void => {
    if (to > from) pieces.push(raw.subarray(from, to));
    from = to;
    text += more;
  };
  const open = skipSpace(raw, 0) + 1;
  copy(0, open);
  let written = false;
  for (const [key, value] of changes) {
    if (value === undefined || members.some((member) => member.key === key)) continue;
    add(`${written ? ',' : ''}${JSON.stringify(key)}:${JSON.stringify(value)}`);
    written = true;
  }
  // Each member goes with what stands before it (spaces, and the comma after the one before).
  let before = open;
  for (const member of members) {
    const start = before;
    before = member.end;
    const changed = changes.has(member.key);
    const value = changes.get(member.key);
    if (changed && value === undefined) continue;
    // The first written after members left out: without the comma that followed them.
    const after = !written && start !== open ? raw.indexOf(0x2c /* , */, start) + 1 : start;
    if (written && start === open) add(',');
    written = true;
    copy(after, changed ? member.start : member.end);
    if (changed) add(JSON.stringify(value));
  }
  copy(before, raw.length);
  if (to > from) pieces.push(raw.subarray(from, to));
  return pieces;
}

/** `raw` (a small JSON object: an answer, a stored request's body) with one top-level member set, as one buffer; null where it cannot be spliced. */
export function withMember(raw: Buffer, key: string, value: unknown): Buffer | null {
  const spliced = splicedBody({ raw, document: {}, changes: new Map([[key, value]]) });
  return spliced === null ? null : Buffer.isBuffer(spliced) ? spliced : Buffer.concat(spliced);
}

/** The top-level members of `raw`, a JSON text a parser accepted (null: not an object). */
export function topMembers(raw: Buffer): TopMember[] | null {
  try {
    return membersOf(raw);
  } catch {
    return null;
  }
}

function membersOf(raw: Buffer): TopMember[] | null {
  let i = skipSpace(raw, 0);
  if (raw[i] !== 0x7b /* { */) return null;
  const members: TopMember[] = [];
  i = skipSpace(raw, i + 1);
  if (raw[i] === 0x7d /* } */) return members;
  for (;;) {
    const keyStart = i;
    const keyEnd = stringEnd(raw, i);
    const start = skipSpace(raw, skipSpace(raw, keyEnd) + 1);
    const end = valueEnd(raw, start);
    members.push({ key: raw.toString('utf8', keyStart + 1, keyEnd - 1), keyStart, start, end });
    i = skipSpace(raw, end);
    if (raw[i] !== 0x2c /* , */) return members;
    i = skipSpace(raw, i + 1);
  }
}

/**
 * The top-level members `copy` (a shallowCopy of `original` with some changed) changes: new
 * values, and undefined for those it left out. A member copied unread is not read (parsed) here.
 */
export function changesBetween(original: object, copy: object): Map<string, unknown> {
  const before = original as Readonly<Record<string, unknown>>;
  const after = copy as Readonly<Record<string, unknown>>;
  const changes = new Map<string, unknown>();
  for (const key of Object.keys(after)) {
    if (copiedUnread(copy, key)) continue;
    const was = Object.getOwnPropertyDescriptor(before, key);
    if (was === undefined || was.get !== undefined || was.value !== after[key]) changes.set(key, after[key]);
  }
  for (const key of Object.keys(before)) if (!Object.hasOwn(after, key)) changes.set(key, undefined);
  return changes;
}
