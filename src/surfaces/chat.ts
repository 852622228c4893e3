/**
 * `POST /chat/completions` (and `/v1/chat/completions`): OpenAI Chat Completions, the API most
 * SDKs, apps and frameworks speak. The key comes as `Authorization: Bearer <virtual key>`.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { chatClient, type ChatTypes } from '../formats/chat/index.js';
import { bearerToken } from '../policy/auth.js';
import type { Surface } from './surface.js';

export const HOW_TO_SEND_BEARER = "Send it as 'Authorization: Bearer <virtual key>'.";

/**
 * Where the key goes on the OpenAI routes. A client that sent `x-api-key` (as Anthropic's SDKs do)
 * and no Authorization is told why its key was not seen.
 */
export function howToSendBearer(headers: IncomingHttpHeaders): string {
  if (headers.authorization !== undefined || headers['x-api-key'] === undefined) return HOW_TO_SEND_BEARER;
  return "Send it as 'Authorization: Bearer <virtual key>'; x-api-key is read only on the Anthropic routes (/v1/messages).";
}

export const chatSurface: Surface<ChatTypes> = {
  api: chatClient,
  credential: (headers) => bearerToken(headers.authorization),
  howToSendKey: howToSendBearer,
};
