/**
 * The OpenAI Responses API shapes the gateway reads and writes (docs/providers.md, Responses).
 * Only the fields the gateway reads are typed; everything else travels untouched.
 */

export interface ResponsesRequest {
  model: string;
  /** A string (one user message) or input items. */
  input?: string | unknown[];
  instructions?: string | null;
  tools?: unknown[] | null;
  stream?: boolean | null;
  max_output_tokens?: number | null;
  store?: boolean | null;
  previous_response_id?: string | null;
  [field: string]: unknown;
}

export interface OutputItem {
  type: string;
  id?: string;
  status?: string;
  [field: string]: unknown;
}

export interface ResponsesUsage {
  input_tokens: number;
  input_tokens_details: { cached_tokens: number; [field: string]: unknown };
  output_tokens: number;
  output_tokens_details: { reasoning_tokens: number; [field: string]: unknown };
  total_tokens: number;
}

/** A Response object: the answer, and what every terminal stream event carries. */
export interface ResponseObject {
  id: string;
  object: 'response';
  created_at: number;
  status: string;
  model: string;
  output: OutputItem[];
  usage?: ResponsesUsage | Record<string, unknown> | null;
  error?: { code: string; message: string } | null;
  incomplete_details?: { reason: string } | null;
  [field: string]: unknown;
}

/** One stream event: its `type` names it, `sequence_number` orders it. */
export interface ResponsesEvent {
  type: string;
  sequence_number?: number;
  [field: string]: unknown;
}
