/**
 * `POST /chat/completions` (and `/v1/chat/completions`): OpenAI Chat Completions, the API most
 * SDKs, apps and frameworks speak. The key comes as `Authorization: Bearer <virtual key>`.
 */
import { chatClient, type ChatTypes } from '../formats/chat/index.js';
import { bearerToken } from '../policy/auth.js';
import type { Surface } from './surface.js';

export const HOW_TO_SEND_BEARER = "Send it as 'Authorization: Bearer <virtual key>'.";

export const chatSurface: Surface<ChatTypes> = {
  api: chatClient,
  credential: (headers) => bearerToken(headers.authorization),
  howToSendKey: HOW_TO_SEND_BEARER,
};
