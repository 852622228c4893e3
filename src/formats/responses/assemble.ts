/**
 * Responses stream events → the final response object, for the log: the terminal event's
 * `response` when it came; otherwise (a stream cut short) the response as created, with the
 * items that were done.
 */
import type { Assembler } from '../api.js';
import { isRecord } from '../json.js';
import type { OutputItem, ResponseObject, ResponsesEvent } from './types.js';
import { isTerminal } from './stream.js';

export class ResponseAssembler implements Assembler<ResponsesEvent, ResponseObject> {
  private created: Record<string, unknown> = {};
  private final: ResponseObject | null = null;
  private readonly items: OutputItem[] = [];

  // A type named without an escape is written as it is: a text with none of these names is an
  // event add ignores (the deltas, most of a stream).
  readonly reads = /\\|"response\.(?:created|output_item\.done|completed|incomplete|failed)"/;

  add(event: ResponsesEvent): void {
    if (!isRecord(event)) return;
    if (event.type === 'response.created' && isRecord(event.response)) this.created = event.response;
    else if (event.type === 'response.output_item.done' && isRecord(event.item)) this.items.push(event.item as OutputItem);
    else if (isTerminal(event.type) && isRecord(event.response)) this.final = event.response as ResponseObject;
  }

  result(): ResponseObject {
    if (this.final !== null) return this.final;
    return {
      ...this.created,
      id: typeof this.created.id === 'string' ? this.created.id : '',
      object: 'response',
      created_at: typeof this.created.created_at === 'number' ? this.created.created_at : 0,
      status: 'incomplete',
      model: typeof this.created.model === 'string' ? this.created.model : '',
      output: this.items,
    };
  }
}
