/**
 * The provider client against raw TCP servers that send exact bytes: every framing, split at
 * every byte, connection reuse, and every way a response can be cut or malformed.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import { Cancellation } from '../src/upstream/cancel.js';
import type { GatewayError } from '../src/errors.js';
import { encodeRequest, HttpClient, parseHead, whyCut, type ClientFailure, type ClientRequest, type ClientResponse } from '../src/upstream/http-client.js';
import { readAll } from '../src/upstream/read.js';
import { sendUpstream, STALE_RESEND_WINDOW_MS } from '../src/upstream/send.js';
import { refusingPort } from './support/ports.js';
import type { Endpoint } from '../src/upstream/types.js';

/** One client for the file, as one gateway process has: its pools are shared by every call. */
const client = new HttpClient();
const call = client.call.bind(client);

interface RawServer {
  port: number;
  /** Connections accepted so far. */
  connections(): number;
  /** Requests received so far (head and body as text). */
  readonly requests: string[];
  close(): Promise<void>;
}

/** A server that answers each complete request with `answer(socket, index)`. */
async function rawServer(answer: (socket: net.Socket, index: number) => void): Promise<RawServer> {
  const requests: string[] = [];
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  const server = net.createServer((socket) => {
    accepted++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let text = '';
    socket.setEncoding('latin1').on('data', (data: string) => {
      text += data;
      for (;;) {
        const end = text.indexOf('\r\n\r\n');
        if (end === -1) return;
        const length = Number(/content-length: (\d+)/i.exec(text.slice(0, end))?.[1] ?? 0);
        if (text.length < end + 4 + length) return;
        requests.push(text.slice(0, end + 4 + length));
        text = text.slice(end + 4 + length);
        answer(socket, requests.length - 1);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    connections: () => accepted,
    requests,
    close: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

const servers: RawServer[] = [];
after(async () => {
  client.close();
  await Promise.all(servers.map((server) => server.close()));
});

async function serve(answer: (socket: net.Socket, index: number) => void): Promise<RawServer> {
  const server = await rawServer(answer);
  servers.push(server);
  return server;
}

function requestTo(port: number, extra: Partial<ClientRequest> = {}): ClientRequest {
  return { https: false, hostname: '127.0.0.1', port, method: 'POST', path: '/v1/chat/completions', headers: { authorization: 'Bearer sk-test' }, body: Buffer.from('{"a":1}'), contentType: 'application/json', ...extra };
}

interface Outcome {
  status: number;
  headers: ClientResponse['headers'];
  body: string;
  /** The body ended ('end'); false: it closed without its end (cut short). */
  ended: boolean;
}

/** One call: the response with its whole body, or the failure before any response. */
function send(request: ClientRequest): Promise<Outcome | ClientFailure> {
  return new Promise((resolve) => {
    call(request, {
      onResponse: (response) => {
        const chunks: Buffer[] = [];
        let ended = false;
        response.body.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.body.on('end', () => (ended = true));
        response.body.on('close', () => resolve({ status: response.status, headers: response.headers, body: Buffer.concat(chunks).toString('utf8'), ended }));
      },
      onError: resolve,
    });
  });
}

async function answered(request: ClientRequest): Promise<Outcome> {
  const outcome = await send(request);
  if ('error' in outcome) assert.fail(`expected a response, got ${outcome.error.code}: ${outcome.error.message}`);
  return outcome;
}

/** Writes `bytes` in two writes cut at `at`, the second a moment later (so they arrive as two reads). */
function writeSplit(socket: net.Socket, bytes: Buffer, at: number): void {
  // Each part goes out at once: Nagle's algorithm would hold the second until the first is
  // acknowledged (a delayed ACK: 40 ms per split, seconds per test) without splitting it any better.
  socket.setNoDelay(true);
  socket.write(bytes.subarray(0, at));
  setTimeout(() => socket.write(bytes.subarray(at)), 1);
}

const body = 'Héllo, 世界: {"x": [1, 2, 3]}';

describe('http client: framing', () => {
  it('reads a content-length body split at every byte, and reuses the connection', async () => {
    const response = Buffer.from(`HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nX-Request-Id: req_1\r\n\r\n${body}`);
    let split = 0;
    const server = await serve((socket) => writeSplit(socket, response, split));
    for (split = 1; split < response.length; split++) {
      const outcome = await answered(requestTo(server.port));
      assert.equal(outcome.status, 200);
      assert.equal(outcome.headers['content-type'], 'application/json');
      assert.equal(outcome.headers['x-request-id'], 'req_1');
      assert.equal(outcome.body, body, `split at ${split}`);
      assert.ok(outcome.ended);
    }
    assert.equal(server.connections(), 1, 'one keep-alive connection for every request');
  });

  it('reads a chunked body with extensions, trailers and leading zeros split at every byte, and reuses the connection', async () => {
    const bytes = Buffer.from(body);
    const chunked = Buffer.concat([
      Buffer.from(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n`),
      Buffer.from(`${'0'.repeat(12)}${(5).toString(16)};name=value\r\n`), // more digits than any size needs
      bytes.subarray(0, 5),
      Buffer.from(`\r\n${(bytes.length - 5).toString(16).toUpperCase()}\r\n`),
      bytes.subarray(5),
      Buffer.from('\r\n0\r\nX-Trailer: yes\r\n\r\n'),
    ]);
    let split = 0;
    const server = await serve((socket) => writeSplit(socket, chunked, split));
    for (split = 1; split < chunked.length; split++) {
      const outcome = await answered(requestTo(server.port));
      assert.equal(outcome.body, body, `split at ${split}`);
      assert.ok(outcome.ended);
    }
    assert.equal(server.connections(), 1);
  });

  it('reads a body without length to the end of the connection, and does not reuse it', async () => {
    const server = await serve((socket) => socket.end(`HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n${body}`));
    for (let i = 0; i < 2; i++) {
      const outcome = await answered(requestTo(server.port));
      assert.equal(outcome.body, body);
      assert.ok(outcome.ended);
    }
    assert.equal(server.connections(), 2);
  });

  it('skips 100 Continue, 103 Early Hints and a 1xx it does not know, and answers the final response', async () => {
    const server = await serve((socket) => socket.write('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 199 Something New\r\nx-a: b\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok'));
    const outcome = await answered(requestTo(server.port));
    assert.equal(outcome.status, 201);
    assert.equal(outcome.body, 'ok');
  });

  it('answers 204 and a zero content-length with an empty body, and keeps the connection', async () => {
    const server = await serve((socket, index) => socket.write(index === 0 ? 'HTTP/1.1 204 No Content\r\n\r\n' : 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'));
    assert.equal((await answered(requestTo(server.port))).status, 204);
    const second = await answered(requestTo(server.port));
    assert.equal(second.body, '');
    assert.ok(second.ended);
    assert.equal(server.connections(), 1);
  });

  it('does not reuse a connection after a 204 or 304 that frames a body it cannot have (its late body would answer the next request)', async () => {
    for (const head of ['HTTP/1.1 204 No Content\r\nContent-Length: 17', 'HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked']) {
      const server = await serve((socket, index) => {
        if (index > 0) return void socket.write('HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nmine');
        socket.setNoDelay(true);
        socket.write(`${head}\r\n\r\n`);
        setTimeout(() => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nstolen'), 5);
      });
      await answered(requestTo(server.port));
      assert.equal((await answered(requestTo(server.port))).body, 'mine', head);
      assert.equal(server.connections(), 2);
    }
  });

  it('closes a connection after 1,000 requests, which bounds a server that answered one request twice', { timeout: 30_000 }, async () => {
    const server = await serve((socket) => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'));
    for (let i = 0; i < 1000; i++) await answered(requestTo(server.port));
    assert.equal(server.connections(), 1);
    await answered(requestTo(server.port));
    assert.equal(server.connections(), 2);
  });

  it('does not reuse a connection the server marked close', async () => {
    const server = await serve((socket) => socket.write('HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok'));
    await answered(requestTo(server.port));
    await answered(requestTo(server.port));
    assert.equal(server.connections(), 2);
  });
});

describe('http client: failures', () => {
  it('reports a body cut short as a close without end', async () => {
    const server = await serve((socket) => {
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial');
      setTimeout(() => socket.destroy(), 5);
    });
    const outcome = await answered(requestTo(server.port));
    assert.equal(outcome.body, 'partial');
    assert.equal(outcome.ended, false);
  });

  it('reports a chunked body cut before its last chunk, and a bad chunk size, as a close without end', async () => {
    const server = await serve((socket, index) => {
      if (index === 0) socket.end('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n');
      else socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\nzz\r\n');
    });
    for (let i = 0; i < 2; i++) {
      const outcome = await answered(requestTo(server.port));
      assert.equal(outcome.body, 'ok');
      assert.equal(outcome.ended, false);
    }
  });

  it('says why it cut a body short, for the log: the framing error, not a close by the provider', async () => {
    const server = await serve((socket, index) => {
      if (index === 0) socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\nzz\r\n');
      else socket.end('HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nok');
    });
    for (const expected of [/^HPE_INVALID_CHUNK_SIZE: a chunk size is not hexadecimal$/, null]) {
      const why = await new Promise<string | null>((resolve) => {
        call(requestTo(server.port), {
          onResponse: (response) => {
            response.body.resume();
            response.body.on('close', () => resolve(whyCut(response.body)));
          },
          onError: () => resolve('no response'),
        });
      });
      if (expected === null) assert.equal(why, null, 'a close by the provider: nothing more to say');
      else assert.match(String(why), expected);
    }
  });

  it('fails a connection closed before any answer (not answered) and a malformed head (answered)', async () => {
    const closing = await serve((socket) => socket.destroy());
    const hangUp = (await send(requestTo(closing.port))) as ClientFailure;
    assert.equal(hangUp.error.code, 'ECONNRESET');
    assert.equal(hangUp.answered, false);
    assert.equal(hangUp.reused, false);

    const garbage = await serve((socket, index) => {
      if (index === 2) writeSplit(socket, Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok'), 1);
      else socket.write(['HTTP/1.1 2OO OK\r\n\r\n', 'SMTP ready\r\n', '', 'HTTP/2 200\r\n'][index] ?? '');
    });
    const malformed = (await send(requestTo(garbage.port))) as ClientFailure;
    assert.equal(malformed.error.code, 'HPE_INVALID_RESPONSE');
    assert.equal(malformed.answered, true);
    // Not HTTP/1.x from its first bytes, the connection left open: failed at once, not at a timeout.
    const banner = (await send(requestTo(garbage.port))) as ClientFailure;
    assert.equal(banner.error.code, 'HPE_INVALID_CONSTANT');
    assert.equal(banner.answered, true);
    // A first byte that could begin HTTP/1.x waits for the rest.
    assert.equal((await answered(requestTo(garbage.port))).body, 'ok');
    assert.equal(((await send(requestTo(garbage.port))) as ClientFailure).error.code, 'HPE_INVALID_CONSTANT');
  });

  it('skips empty lines before a status line, as Node\'s own client does, also split between reads', async () => {
    const answer = Buffer.from('\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    const server = await serve((socket, index) => {
      if (index === 0) socket.write(answer);
      else writeSplit(socket, answer, 1 + 2 * (index - 1));
    });
    for (let i = 0; i < 4; i++) assert.equal((await answered(requestTo(server.port))).body, 'ok');
  });

  it('refuses a response head larger than 64 KiB, also when its end arrives in a later read', async () => {
    const big = `HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(70 * 1024)}`;
    const server = await serve((socket, index) => {
      if (index === 0) socket.write(big);
      else writeSplit(socket, Buffer.from(`${big}\r\nContent-Length: 2\r\n\r\nok`), 60 * 1024);
    });
    assert.equal(((await send(requestTo(server.port))) as ClientFailure).error.code, 'HPE_HEADER_OVERFLOW');
    assert.equal(((await send(requestTo(server.port))) as ClientFailure).error.code, 'HPE_HEADER_OVERFLOW');
  });

  it('refuses conflicting content-lengths, and reads repeated identical ones as one', async () => {
    const server = await serve((socket, index) => socket.write(`HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: ${index === 0 ? 3 : 2}\r\n\r\nok`));
    const outcome = (await send(requestTo(server.port))) as ClientFailure;
    assert.equal(outcome.error.code, 'HPE_INVALID_CONTENT_LENGTH');
    const repeated = await answered(requestTo(server.port));
    assert.equal(repeated.body, 'ok');
    assert.equal(repeated.headers['content-length'], '2');
  });

  it('reports a refused connection with its code', async () => {
    const outcome = (await send(requestTo(await refusingPort()))) as ClientFailure;
    assert.equal(outcome.error.code, 'ECONNREFUSED');
  });

  it('marks a failure on a pooled connection as reused', async () => {
    const server = await serve((socket, index) => {
      if (index === 0) socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
      else socket.resetAndDestroy();
    });
    await answered(requestTo(server.port));
    const outcome = (await send(requestTo(server.port))) as ClientFailure;
    assert.equal(outcome.reused, true);
    assert.equal(outcome.answered, false);
    assert.equal(outcome.error.code, 'ECONNRESET');
  });

  it('refuses a head with bare LF line ends at once, and content-length together with chunked', async () => {
    const server = await serve((socket, index) => {
      if (index === 0) socket.write('HTTP/1.1 200 OK\nContent-Length: 2\n\nok');
      else socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n');
    });
    assert.equal(((await send(requestTo(server.port))) as ClientFailure).error.code, 'HPE_CR_EXPECTED');
    assert.equal(((await send(requestTo(server.port))) as ClientFailure).error.code, 'HPE_INVALID_TRANSFER_ENCODING');
  });

  it('refuses a header value with a control character, and endless informational answers', { timeout: 10_000 }, async () => {
    const server = await serve((socket, index) => {
      if (index === 0) socket.write('HTTP/1.1 200 OK\r\nRetry-After: 1\x01\r\nContent-Length: 2\r\n\r\nok');
      else socket.write('HTTP/1.1 100 Continue\r\n\r\n'.repeat(1000));
    });
    assert.equal(((await send(requestTo(server.port))) as ClientFailure).error.code, 'HPE_INVALID_RESPONSE');
    assert.equal(((await send(requestTo(server.port))) as ClientFailure).error.code, 'HPE_INVALID_RESPONSE');
  });

  it('reports a body cut short in the same read as its head to readers that attach after the head (502, not a wait)', { timeout: 10_000 }, async () => {
    // The gateway reads the body a few promise turns after sendUpstream resolved: the cut must
    // still reach it as a broken answer (the chunk size `zz` is none), not leave it waiting for the idle timeout.
    const server = await serve((socket) => socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\nzz\r\n'));
    const target: Endpoint = { kind: 'http', https: false, hostname: '127.0.0.1', port: server.port, path: '/', url: '' };
    const cancel = new Cancellation();
    const upstream = await sendUpstream(client, target, { body: '{}', headers: {} }, cancel, 10_000);
    const error = await readAll(upstream.body, { limit: 1024, truncate: false, cancel, idleMs: 60_000 }).then(
      () => assert.fail('a cut body must not read as complete'),
      (err: unknown) => err as GatewayError,
    );
    assert.equal(error.status, 502);
    assert.equal(error.code, 'upstream_invalid_response');
    assert.equal(error.message, "The provider's answer is not valid HTTP (HPE_INVALID_CHUNK_SIZE).");
  });

  it('abort() on a body that runs to the end of the connection cuts it (no end)', async () => {
    const server = await serve((socket) => socket.write('HTTP/1.1 200 OK\r\n\r\nstart'));
    const ended = await new Promise<boolean>((resolve) => {
      const sent = call(requestTo(server.port), {
        onResponse: (response) => {
          let end = false;
          response.body.once('data', () => sent.abort());
          response.body.on('end', () => (end = true));
          response.body.on('close', () => resolve(end));
        },
        onError: () => assert.fail('no failure expected'),
      });
    });
    assert.equal(ended, false);
  });

  it('sends on a new connection when asked for a fresh one (the resend after a stale one)', async () => {
    const server = await serve((socket) => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'));
    await answered(requestTo(server.port));
    await new Promise<void>((resolve) => {
      call(requestTo(server.port), { onResponse: (response) => response.body.on('close', resolve).resume(), onError: () => assert.fail('no failure expected') }, true);
    });
    assert.equal(server.connections(), 2);
  });

  it('never shares a connection between partitions (real keys): an answer out of turn reaches only the same key\'s next request', async () => {
    const server = await serve((socket) => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'));
    for (const partition of ['sk-a', 'sk-b', 'sk-a', 'sk-b']) await answered(requestTo(server.port, { partition }));
    assert.equal(server.connections(), 2, 'one per key, each reused');
    await answered(requestTo(server.port));
    assert.equal(server.connections(), 3, 'none shared with a request of no partition either');
  });

  it('abort() closes the connection mid-body', async () => {
    let closed!: () => void;
    const serverSawClose = new Promise<void>((resolve) => (closed = resolve));
    const server = await serve((socket) => {
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nstart');
      socket.on('close', closed);
    });
    await new Promise<void>((resolve) => {
      const sent = call(requestTo(server.port), {
        onResponse: (response) => {
          response.body.once('data', () => sent.abort());
          response.body.on('close', resolve);
        },
        onError: () => assert.fail('no failure expected'),
      });
    });
    await serverSawClose;
  });
});

describe('sendUpstream: the one resend after a stale pooled connection', () => {
  const ok = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok';
  /** Answers the first request on each connection; `later` decides for the next ones. */
  async function pooledServer(later: (socket: net.Socket) => void): Promise<RawServer> {
    const served = new WeakSet<net.Socket>();
    return serve((socket) => {
      if (!served.has(socket)) {
        served.add(socket);
        socket.write(ok);
      } else later(socket);
    });
  }
  const targetOf = (server: RawServer): Endpoint => ({ kind: 'http', https: false, hostname: '127.0.0.1', port: server.port, path: '/', url: '' });
  /** Two requests at once: two connections in the pool, both used once. */
  async function fillPool(server: RawServer): Promise<void> {
    await Promise.all([answered(requestTo(server.port, { path: '/' })), answered(requestTo(server.port, { path: '/' }))]);
    assert.equal(server.connections(), 2);
  }

  it('resends once, on a new connection, when pooled connections turn out closed at once', async () => {
    const server = await pooledServer((socket) => socket.resetAndDestroy()); // every pooled connection is stale
    await fillPool(server);
    const upstream = await sendUpstream(client, targetOf(server), { body: '{}', headers: {} }, new Cancellation(), 10_000);
    assert.equal(upstream.status, 200);
    assert.equal(upstream.resent, true);
    assert.equal(server.requests.length, 4, 'the two that filled the pool, the stale attempt, the resend');
    assert.equal(server.connections(), 3, 'the resend opened a new connection instead of taking the other stale one');
  });

  it('resends once, on a new connection, when a pooled connection answers 408 (a proxy closing it while idle); on a new connection a 408 is the answer', async () => {
    const timedOut = 'HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n';
    const server = await pooledServer((socket) => socket.end(timedOut));
    await fillPool(server);
    const upstream = await sendUpstream(client, targetOf(server), { body: '{}', headers: {} }, new Cancellation(), 10_000);
    assert.equal(upstream.status, 200);
    assert.equal(upstream.resent, true);
    assert.equal(server.requests.length, 4, 'the two that filled the pool, the one answered 408, the resend');
    assert.equal(server.connections(), 3, 'the resend on a new connection');
    const fresh = await serve((socket) => socket.end(timedOut));
    const answer = await sendUpstream(client, targetOf(fresh), { body: '{}', headers: {} }, new Cancellation(), 10_000);
    assert.equal(answer.status, 408);
    assert.equal(answer.resent, false);
    assert.equal(fresh.requests.length, 1, 'sent once');
    // A 408 that keeps the connection, or comes after the window: it answered this request.
    for (const later of [(socket: net.Socket) => socket.write('HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n'), (socket: net.Socket) => setTimeout(() => socket.end(timedOut), STALE_RESEND_WINDOW_MS + 300)]) {
      const pooled = await pooledServer(later);
      await fillPool(pooled);
      const kept = await sendUpstream(client, targetOf(pooled), { body: '{}', headers: {} }, new Cancellation(), 10_000);
      assert.equal(kept.status, 408);
      assert.equal(pooled.requests.length, 3, 'sent once');
    }
  });

  it('never resends when the connection failed after part of an answer, or long after the request was sent', async () => {
    for (const fail of [(socket: net.Socket) => socket.write('HTTP/1.1 2', () => setTimeout(() => socket.resetAndDestroy(), 20)), (socket: net.Socket) => setTimeout(() => socket.resetAndDestroy(), STALE_RESEND_WINDOW_MS + 300)]) {
      const server = await pooledServer(fail);
      await fillPool(server);
      const error = await sendUpstream(client, targetOf(server), { body: '{}', headers: {} }, new Cancellation(), 10_000).then(
        () => assert.fail('expected a failure'),
        (err: unknown) => err as GatewayError,
      );
      assert.equal(error.status, 502);
      assert.equal(error.code, 'upstream_unreachable');
      assert.equal(server.requests.length, 3, 'sent once, never again');
    }
  });
});

describe('http client: its owner', () => {
  it('close() closes the idle pooled connections (the pools belong to the client, not to the module)', async () => {
    const own = new HttpClient();
    let closed = 0;
    const server = await serve((socket) => {
      socket.once('close', () => closed++);
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    });
    await new Promise<void>((resolve) =>
      own.call(requestTo(server.port), { onResponse: (response) => response.body.on('end', resolve).resume(), onError: () => assert.fail('no failure expected') }),
    );
    assert.equal(server.connections(), 1);
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(closed, 0, 'kept for the next request');
    own.close();
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(closed, 1, 'closed with its owner');
  });

  it('lets go of a pool whose last idle connection aged out (a pool per virtual key and real key: gone keys must not pile up)', async () => {
    const own = new HttpClient(100, 20);
    const server = await serve((socket) => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'));
    const ask = (partition: string): Promise<void> =>
      new Promise<void>((resolve) => own.call(requestTo(server.port, { partition }), { onResponse: (response) => response.body.on('end', resolve).resume(), onError: () => assert.fail('no failure expected') }));
    await ask('sk-a vk_1');
    await ask('sk-a vk_2');
    assert.equal(own.poolCount, 2);
    await ask('sk-a vk_1');
    assert.equal(server.connections(), 2, 'each partition reuses its own connection');
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(own.poolCount, 0, 'both aged out');
    await ask('sk-a vk_1');
    assert.equal(own.poolCount, 1, 'opened again on the next request');
    own.close();
  });

  it('lets go of a pool none of whose connections was ever kept (a provider that closes each one, a refused port)', async () => {
    const own = new HttpClient(100, 20);
    const server = await serve((socket) => socket.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok'));
    await new Promise<void>((resolve) =>
      own.call(requestTo(server.port, { partition: 'sk-a vk_1' }), { onResponse: (response) => response.body.on('end', resolve).resume(), onError: () => assert.fail('no failure expected') }),
    );
    const refused = await refusingPort();
    await new Promise<void>((resolve) => own.call(requestTo(refused, { partition: 'sk-a vk_2' }), { onResponse: () => assert.fail('nothing listens'), onError: () => resolve() }));
    assert.equal(own.poolCount, 2);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(own.poolCount, 0, 'both let go of');
    own.close();
  });

  it('keeps a pool while a call uses its connection, however long: the connection is reused after it', async () => {
    const own = new HttpClient(100, 20);
    const server = await serve((socket, index) => {
      const answer = (): void => void socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
      if (index === 1) setTimeout(answer, 300);
      else answer();
    });
    const ask = (): Promise<void> =>
      new Promise<void>((resolve) => own.call(requestTo(server.port, { partition: 'sk-a vk_1' }), { onResponse: (response) => response.body.on('end', resolve).resume(), onError: () => assert.fail('no failure expected') }));
    await ask();
    await ask(); // takes the pool's only idle connection for 300 ms: sweeps meanwhile find none idle
    await ask();
    assert.equal(server.connections(), 1, 'one connection for the three');
    assert.equal(own.poolCount, 1);
    own.close();
  });
});

describe('http client: the request', () => {
  it('writes the head and the body in one piece: method, path, host with its port, length', () => {
    const bytes = Buffer.concat(encodeRequest(requestTo(8443, { https: true, hostname: 'api.example.com' }))).toString('latin1');
    assert.equal(
      bytes,
      'POST /v1/chat/completions HTTP/1.1\r\nhost: api.example.com:8443\r\nconnection: keep-alive\r\naccept-encoding: identity\r\nauthorization: Bearer sk-test\r\ncontent-type: application/json\r\ncontent-length: 7\r\n\r\n{"a":1}',
    );
    assert.match(Buffer.concat(encodeRequest(requestTo(443, { https: true, hostname: 'api.example.com', method: 'GET', body: null }))).toString('latin1'), /^GET \/v1\/chat\/completions HTTP\/1\.1\r\nhost: api\.example\.com\r\n(?:(?!content-length).)*\r\n\r\n$/s);
    assert.match(Buffer.concat(encodeRequest(requestTo(80, { hostname: '::1' }))).toString('latin1'), /\r\nhost: \[::1\]\r\n/);
  });

  it('writes a large body beside its head, not copied, and it arrives whole on a reused connection', async () => {
    const body = Buffer.from(JSON.stringify({ messages: 'é😀x'.repeat(100_000) }));
    const pieces = encodeRequest(requestTo(80, { body }));
    assert.equal(pieces.length, 2);
    assert.equal(pieces[1], body, 'the body itself, not a copy');
    assert.match(pieces[0]?.toString('latin1') ?? '', new RegExp(`content-length: ${body.length}\r\n\r\n$`));
    const server = await serve((socket) => socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok'));
    for (let i = 0; i < 2; i++) assert.equal((await answered(requestTo(server.port, { body }))).body, 'ok');
    assert.equal(server.connections(), 1);
    const sent = server.requests.map((request) => request.slice(request.indexOf('\r\n\r\n') + 4));
    assert.deepEqual(sent, [body.toString('latin1'), body.toString('latin1')]);
  });

  it('refuses a header value with a line break (it would inject a header), a bad header name, an unescaped path', () => {
    assert.throws(() => encodeRequest(requestTo(80, { headers: { authorization: 'Bearer x\r\nx-injected: 1' } })), /control character/);
    assert.throws(() => encodeRequest(requestTo(80, { headers: { 'x bad': 'v' } })), /not a valid token/);
    assert.throws(() => encodeRequest(requestTo(80, { path: '/v1/chat completions' })), /must be escaped/);
  });

  it('parses repeated headers as Node does, folded lines, and HTTP/1.0 without keep-alive', () => {
    const head = parseHead('HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\nVary: Origin\r\nVary: Accept\r\nX-Long: one\r\n two');
    assert.deepEqual(head?.headers['set-cookie'], ['a=1', 'b=2']);
    assert.equal(head?.headers.vary, 'Origin, Accept');
    // Node keeps the first of a repeated retry-after or content-type: a doubled one stays readable.
    assert.equal(parseHead('HTTP/1.1 429 Too Many Requests\r\nRetry-After: 20\r\nRetry-After: 20\r\nContent-Type: application/json\r\ncontent-type: text/plain')?.headers['retry-after'], '20');
    assert.equal(head?.headers['x-long'], 'one two');
    assert.equal(head?.keepAlive, true);
    assert.equal(parseHead('HTTP/1.0 200 OK\r\nContent-Length: 1')?.keepAlive, false);
    assert.equal(parseHead('HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1')?.keepAlive, true);
    assert.equal(parseHead('HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked')?.keepAlive, false, 'a transfer coding in HTTP/1.0: framing not trusted (RFC 9112, 6.1)');
    assert.equal(parseHead('HTTP/1.1 200 OK\r\nConnection: Keep-Alive, Close')?.keepAlive, false);
    assert.equal(parseHead('HTTP/2 200'), null);
  });
});

describe('http client: the memory a body is in', () => {
  /** A holder that counts: what a pooled body is to the client. */
  function countingHolder(): { hold(): void; release(): void; holds: number; releases: number } {
    return {
      holds: 0,
      releases: 0,
      hold() {
        this.holds++;
      },
      release() {
        this.releases++;
      },
    };
  }

  it('holds a body while it is written and lets go once the socket is done with it', async () => {
    const server = await serve((socket) => socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok'));
    const holder = countingHolder();
    const big = Buffer.alloc(256 * 1024, 0x61);
    assert.equal((await answered(requestTo(server.port, { body: big, holder }))).body, 'ok');
    assert.deepEqual([holder.holds, holder.releases], [1, 1]);
    const small = countingHolder();
    assert.equal((await answered(requestTo(server.port, { holder: small }))).body, 'ok');
    assert.deepEqual([small.holds, small.releases], [1, 1]);
  });

  it('does not reuse a connection answered before its request was written, and lets go of the body once it is closed', async () => {
    // Answers as soon as a head arrives, then reads nothing more for a while: the rest of a large
    // body is still on its way when the whole answer is in.
    let accepted = 0;
    const heads: string[] = [];
    const sockets = new Set<net.Socket>();
    const server = net.createServer((socket) => {
      accepted++;
      sockets.add(socket);
      socket.on('error', () => {});
      let text = '';
      const onData = (data: Buffer): void => {
        text += data.toString('latin1', 0, Math.min(data.length, 4096));
        if (!text.includes('\r\n\r\n')) return;
        heads.push(text.slice(0, text.indexOf('\r\n\r\n')));
        socket.off('data', onData);
        socket.write('HTTP/1.1 413 Payload Too Large\r\ncontent-length: 2\r\n\r\nno');
        socket.pause();
      };
      socket.on('data', onData);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as net.AddressInfo).port;
    try {
      const holder = countingHolder();
      const outcome = await answered(requestTo(port, { body: Buffer.alloc(64 * 1024 * 1024, 0x62), holder }));
      assert.equal(outcome.status, 413);
      // Released only once the client closed that connection (its write can no longer read the bytes).
      const deadline = Date.now() + 5000;
      while (holder.releases === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
      assert.deepEqual([holder.holds, holder.releases], [1, 1]);
      const next = await answered(requestTo(port));
      assert.equal(next.status, 413);
      assert.equal(accepted, 2, 'the next request went on a new connection');
      assert.equal(heads.length, 2);
      assert.match(heads[1] as string, /^POST \/v1\/chat\/completions HTTP\/1\.1\r\n/);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe('sendUpstream: the memory a body is in', () => {
  it('passes the request\'s holder to the client: held once for the write, released once it is done', async () => {
    const server = await serve((socket) => socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok'));
    const counts = { holds: 0, releases: 0 };
    const holder = { hold: () => void counts.holds++, release: () => void counts.releases++ };
    const endpoint: Endpoint = { kind: 'http', https: false, hostname: '127.0.0.1', port: server.port, path: '/v1/chat/completions', url: '' };
    const response = await sendUpstream(client, endpoint, { body: Buffer.alloc(200 * 1024, 0x63), holder, headers: {} }, new Cancellation(), 5000);
    assert.equal(response.status, 200);
    assert.equal((await readAll(response.body, { limit: 1024, truncate: false, cancel: new Cancellation(), idleMs: 5000 })).toString(), 'ok');
    assert.deepEqual(counts, { holds: 1, releases: 1 });
  });
});

describe('a connection the gateway cannot open', () => {
  /** A client whose every call fails before connecting, with `error`. */
  const failing = (error: NodeJS.ErrnoException & { address?: string }): HttpClient => {
    const fake = new HttpClient();
    fake.call = (_request, handlers) => {
      setImmediate(() => handlers.onError({ error, reused: false, answered: false, elapsedMs: 0 }));
      return { abort: () => {}, sent: false, reused: false };
    };
    fake.shortages.due(); // said already: the test's output stays quiet
    return fake;
  };
  const target: Endpoint = { kind: 'http', https: false, hostname: 'provider.example', port: 80, path: '/v1/chat/completions', url: 'http://provider.example/v1/chat/completions' };
  const outcome = async (error: NodeJS.ErrnoException & { address?: string }): Promise<GatewayError> => {
    try {
      await sendUpstream(failing(error), target, { body: '{}', headers: {} }, new Cancellation(), 10_000);
    } catch (err) {
      return err as GatewayError;
    }
    assert.fail('the call succeeded');
  };
  const errno = (code: string, address?: string): NodeJS.ErrnoException & { address?: string } => Object.assign(new Error(`connect ${code}`), { code, ...(address === undefined ? {} : { address }) });

  it("is the gateway's own shortage, not the provider's failure: out of descriptors, memory, or IPv4 ports", async () => {
    for (const error of [errno('EMFILE'), errno('ENFILE'), errno('ENOBUFS'), errno('ENOMEM'), errno('EADDRNOTAVAIL', '203.0.113.7')]) {
      const refused = await outcome(error);
      assert.deepEqual([refused.status, refused.code, refused.retryable], [503, 'gateway_out_of_resources', false], error.code);
    }
  });

  it('is the provider unreachable, and worth retrying, for an IPv6 address on a host without IPv6 (EADDRNOTAVAIL)', async () => {
    const refused = await outcome(errno('EADDRNOTAVAIL', '2001:db8::1'));
    assert.deepEqual([refused.status, refused.code, refused.retryable], [502, 'upstream_unreachable', true]);
  });
});
