/**
 * Chat Completions fields other APIs' translations fill in, by the rules OpenAI enforces: shared
 * by the Messages and Responses translators so both say the same thing the same way.
 */
import { createHash } from 'node:crypto';
import { entryOf } from '../json.js';

/** OpenAI rejects a longer `user` (Claude Code's user_id, a JSON object as a string, is longer). */
const MAX_USER_LENGTH = 64;

/** An end-user id as a digest: it still tells users apart, and says nothing of them. */
export function userDigest(id: string): string {
  return `sha256:${createHash('sha256').update(id).digest('hex').slice(0, 32)}`;
}

/** A client's end-user id as chat's `user`: a digest when longer than OpenAI accepts. */
export function chatUser(id: string): string {
  return id.length <= MAX_USER_LENGTH ? id : userDigest(id);
}

/** OpenAI's reasoning model families, which take `reasoning_effort` (other models answer 400 to it). */
const REASONING_MODEL = /^(?:o[1-9]|gpt-5)(?!.*-chat)/;

const EFFORTS: Readonly<Record<string, string>> = { none: 'none', minimal: 'minimal', low: 'low', medium: 'medium', high: 'high', xhigh: 'high', max: 'high' };

/** A client's effort level as chat's `reasoning_effort` for `model`; undefined when the model takes none. */
export function reasoningEffort(effort: unknown, model: string): string | undefined {
  if (typeof effort !== 'string' || !REASONING_MODEL.test(model)) return undefined;
  return entryOf(EFFORTS, effort);
}
