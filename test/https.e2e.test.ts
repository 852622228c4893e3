/**
 * Providers are reached over TLS: a local HTTPS upstream with a self-signed certificate for
 * localhost (test/fixtures, valid until 2126). The gateway verifies certificates against Node's
 * CA store, extended here with NODE_EXTRA_CA_CERTS, as an operator would for a private CA.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ROOT, startGateway, waitForEntry, type GatewayProcess } from './support/gateway.js';
import { chat, sseData } from './support/http.js';

const CERT = join(ROOT, 'test', 'fixtures', 'localhost-cert.pem');
const KEY = join(ROOT, 'test', 'fixtures', 'localhost-key.pem');
const REAL_KEY = 'sk-tls-real-key';

let upstream: https.Server;
let port = 0;
let trusting: GatewayProcess;
let untrusting: GatewayProcess;
/** Connections the upstream accepted: pooled TLS connections are reused. */
let connections = 0;

const completion = JSON.stringify({
  id: 'chatcmpl-tls',
  object: 'chat.completion',
  created: 1,
  model: 'gpt-4o',
  choices: [{ index: 0, message: { role: 'assistant', content: 'over TLS' }, finish_reason: 'stop' }],
  usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 },
});
const frame = (delta: object, finish: string | null) => `data: ${JSON.stringify({ id: 'chatcmpl-tls', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;

const keys = () => ({ virtual_keys: { vk_tls: { provider: 'openai', api_key: REAL_KEY, base_url: `https://localhost:${port}/v1` } } });

before(async () => {
  upstream = https.createServer({ cert: readFileSync(CERT), key: readFileSync(KEY), keepAliveTimeout: 60_000 }, (req, res) => {
    let text = '';
    req.setEncoding('utf8').on('data', (piece: string) => (text += piece));
    req.on('end', () => {
      if (req.headers.authorization !== `Bearer ${REAL_KEY}`) {
        res.writeHead(401, { 'content-type': 'application/json' });
        return void res.end('{"error":{"message":"bad key","type":"invalid_request_error","code":"invalid_api_key"}}');
      }
      if ((JSON.parse(text) as { stream?: boolean }).stream === true) {
        // Chunked transfer encoding, as providers stream.
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(frame({ role: 'assistant', content: 'over' }, null));
        res.write(frame({ content: ' TLS' }, null));
        res.write(frame({}, 'stop'));
        return void res.end('data: [DONE]\n\n');
      }
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(completion) });
      res.end(completion);
    });
  });
  upstream.on('secureConnection', () => connections++);
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  port = (upstream.address() as AddressInfo).port;
  trusting = await startGateway({ keys: keys(), env: { LOG_CONSOLE: 'off', NODE_EXTRA_CA_CERTS: CERT } });
  untrusting = await startGateway({ keys: keys(), env: { LOG_CONSOLE: 'off', UPSTREAM_RETRIES: '0' } });
});

after(async () => {
  await trusting?.stop();
  await untrusting?.stop();
  upstream?.closeAllConnections();
  await new Promise((resolve) => upstream?.close(resolve));
});

describe('HTTPS upstreams', () => {
  it('answers through a verified TLS connection, and reuses it', async () => {
    const before = connections;
    for (let i = 0; i < 3; i++) {
      const reply = await chat(trusting.url, 'vk_tls', { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] });
      assert.equal(reply.status, 200, reply.text);
      assert.equal(reply.json.choices[0].message.content, 'over TLS');
    }
    assert.equal(connections - before, 1, 'one pooled TLS connection for three requests');
  });

  it('streams a chunked event stream over TLS', async () => {
    const reply = await chat(trusting.url, 'vk_tls', { model: 'gpt-4o', stream: true, messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(reply.status, 200);
    const data = sseData(reply.text);
    assert.equal(data.at(-1), '[DONE]');
    assert.equal(data.slice(0, -1).map((text) => JSON.parse(text).choices[0].delta.content ?? '').join(''), 'over TLS');
  });

  it('refuses a certificate it cannot verify: 502, the reason in the log, no key anywhere', async () => {
    const reply = await chat(untrusting.url, 'vk_tls', { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(reply.status, 502);
    assert.equal(reply.json.error.code, 'upstream_unreachable');
    assert.doesNotMatch(reply.text, new RegExp(REAL_KEY));
    const entry = await waitForEntry(untrusting.logFile, String(reply.headers['x-request-id']));
    assert.match(entry.error.detail, /self[- ]signed|unable to verify|certificate/i);
  });
});
