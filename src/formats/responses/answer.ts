/**
 * Reading a provider's Responses answer: a JSON object with an `output` array.
 */
import { parseAnswer } from '../answer.js';
import { isRecord } from '../json.js';
import type { ResponseObject } from './types.js';

export function parseResponseObject(body: Buffer): ResponseObject {
  return parseAnswer(body, 'response', 'output') as ResponseObject;
}

/** The ids of a response's output items (messages, reasoning, tool calls): what an `item_reference` names. */
export function outputItemIds(response: unknown): string[] {
  const output = isRecord(response) ? response.output : undefined;
  if (!Array.isArray(output)) return [];
  const ids: string[] = [];
  for (const item of output) if (isRecord(item) && typeof item.id === 'string' && item.id !== '') ids.push(item.id);
  return ids;
}
