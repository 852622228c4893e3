/**
 * Anthropic's model list (`{"data": [{"type": "model", "id", "display_name", "created_at"}],
 * "has_more", …}`) in OpenAI's format (first page only).
 */
import { parseAnswer } from '../answer.js';
import type { ModelList } from '../chat/models.js';
import { isRecord } from '../json.js';

export function parseMessagesModelList(body: Buffer): ModelList {
  const parsed = parseAnswer(body, 'model list', 'data');
  return {
    object: 'list',
    data: (parsed.data as unknown[])
      .filter((model: unknown): model is Record<string, unknown> => isRecord(model) && typeof model.id === 'string')
      .map((model) => ({
        id: model.id as string,
        object: 'model',
        created: typeof model.created_at === 'string' && !Number.isNaN(Date.parse(model.created_at)) ? Math.floor(Date.parse(model.created_at) / 1000) : 0,
        owned_by: 'anthropic',
      })),
  };
}
