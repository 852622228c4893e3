/**
 * Every API a provider may speak, by name: the one table that says which modules exist.
 */
import type { ApiName, ApiTypes, TargetApi } from './api.js';
import { chatTarget } from './chat/index.js';
import { messagesTarget } from './messages/index.js';
import { responsesTarget } from './responses/index.js';

export const TARGET_APIS: Readonly<Record<ApiName, TargetApi<ApiTypes>>> = {
  chat: chatTarget as TargetApi<ApiTypes>,
  messages: messagesTarget as unknown as TargetApi<ApiTypes>,
  responses: responsesTarget as unknown as TargetApi<ApiTypes>,
};

export const API_NAMES: readonly ApiName[] = Object.keys(TARGET_APIS) as ApiName[];
