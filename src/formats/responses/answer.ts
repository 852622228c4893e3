/**
 * Reading a provider's Responses answer: a JSON object with an `output` array.
 */
import { parseAnswer } from '../answer.js';
import type { ResponseObject } from './types.js';

export function parseResponseObject(body: Buffer): ResponseObject {
  return parseAnswer(body, 'response', 'output') as ResponseObject;
}
