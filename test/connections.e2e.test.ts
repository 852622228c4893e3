/**
 * Client connections as attackers and broken clients use them: pipelining, parse errors after
 * good requests, clients that trickle headers, send nothing, or never close. Every request must
 * leave the in-flight count, every good request gets its answer, and no socket is held for long.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { parseJsonStream, startGateway, waitFor, waitForEntry, type GatewayProcess } from './support/gateway.js';
import { request } from './support/http.js';
import { startOpenAIMock, type MockUpstream } from './support/mock-openai.js';
import { MAX_PIPELINED } from '../src/server/connections.js';

const OPENAI_KEY = 'sk-proj-connectionsOPENAIkey-4242';
const HEADERS_TIMEOUT_MS = 1000;
const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hello' }] });
const post = `POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer vk_openai\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;

let upstream: MockUpstream;
let gateway: GatewayProcess;

before(async () => {
  upstream = await startOpenAIMock({ flavor: 'openai', apiKey: OPENAI_KEY });
  gateway = await startGateway({
    keys: { virtual_keys: { vk_openai: { provider: 'openai', api_key: OPENAI_KEY, base_url: upstream.baseUrl } } },
    env: { LOG_CONSOLE: 'off', GATEWAY_HEADERS_TIMEOUT_MS: String(HEADERS_TIMEOUT_MS) },
  });
});

after(async () => {
  await gateway?.stop();
  await upstream?.close();
});

/** Requests in flight (the scrape that asks is not one of them). */
async function inFlight(): Promise<number> {
  const text = (await request(gateway.url, '/metrics', { method: 'GET' })).text;
  return Number(/^llm_gateway_requests_in_flight (\d+)$/m.exec(text)?.[1]);
}

interface RawConnection {
  readonly socket: net.Socket;
  /** The client's port, kept: a socket closed by the peer no longer reports it. */
  readonly localPort: number;
  /** Everything received so far. */
  text(): string;
  /** Resolves with everything received once the connection is closed at both ends. */
  readonly closed: Promise<string>;
}

function connect(): Promise<RawConnection> {
  return new Promise((resolve) => {
    // allowHalfOpen: like a client that never closes its side by itself (Node's default answers a FIN with its own).
    const socket = net.connect({ port: gateway.port, host: '127.0.0.1', allowHalfOpen: true });
    let text = '';
    socket.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
    socket.on('error', () => {});
    const closed = new Promise<string>((done) => socket.on('close', () => done(text)));
    socket.on('connect', () => {
      const connection = { socket, localPort: socket.localPort as number, text: () => text, closed };
      // Accepted by the gateway's process, not just by the kernel's queue: then its release can be seen.
      void waitFor(() => gatewayHolds(connection), 'the gateway to accept the connection').then(() => resolve(connection));
    });
  });
}

/**
 * Whether the gateway process still holds its side of this connection. A socket the process has
 * closed may linger in the kernel (FIN-WAIT-2) but belongs to no file descriptor: /proc shows it
 * with inode 0. Checked this way because a client that never closes its own side sees nothing.
 */
function gatewayHolds(connection: RawConnection): boolean {
  const hex = (port: number): string => port.toString(16).toUpperCase().padStart(4, '0');
  const local = `:${hex(gateway.port)}`;
  const remote = `:${hex(connection.localPort)}`;
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields[1]?.endsWith(local) && fields[2]?.endsWith(remote)) return fields[9] !== '0';
  }
  return false;
}

/** The gateway lets go of the connection within `ms` (a generous bound: this is about never, not speed). */
async function releasedWithin(connection: RawConnection, ms: number): Promise<string> {
  let closed = false;
  let ended = false;
  void connection.closed.then(() => (closed = true));
  connection.socket.once('end', () => (ended = true));
  try {
    // Let go of, and everything it sent read (its FIN came after it).
    await waitFor(() => closed || (ended && !gatewayHolds(connection)), `the gateway to let go of the connection; received: ${JSON.stringify(connection.text())}`, ms);
    return connection.text();
  } finally {
    connection.socket.destroy();
  }
}

function slowUpstream(ms: number): void {
  upstream.behave(async () => {
    await new Promise((resolve) => setTimeout(resolve, ms));
    return false;
  });
}

