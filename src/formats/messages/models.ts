/**
 * Anthropic's model list (`{"data": [{"type": "model", "id", "display_name", "created_at"}],
 * "has_more", …}`) in OpenAI's format (first page only; `display_name` kept for Anthropic's
 * clients), and any list back in Anthropic's.
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
        ...(typeof model.display_name === 'string' ? { display_name: model.display_name } : {}),
      })),
  };
}

/** A model list in Anthropic's format, for Anthropic's clients: the whole list as one page. */
export interface AnthropicModelList {
  data: Array<{ type: 'model'; id: string; display_name: string; created_at: string }>;
  has_more: false;
  first_id: string | null;
  last_id: string | null;
}

/** Seconds since the epoch → RFC 3339 as Anthropic writes it (no milliseconds); a time no date can hold → the epoch. */
function rfc3339(seconds: number): string {
  const date = new Date(seconds * 1000);
  return (Number.isNaN(date.getTime()) ? new Date(0) : date).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export function toAnthropicModelList(list: ModelList): AnthropicModelList {
  const data = list.data.map((model) => ({
    type: 'model' as const,
    id: model.id,
    display_name: typeof model.display_name === 'string' ? model.display_name : model.id,
    created_at: rfc3339(model.created),
  }));
  return { data, has_more: false, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null };
}
