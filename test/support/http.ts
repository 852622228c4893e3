/**
 * A client for tests: plain `node:http`, so tests see exactly what goes over the wire
 * (status, headers, raw body, timing of stream chunks).
 */
import http, { type IncomingHttpHeaders } from 'node:http';

export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  json: any;
}

export interface RequestOptions {
  method?: string;
  key?: string | null;
  headers?: Record<string, string>;
  /** A string or object body; objects are JSON-encoded. */
  body?: unknown;
}

function encode(body: unknown): string | undefined {
  if (body === undefined) return undefined;
  return typeof body === 'string' ? body : JSON.stringify(body);
}

export function request(baseUrl: string, path: string, options: RequestOptions = {}): Promise<Reply> {
  const body = encode(options.body);
  const headers: Record<string, string> = { ...options.headers };
  if (options.key !== null && options.key !== undefined) headers.authorization = `Bearer ${options.key}`;
  if (body !== undefined) {
    headers['content-type'] ??= 'application/json';
    headers['content-length'] ??= String(Buffer.byteLength(body));
  }
  return new Promise((resolve, reject) => {
    const req = http.request(`${baseUrl}${path}`, { method: options.method ?? 'POST', headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: any;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

export function chat(baseUrl: string, key: string | null, body: unknown, path = '/v1/chat/completions'): Promise<Reply> {
  return request(baseUrl, path, { key, body });
}

/** Parses an SSE body into its data payloads (`[DONE]` kept as the string). */
export function sseData(text: string): string[] {
  return text
    .split('\n\n')
    .filter((block) => block.trim() !== '' && !block.startsWith(':'))
    .map((block) =>
      block
        .split('\n')
        .filter((line) => line.startsWith('data: '))
        .map((line) => line.slice(6))
        .join('\n'),
    );
}

/** Opens a streaming request and hands back the response as it arrives. */
export function openStream(baseUrl: string, key: string, body: unknown): Promise<{ res: http.IncomingMessage; req: http.ClientRequest }> {
  const text = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request(`${baseUrl}/v1/chat/completions`, {
      method: 'POST',
      agent: false,
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)) },
    });
    req.on('response', (res) => resolve({ res, req }));
    req.on('error', reject);
    req.end(text);
  });
}

export interface MessagesOptions {
  /** Sent as `x-api-key` (ANTHROPIC_API_KEY) by default, or as a Bearer token (ANTHROPIC_AUTH_TOKEN). */
  readonly bearer?: boolean;
  readonly headers?: Record<string, string>;
  /** The query string, without its `?` (Claude Code sends `beta=true`). */
  readonly query?: string;
  readonly path?: string;
}

/** A request as Anthropic's SDKs send it: the key as x-api-key (or Bearer), `anthropic-version`. */
export function messages(baseUrl: string, key: string | null, body: unknown, options: MessagesOptions = {}): Promise<Reply> {
  const headers: Record<string, string> = { 'anthropic-version': '2023-06-01', ...options.headers };
  if (key !== null && options.bearer !== true) headers['x-api-key'] = key;
  const path = `${options.path ?? '/v1/messages'}${options.query === undefined ? '' : `?${options.query}`}`;
  return request(baseUrl, path, { key: options.bearer === true ? key : null, headers, body });
}

/** Parses a Messages stream as Anthropic's SDK does: events need their `event:` line, which must name the data's type. */
export function messagesEvents(text: string): any[] {
  return text
    .split('\n\n')
    .filter((block) => block.trim() !== '' && !block.startsWith(':'))
    .map((block) => {
      const lines = block.split('\n');
      const name = lines.find((line) => line.startsWith('event: '))?.slice(7);
      const data = JSON.parse(lines.filter((line) => line.startsWith('data: ')).map((line) => line.slice(6)).join('\n'));
      if (name === undefined || name !== data.type) throw new Error(`event without its name: ${block}`);
      return data;
    });
}

/** Writes `text` in small pieces of varying size (1–13 bytes), each its own write: events, names and characters split anywhere. */
export async function drip(res: http.ServerResponse, text: string): Promise<void> {
  const bytes = Buffer.from(text);
  for (let at = 0, step = 1; at < bytes.length; at += step, step = (step % 13) + 1) {
    res.write(bytes.subarray(at, at + step));
    await new Promise((resolve) => setImmediate(resolve));
  }
  res.end();
}