function statuses(text: string): number[] {
  return [...text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((match) => Number(match[1]));
}

describe('pipelined requests', () => {
  it('leave the in-flight count when the client resets the connection while one waits behind another', async () => {
    slowUpstream(300);
    try {
      const connection = await connect();
      connection.socket.write(post + post);
      await waitFor(async () => (await inFlight()) === 2, 'both requests in flight');
      connection.socket.resetAndDestroy();
      await waitFor(async () => (await inFlight()) === 0, 'no request left in flight');
    } finally {
      upstream.behave(null);
    }
  });

  it(`more than ${MAX_PIPELINED} waiting on one connection close it: its requests are cancelled, and none beyond them reaches the provider`, async () => {
    slowUpstream(300);
    const before = upstream.requests.length;
    try {
      const connection = await connect();
      connection.socket.write(post.repeat(200));
      const text = await releasedWithin(connection, 10_000);
      assert.ok(statuses(text).length <= MAX_PIPELINED, `${statuses(text).length} answers`);
      await waitFor(async () => (await inFlight()) === 0, 'no request left in flight');
      assert.ok(upstream.requests.length - before <= MAX_PIPELINED + 1, `${upstream.requests.length - before} reached the provider`);
      // Pipelining a few is served as ever.
      const few = await connect();
      few.socket.write(post.repeat(3) + 'GARBAGE\r\n\r\n');
      assert.deepEqual(statuses(await releasedWithin(few, 10_000)), [200, 200, 200, 400]);
    } finally {
      upstream.behave(null);
    }
  });

  it('a parse error after good requests: each is answered in order, then the 400, and nothing stays in flight', async () => {
    slowUpstream(200);
    try {
      const connection = await connect();
      connection.socket.write(`${post}${post}GARBAGE\r\n\r\n`);
      const text = await releasedWithin(connection, 10_000);
      assert.deepEqual(statuses(text), [200, 200, 400]);
      // Logged as answered, not as a client that went away.
      for (const id of [...text.matchAll(/x-request-id: (\S+)\r\n[\s\S]*?\r\n\r\n\{"id"/g)].map((match) => match[1] as string)) {
        assert.equal((await waitForEntry(gateway.logFile, id)).status, 200);
      }
      assert.equal(await inFlight(), 0);
    } finally {
      upstream.behave(null);
    }
  });

  it('a body cut by garbage answers 400 itself, logged as 400, and the connection closes', async () => {
    const connection = await connect();
    // Chunked body whose chunk size line is not hexadecimal.
    connection.socket.write('POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer vk_openai\r\ntransfer-encoding: chunked\r\n\r\n5\r\n{"mod\r\nZZZ\r\n');
    const text = await releasedWithin(connection, 10_000);
    assert.deepEqual(statuses(text), [400]);
    const id = /x-request-id: (\S+)/.exec(text)?.[1] as string;
    const entry = await waitForEntry(gateway.logFile, id);
    assert.equal(entry.status, 400);
    assert.equal(entry.error.code, 'bad_http_request');
    assert.equal(await inFlight(), 0);
  });
});

describe('requests answered before their body was read', () => {
  const refused = (length: number, sent: string) => `POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer vk_nobody\r\ncontent-type: application/json\r\ncontent-length: ${length}\r\n\r\n${sent}`;

  it('garbage after a refused request whose body came with it (in one write) gets its own 400, as after any other', async () => {
    for (let round = 0; round < 2; round++) {
      const connection = await connect();
      connection.socket.once('end', () => connection.socket.end()); // a client that closes when the server does
      connection.socket.write(refused(Buffer.byteLength(body), body));
      await waitFor(() => statuses(connection.text()).length === 1, 'the 401');
      connection.socket.write('GARBAGE / HTTP/1.1\r\n\r\n');
      const text = await releasedWithin(connection, 10_000);
      assert.deepEqual(statuses(text), [401, 400], text);
    }
  });

  it('garbage in the body of a refused request whose answer waits behind another (pipelined): both answers, then the connection closes, without a second answer to the one request', async () => {
    slowUpstream(500);
    try {
      const connection = await connect();
      connection.socket.once('end', () => connection.socket.end());
      connection.socket.write(`${post}POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer vk_nobody\r\ntransfer-encoding: chunked\r\n\r\n5\r\n{"mod\r\n`);
      await new Promise((resolve) => setTimeout(resolve, 150)); // the 401 is written, behind the 200
      connection.socket.write('ZZZ\r\n');
      const text = await releasedWithin(connection, 10_000);
      assert.deepEqual(statuses(text), [200, 401], text);
      assert.equal(await inFlight(), 0);
    } finally {
      upstream.behave(null);
    }
  });
});

describe('a client that closes mid-request', () => {
  it('closing its side in the middle of a body (a FIN, as an SDK timeout or Ctrl-C sends) is a client that left: the requests that came whole are still answered, the one it left is logged 499, and no 400 is written', async () => {
    const codes = () => (parseJsonStream(readFileSync(gateway.logFile, 'utf8')) as Array<{ error: { code: string } | null }>).map((entry) => entry.error?.code);
    const count = (code: string) => codes().filter((each) => each === code).length;
    slowUpstream(300);
    try {
      for (const before of ['', post]) {
        const [left, malformed] = [count('client_closed_request'), count('bad_http_request')];
        const connection = await connect();
        connection.socket.write(`${before}POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer vk_openai\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body.slice(0, 30)}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
        connection.socket.end(); // it still reads
        const text = await releasedWithin(connection, 10_000);
        assert.deepEqual(statuses(text), before === '' ? [] : [200], text);
        if (before !== '') assert.match(text, /"object":"chat\.completion"/);
        await waitFor(() => count('client_closed_request') === left + 1, 'the request it left, logged as a client that left');
        assert.equal(count('bad_http_request'), malformed);
        assert.equal(await inFlight(), 0);
      }
    } finally {
      upstream.behave(null);
    }
  });
});

describe('slow and broken clients', () => {
  it('headers that trickle past the headers timeout get 408, and the connection is closed though the client keeps sending', async () => {
    const connection = await connect();
    connection.socket.write('POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n');
    const trickle = setInterval(() => connection.socket.write('x'), 100);
    try {
      const text = await releasedWithin(connection, 10_000);
      assert.deepEqual(statuses(text), [408]);
      assert.match(text, /"code":"request_timeout"/);
    } finally {
      clearInterval(trickle);
    }
  });

  it('a connection that never sends a byte is closed after the headers timeout', async () => {
    const connection = await connect();
    const text = await releasedWithin(connection, 10_000);
    assert.deepEqual(statuses(text), [408]);
  });

  it('a client that sent garbage and never closes its side does not keep the socket', async () => {
    const connection = await connect();
    connection.socket.write('BLAH /\r\n\r\n');
    const text = await releasedWithin(connection, 10_000);
    assert.deepEqual(statuses(text), [400]);
  });

  it('an unknown expectation gets the gateway\'s own 417 (its error shape, a request id), and no 408 after it', async () => {
    const connection = await connect();
    connection.socket.write('GET /healthz HTTP/1.1\r\nhost: x\r\nexpect: something-else\r\n\r\n');
    await waitFor(() => connection.text().includes('expectation_failed'), 'the 417');
    await new Promise((resolve) => setTimeout(resolve, HEADERS_TIMEOUT_MS + 500));
    assert.deepEqual(statuses(connection.text()), [417]);
    assert.match(connection.text(), /x-request-id: [0-9a-f-]{36}/i);
    assert.match(connection.text(), /"message":"The expectation \\"something-else\\" is not supported; only \\"100-continue\\" is\."/);
    connection.socket.destroy();
  });

  it('an HTTP/1.1 request without Host gets the gateway\'s own 400 in the route\'s error shape; HTTP/1.0 needs none', async () => {
    const connection = await connect();
    connection.socket.write('POST /v1/messages HTTP/1.1\r\ncontent-length: 2\r\n\r\n{}');
    await waitFor(() => connection.text().includes('Host header'), 'the 400', 5000);
    const text = connection.text();
    assert.match(text, /^HTTP\/1\.1 400 /);
    assert.match(text, /"type":"error","error":\{"type":"invalid_request_error","message":"An HTTP\/1\.1 request needs a Host header\."\}/);
    assert.match(text, /request-id: [0-9a-f-]{36}/i);
    connection.socket.destroy();
    const old = await connect();
    old.socket.write('GET /healthz HTTP/1.0\r\n\r\n');
    await waitFor(() => statuses(old.text()).length === 1, 'the answer', 5000);
    assert.deepEqual(statuses(old.text()), [200]);
    old.socket.destroy();
  });

  it('a CONNECT after a good request: the request is answered, then a 405, then the connection closes', async () => {
    const connection = await connect();
    connection.socket.write('GET /healthz HTTP/1.1\r\nhost: x\r\n\r\nCONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n');
    const text = await releasedWithin(connection, 10_000);
    assert.deepEqual(statuses(text), [200, 405]);
  });

  it('a good request on a fresh connection is not cut by the first-request timer', async () => {
    slowUpstream(HEADERS_TIMEOUT_MS + 500);
    try {
      const connection = await connect();
      connection.socket.write(post);
      await waitFor(() => connection.text().includes('"object":"chat.completion"'), 'the answer', 10_000);
      assert.deepEqual(statuses(connection.text()), [200]);
      connection.socket.destroy();
    } finally {
      upstream.behave(null);
    }
  });
});

describe('shutdown with idle and slow connections', () => {
  it('a connection that sends nothing, and one stuck in its headers, do not hold SIGTERM for the shutdown timeout', async () => {
    const own = await startGateway({
      keys: { virtual_keys: { vk_openai: { provider: 'openai', api_key: OPENAI_KEY, base_url: upstream.baseUrl } } },
      env: { LOG_CONSOLE: 'off', GATEWAY_SHUTDOWN_TIMEOUT_MS: '60000' },
    });
    const silent = net.connect(own.port, '127.0.0.1');
    const slow = net.connect(own.port, '127.0.0.1', () => slow.write('POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n'));
    for (const socket of [silent, slow]) socket.on('error', () => {});
    try {
      await new Promise((resolve) => setTimeout(resolve, 200));
      const exited = own.stop('SIGTERM');
      // Generous: this is about not waiting for the 60 s timeout, not about speed.
      await waitFor(() => own.child.exitCode !== null, 'the gateway to exit', 15_000);
      assert.equal(await exited, 0);
      assert.doesNotMatch(own.stderr(), /shutdown timeout/);
    } finally {
      silent.destroy();
      slow.destroy();
      await own.stop('SIGKILL');
    }
  });
});
