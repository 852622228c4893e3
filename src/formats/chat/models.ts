/**
 * The model list in OpenAI's format: what `GET /v1/models` answers, and what OpenAI-compatible
 * providers send (kept as they send it, with the fields OpenAI's SDKs read filled in).
 */
import { parseAnswer } from '../answer.js';
import { isRecord } from '../json.js';

export interface ModelEntry {
  id: string;
  object: 'model';
  created: number;
  owned_by: string;
  [field: string]: unknown;
}

export interface ModelList {
  object: 'list';
  data: ModelEntry[];
}

/** A provider's OpenAI-format list (a 502 GatewayError when it is not one). */
export function parseChatModelList(body: Buffer): ModelList {
  const parsed = parseAnswer(body, 'model list', 'data');
  const data = (parsed.data as unknown[]).filter((model: unknown): model is Record<string, unknown> => isRecord(model) && typeof model.id === 'string');
  return {
    object: 'list',
    data: data.map((model) => ({
      ...model,
      id: model.id as string,
      object: 'model',
      created: typeof model.created === 'number' ? model.created : 0,
      owned_by: typeof model.owned_by === 'string' ? model.owned_by : 'system',
    })),
  };
}
