/**
 * The skeleton both mock providers share: a server on 127.0.0.1 that records every request
 * (body, parsed JSON, whether the caller went away early) and lets a test replace the standard
 * behaviour per request.
 */
import http, { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RecordedRequest {
  method: string;
  path: string;
  /** The query string, without its `?` ('' when none). */
  query: string;
  headers: IncomingHttpHeaders;
  raw: string;
  json: any;
  /** Set when the caller went away before the answer was complete. */
  aborted: boolean;
}

export interface Exchange {
  req: IncomingMessage;
  res: ServerResponse;
  recorded: RecordedRequest;
}

/** Replaces the standard behaviour; return false to fall back to it. */
export type Behaviour = (exchange: Exchange) => void | boolean | Promise<void | boolean>;

export interface RecordingServer {
  readonly origin: string;
  readonly requests: RecordedRequest[];
  behave(behaviour: Behaviour | null): void;
  close(): Promise<void>;
}

export function startRecordingServer(standard: (req: IncomingMessage, res: ServerResponse, recorded: RecordedRequest) => void): Promise<RecordingServer> {
  const requests: RecordedRequest[] = [];
  let behaviour: Behaviour | null = null;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      let json: any;
      try {
        json = JSON.parse(raw);
      } catch {
        json = undefined;
      }
      const [path = '', query = ''] = (req.url ?? '').split(/\?(.*)/s);
      const recorded: RecordedRequest = { method: req.method ?? '', path, query, headers: req.headers, raw, json, aborted: false };
      requests.push(recorded);
      res.once('close', () => {
        if (!res.writableFinished) recorded.aborted = true;
      });
      void (async () => {
        const handled = behaviour === null ? false : await behaviour({ req, res, recorded });
        if (handled === false) standard(req, res, recorded);
      })();
    });
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      resolve({
        origin: `http://127.0.0.1:${port}`,
        requests,
        behave(next) {
          behaviour = next;
        },
        close() {
          server.closeAllConnections();
          return new Promise((done) => server.close(() => done()));
        },
      });
    });
  });
}
