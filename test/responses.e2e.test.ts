/**
 * Responses clients (Codex CLI, the OpenAI SDK's `responses`) end to end: the gateway as it
 * ships, talked to over HTTP the way those clients do, in front of mock providers that enforce
 * each API's rules: pass-through to OpenAI's Responses API (and the stored-response routes, with
 * the rule that a virtual key reaches only the responses it created), stateless translation to
 * Chat Completions targets (OpenAI-compatible, DeepSeek) and, through the hub, to Anthropic.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { ownerTag } from '../src/policy/response-owners.js';
import { CODEX_HEADERS, codexFirstTurn } from './support/codex.js';
import { startGateway, waitFor, waitForEntry, type GatewayProcess } from './support/gateway.js';
import { drip, request, type Reply } from './support/http.js';
import { refusingPort } from './support/ports.js';
import { anthropicError, startAnthropicMock, type AnthropicMock } from './support/mock-anthropic.js';
import { startOpenAIMock, type MockUpstream } from './support/mock-openai.js';
import { streamEvents } from './support/mock-responses.js';

const OPENAI_KEY = 'sk-proj-e2eRESPONSESopenai-Dd4';
const DEEPSEEK_KEY = 'sk-e2eRESPONSESdeepseek-Ee5';
const ANTHROPIC_KEY = 'sk-ant-api03-e2eRESPONSESkey-Ff6';
const weatherTool = { type: 'function', name: 'get_weather', description: 'Current weather', strict: false, parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } };

let openai: MockUpstream;
let deepseek: MockUpstream;
let anthropic: AnthropicMock;
let gateway: GatewayProcess;
/** A team's own Responses server (its vLLM): it says of any id that the team's other key owns it. */
let forger: http.Server;
let forgerUrl = '';

function keysFor(openaiUrl: string): unknown {
  return {
    virtual_keys: {
      vk_codex: { name: 'codex-team', provider: 'openai', api_key: OPENAI_KEY, base_url: openaiUrl, api: ['chat', 'responses'] },
      vk_codex_other: { name: 'other-team', provider: 'openai', api_key: OPENAI_KEY, base_url: openaiUrl, api: ['chat', 'responses'] },
      vk_other_own_server: { name: 'other-team-vllm', provider: 'openai', api_key: 'none', base_url: forgerUrl, api: ['chat', 'responses'] },
      vk_codex_mapped: { provider: 'openai', api_key: OPENAI_KEY, base_url: openaiUrl, api: ['chat', 'responses'], model_map: { 'gpt-5-codex': 'gpt-4o-mini' }, max_output_tokens: 4000 },
      vk_compat: { provider: 'openai', api_key: OPENAI_KEY, base_url: openaiUrl },
      vk_ds: { name: 'ds-team', provider: 'deepseek', api_key: DEEPSEEK_KEY, base_url: deepseek.baseUrl, model_map: { 'gpt-5*': 'deepseek-reasoner', '*': 'deepseek-chat' } },
      vk_claude_test: { provider: 'anthropic', api_key: ANTHROPIC_KEY, base_url: anthropic.baseUrl, model_map: { '*': 'claude-sonnet-4-5' } },
      vk_claude_adaptive: { provider: 'anthropic', api_key: ANTHROPIC_KEY, base_url: anthropic.baseUrl, model_map: { '*': 'claude-opus-4-6' } },
      vk_claude_capped: { provider: 'anthropic', api_key: ANTHROPIC_KEY, base_url: anthropic.baseUrl, model_map: { '*': 'claude-sonnet-4-5' }, max_output_tokens: 32000, budget: { max_tokens: 1_000_000_000, period: 'total' } },
      vk_mock: { provider: 'mock' },
      vk_codex_budget: { provider: 'openai', api_key: OPENAI_KEY, base_url: openaiUrl, api: ['chat', 'responses'], budget: { max_tokens: 100_000, period: 'total' } },
      vk_codex_tpm: { provider: 'openai', api_key: OPENAI_KEY, base_url: openaiUrl, api: ['chat', 'responses'], rate_limit: { tokens_per_minute: 1_000_000 } },
      vk_rpm: { provider: 'openai', api_key: OPENAI_KEY, base_url: openaiUrl, api: ['chat', 'responses'], rate_limit: { requests_per_minute: 1 } },
      vk_mini_only: { provider: 'openai', api_key: OPENAI_KEY, base_url: openaiUrl, api: ['chat', 'responses'], models: ['gpt-4o-mini'] },
      vk_bad_real: { provider: 'openai', api_key: 'sk-proj-WRONGkey-Zz9', base_url: openaiUrl, api: ['chat', 'responses'] },
    },
  };
}

before(async () => {
  forger = http.createServer((req, res) => {
    const id = decodeURIComponent(/\/responses\/([^/?]+)/.exec(req.url ?? '')?.[1] ?? '');
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ id, object: 'response', status: 'completed', metadata: { llm_gateway_owner: ownerTag('vk_codex_other') }, output: [] }));
  });
  await new Promise<void>((resolve) => forger.listen(0, '127.0.0.1', resolve));
  forgerUrl = `http://127.0.0.1:${(forger.address() as { port: number }).port}/v1`;
  [openai, deepseek, anthropic] = await Promise.all([
    startOpenAIMock({ flavor: 'openai', apiKey: OPENAI_KEY }),
    startOpenAIMock({ flavor: 'deepseek', apiKey: DEEPSEEK_KEY }),
    startAnthropicMock({ apiKey: ANTHROPIC_KEY }),
  ]);
  gateway = await startGateway({ keys: keysFor(openai.baseUrl), env: { LOG_CONSOLE: 'off', UPSTREAM_RETRIES: '0', STATE_FILE: 'off', UPSTREAM_IDLE_TIMEOUT_MS: '1500' } });
});

after(async () => {
  await gateway?.stop();
  await Promise.all([openai?.close(), deepseek?.close(), anthropic?.close()]);
  forger?.close();
});

function responses(key: string | null, body: unknown, options: { path?: string; headers?: Record<string, string> } = {}): Promise<Reply> {
  return request(gateway.url, options.path ?? '/v1/responses', { key, body, ...(options.headers === undefined ? {} : { headers: options.headers }) });
}

/** Parses a Responses stream as openai-node and Codex do, checking each `event:` line names its data's type. */
function events(text: string): any[] {
  return text
    .split('\n\n')
    .filter((block) => block.trim() !== '' && !block.startsWith(':'))
    .map((block) => {
      const name = /^event: (.+)$/m.exec(block)?.[1];
      const data = JSON.parse(block.split('\n').filter((line) => line.startsWith('data: ')).map((line) => line.slice(6)).join('\n'));
      assert.equal(name, data.type, `event line of ${block}`);
      return data;
    });
}

/** Checks what Codex checks of a stream: created first, numbers in order, completed last with an id and integer usage. */
function assertCodexStream(list: any[]): any {
  assert.equal(list[0]?.type, 'response.created');
  list.forEach((event, index) => assert.equal(event.sequence_number, index, `sequence of ${event.type}`));
  const last = list.at(-1);
  assert.equal(last.type, 'response.completed');
  assert.equal(typeof last.response.id, 'string');
  for (const field of ['input_tokens', 'output_tokens', 'total_tokens']) assert.ok(Number.isInteger(last.response.usage[field]), field);
  return last.response;
}

describe('pass-through to a provider that speaks Responses (OpenAI)', () => {
  it('sends the client bytes as they are when nothing is stored, with the real key and none of the client headers', async () => {
    openai.requests.length = 0;
    const body = JSON.stringify(codexFirstTurn('gpt-5-codex', 'hello codex'));
    const reply = await request(gateway.url, '/v1/responses', { key: 'vk_codex', body, headers: CODEX_HEADERS });
    assert.equal(reply.status, 200, reply.text);
    const sent = openai.requests[0];
    assert.equal(sent?.path, '/v1/responses');
    assert.equal(sent?.raw, body, 'store: false: not one byte changed');
    assert.equal(sent?.headers.authorization, `Bearer ${OPENAI_KEY}`);
    for (const header of ['originator', 'session-id', 'x-codex-turn-metadata', 'x-client-request-id']) assert.equal(sent?.headers[header], undefined, header);
    const response = assertCodexStream(events(reply.text));
    assert.deepEqual(response.output[0].content[0].text, 'openai says: hello codex');
    const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
    assert.deepEqual(entry.usage, { input_tokens: 17, output_tokens: 9, cache_read_tokens: 4, cache_write_tokens: 0, reasoning_tokens: 2 });
    assert.deepEqual(entry.response, response);
    assert.equal(entry.key_name, 'codex-team');
    assert.equal(entry.upstream.url, `${openai.baseUrl}/responses`);
    assert.equal(entry.upstream.dropped_tools, undefined, 'OpenAI runs web_search itself');
  });

  it('answers JSON with the provider bytes; a stored response is tagged with its owner, spliced in without re-serialising', async () => {
    openai.requests.length = 0;
    const body = '{"model":"gpt-5",   "input":"hi there"}';
    const reply = await request(gateway.url, '/responses', { key: 'vk_codex', body });
    assert.equal(reply.status, 200, reply.text);
    assert.equal(reply.json.object, 'response');
    assert.equal(reply.json.metadata.llm_gateway_owner, ownerTag('vk_codex'));
    assert.equal(openai.requests[0]?.raw, `{"metadata":{"llm_gateway_owner":"${ownerTag('vk_codex')}"},"model":"gpt-5",   "input":"hi there"}`);
    const forged = await responses('vk_codex_other', { model: 'gpt-5', input: 'x', metadata: { team: 'b', llm_gateway_owner: ownerTag('vk_codex') } });
    assert.deepEqual(forged.json.metadata, { team: 'b', llm_gateway_owner: ownerTag('vk_codex_other') }, "no key claims another's tag");
    const full = await responses('vk_codex', { model: 'gpt-5', input: 'x', metadata: Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`k${i}`, 'v'])) });
    assert.equal(full.status, 400);
    assert.equal(full.json.error.param, 'metadata');
  });

  it('relays a stream split anywhere unchanged and logs the final response and its usage, whichever event ends it', async () => {
    const usage = { input_tokens: 40, input_tokens_details: { cached_tokens: 10 }, output_tokens: 6, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 46 };
    const output = [{ type: 'message', id: 'msg_d', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text: 'Hi – ☀️ there', annotations: [] }] }];
    const endings = [
      { end: 'response.completed', fields: { status: 'completed' }, status: 200 },
      { end: 'response.incomplete', fields: { status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' } }, status: 200 },
      { end: 'response.failed', fields: { status: 'failed', error: { code: 'server_error', message: 'The model failed.' } }, status: 502 },
    ] as const;
    for (const { end, fields, status } of endings) {
      const response = { id: 'resp_drip', object: 'response', created_at: 1, model: 'gpt-5', output, usage, ...fields };
      const transcript = streamEvents(response, end).join('');
      openai.behave(async ({ res, recorded }): Promise<boolean | void> => {
        if (recorded.path !== '/v1/responses') return false;
        res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'x-request-id': 'req_up_drip' });
        await drip(res, transcript);
      });
      try {
        const reply = await responses('vk_codex', { model: 'gpt-5', input: 'hi', stream: true, store: false });
        assert.equal(reply.status, 200);
        assert.equal(reply.text, transcript, end);
        const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
        assert.equal(entry.status, status, end);
        assert.deepEqual(entry.response, response, end);
        assert.deepEqual(entry.usage, { input_tokens: 30, output_tokens: 6, cache_read_tokens: 10, cache_write_tokens: 0, reasoning_tokens: 0 }, end);
        assert.equal(entry.upstream.request_id, 'req_up_drip');
      } finally {
        openai.behave(null);
      }
    }
  });

  it("passes a provider's mid-stream failure on as it came, with the real key scrubbed, and logs its status, with or without a response.failed after its error event, its events named or not", async () => {
    for (const [after, named] of [['failed', true], ['end', true], ['reset', true], ['end', false]] as const) {
      openai.behave(({ res, recorded }): boolean | void => {
        if (recorded.path !== '/v1/responses') return false;
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        const name = (type: string): string => (named ? `event: ${type}\n` : '');
        res.write(`${name('response.created')}data: {"type":"response.created","sequence_number":0,"response":{"id":"resp_f","status":"in_progress","output":[]}}\n\n`);
        res.write(`${name('error')}data: {"type":"error","sequence_number":1,"code":"rate_limit_exceeded","message":"Limit for ${OPENAI_KEY}"}\n\n`);
        // Some servers end the stream with the error event, or drop the connection after it.
        if (after === 'reset') setTimeout(() => res.destroy(), 50);
        else res.end(after === 'failed' ? `event: response.failed\ndata: {"type":"response.failed","sequence_number":2,"response":{"id":"resp_f","status":"failed","error":{"code":"rate_limit_exceeded","message":"Rate limit reached for ${OPENAI_KEY}. Please try again in 20s."}}}\n\n` : '');
      });
      try {
        const reply = await responses('vk_codex', { model: 'gpt-5', input: 'hi', stream: true, store: false });
        assert.ok(!reply.text.includes(OPENAI_KEY));
        const list = events(reply.text);
        assert.deepEqual(list.map((event) => event.type), ['response.created', 'error', 'response.failed']);
        assert.equal(list[2].response.error.code, 'rate_limit_exceeded');
        assert.equal(list[2].response.id, 'resp_f');
        // Every event named after its type (the SDK reads events by name), whether the provider named them or not.
        assert.deepEqual([...reply.text.matchAll(/^event: (.*)$/gm)].map((match) => match[1]), ['response.created', 'error', 'response.failed'], reply.text);
        const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
        assert.equal(entry.status, 429, `after: ${after}, named: ${named}`);
        assert.equal(entry.error.code, 'rate_limit_exceeded');
        assert.ok(!JSON.stringify(entry).includes(OPENAI_KEY));
      } finally {
        openai.behave(null);
      }
    }
  });

  /** The provider sends `transcript` as a Responses stream, then drops the connection. */
  const dropsAfter = (transcript: string): void =>
    openai.behave(({ res, recorded }): boolean | void => {
      if (recorded.path !== '/v1/responses') return false;
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(transcript);
      setTimeout(() => res.destroy(), 50);
    });

  it('ends a stream the provider drops with response.failed numbered after the last event it relayed', async () => {
    const response = { id: 'resp_cut', object: 'response', created_at: 1, status: 'completed', model: 'gpt-5', output: [{ type: 'message', id: 'msg_c', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text: 'A longer answer that is cut', annotations: [] }] }], usage: null };
    const cut = streamEvents(response).slice(0, -2).join('');
    dropsAfter(cut);
    try {
      const reply = await responses('vk_codex', { model: 'gpt-5', input: 'hi', stream: true, store: false });
      const list = events(reply.text);
      const failed = list.at(-1);
      assert.equal(failed.type, 'response.failed');
      assert.equal(failed.sequence_number, list.at(-2).sequence_number + 1);
      assert.equal(failed.response.id, 'resp_cut');
      assert.equal(failed.response.error.code, 'server_error');
    } finally {
      openai.behave(null);
    }
  });

  it('logs a stream dropped before its end as the response created with the items that were done', async () => {
    const output = [
      { type: 'message', id: 'msg_p', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text: 'Reading the file – one moment, please.', annotations: [] }] },
      { type: 'function_call', id: 'fc_p', call_id: 'call_p', name: 'read_file', arguments: '{"path":"src/a.ts"}', status: 'completed' },
    ];
    const response = { id: 'resp_part', object: 'response', created_at: 7, status: 'completed', model: 'gpt-5', output, usage: null };
    const cut = streamEvents(response).slice(0, -1).join('');
    dropsAfter(cut);
    try {
      const reply = await responses('vk_codex', { model: 'gpt-5', input: 'hi', stream: true, store: false });
      assert.equal(events(reply.text).at(-1).type, 'response.failed');
      const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
      assert.deepEqual(entry.response, { ...response, status: 'incomplete', usage: null, output });
    } finally {
      openai.behave(null);
    }
  });

  it('applies the model map and the output cap, re-serialising only then', async () => {
    openai.requests.length = 0;
    const reply = await responses('vk_codex_mapped', { model: 'gpt-5-codex', input: 'hi', max_output_tokens: 64000, store: false });
    assert.equal(reply.status, 200, reply.text);
    assert.deepEqual(openai.requests[0]?.json, { model: 'gpt-4o-mini', input: 'hi', max_output_tokens: 4000, store: false });
    const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
    assert.deepEqual([entry.model, entry.upstream.model], ['gpt-5-codex', 'gpt-4o-mini']);
  });

  it("passes the provider's own errors on in OpenAI's shape", async () => {
    const reply = await responses('vk_codex', { model: 'gpt-5', input: 'hi', bogus: 1 });
    assert.equal(reply.status, 400);
    assert.deepEqual(reply.json, { error: { message: "Unknown parameter: 'bogus'.", type: 'invalid_request_error', param: 'bogus', code: 'unknown_parameter' } });
    const badReal = await responses('vk_bad_real', { model: 'gpt-5', input: 'hi' });
    assert.equal(badReal.status, 500);
    assert.equal(badReal.json.error.code, 'provider_auth_failed');
  });
});

describe('a stored conversation a request continues', () => {
  it('is held against the budget as large as the provider last counted it: a burst continuing it cannot all pass a budget it would overrun', async () => {
    // The provider reads (and bills) the whole conversation each continuation names: 60,000 tokens.
    let answers = 0;
    openai.behave(async ({ res, recorded }) => {
      if (recorded.method !== 'POST' || recorded.path !== '/v1/responses') return false;
      if (recorded.json?.previous_response_id != null) await new Promise((resolve) => setTimeout(resolve, 300)); // the burst runs together
      const id = `resp_long${answers++}`;
      const output = [{ type: 'message', id: `msg_${id}`, status: 'completed', role: 'assistant', content: [{ type: 'output_text', text: 'ok', annotations: [] }] }];
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ id, object: 'response', status: 'completed', model: 'gpt-5', output, metadata: recorded.json.metadata ?? {}, usage: { input_tokens: 60_000, output_tokens: 10, total_tokens: 60_010 } }));
      return true;
    });
    try {
      const first = await responses('vk_codex_budget', { model: 'gpt-5', input: 'start', max_output_tokens: 10 });
      assert.equal(first.status, 200, first.text);
      const burst = await Promise.all(Array.from({ length: 5 }, () => responses('vk_codex_budget', { model: 'gpt-5', previous_response_id: first.json.id, input: 'more', max_output_tokens: 10 })));
      // The first holds the 60,010 tokens it continues (the budget had 39,990 left): the others are refused while it runs.
      assert.deepEqual(burst.map((reply) => reply.status).sort(), [200, 429, 429, 429, 429], burst.map((reply) => reply.text).join('\n'));
      assert.equal(answers, 2, 'the provider was asked twice');
      const usage = (await request(gateway.url, '/v1/usage', { method: 'GET', key: 'vk_codex_budget' })).json;
      assert.equal(usage.usage.total_tokens, 120_020);
      // Another key naming it holds only its own bytes: refused as not found, and told nothing of its size.
      const theirs = await responses('vk_codex_tpm', { model: 'gpt-5', previous_response_id: first.json.id, input: 'more', max_output_tokens: 10 });
      assert.equal(theirs.status, 400, theirs.text);
      assert.ok(Number(theirs.headers['x-ratelimit-remaining-tokens']) > 999_000, String(theirs.headers['x-ratelimit-remaining-tokens']));
    } finally {
      openai.behave(null);
    }
  });
});

describe('stored responses: a virtual key reaches only its own', () => {
  let id = '';
  before(async () => {
    const reply = await responses('vk_codex', { model: 'gpt-5', input: 'remember me' });
    assert.equal(reply.status, 200, reply.text);
    id = reply.json.id;
  });

  it('lets the creating key read it and its input items, and gives any other key the 404 of an id that does not exist', async () => {
    const mine = await request(gateway.url, `/v1/responses/${id}`, { method: 'GET', key: 'vk_codex' });
    assert.equal(mine.status, 200, mine.text);
    assert.equal(mine.json.id, id);
    const items = await request(gateway.url, `/v1/responses/${id}/input_items?limit=5&order=asc`, { method: 'GET', key: 'vk_codex' });
    assert.equal(items.status, 200, items.text);
    assert.equal(items.json.object, 'list');
    assert.equal(openai.requests.at(-1)?.query, 'limit=5&order=asc');
    let last = '';
    for (const [method, path] of [['GET', `/v1/responses/${id}`], ['GET', `/v1/responses/${id}/input_items`], ['DELETE', `/v1/responses/${id}`], ['POST', `/v1/responses/${id}/cancel`]] as const) {
      openai.requests.length = 0;
      const theirs = await request(gateway.url, path, { method, key: 'vk_codex_other' });
      last = String(theirs.headers['x-request-id']);
      assert.equal(theirs.status, 404, `${method} ${path}`);
      assert.deepEqual(theirs.json, { error: { message: `Response with id '${id}' not found.`, type: 'invalid_request_error', param: null, code: 'not_found' } });
      assert.ok(openai.requests.every((sent) => sent.method === 'GET'), `${method} ${path}: nothing but a read reached the provider`);
    }
    const entry = await waitForEntry(gateway.logFile, last);
    assert.deepEqual([entry.status, entry.key_name, entry.method, entry.path], [404, 'other-team', 'POST', `/v1/responses/${id}/cancel`]);
    // The provider's own 404 for an id it does not know: the log names the URL that answered it.
    const unknown = await request(gateway.url, '/v1/responses/resp_unknown_to_openai?include=x', { method: 'GET', key: 'vk_codex' });
    assert.equal(unknown.status, 404, unknown.text);
    // The same body as another key's response gets: which of the two an id is cannot be told apart.
    assert.deepEqual(unknown.json, { error: { message: "Response with id 'resp_unknown_to_openai' not found.", type: 'invalid_request_error', param: null, code: 'not_found' } });
    const logged = await waitForEntry(gateway.logFile, String(unknown.headers['x-request-id']));
    assert.match(logged.error.detail, /^upstream 404 from http:\/\/127\.0\.0\.1:\d+\/v1\/responses\/resp_unknown_to_openai\b/);
    assert.ok(logged.error.detail.startsWith(`upstream 404 from ${logged.upstream.url}`), 'the URL of the call made, as upstream.url says');
  });

  it("keeps another key's response from a key whose own provider says it owns it: an owner said by one provider account vouches for no other", async () => {
    // The other team's own server claims the response for the team's key that shares the real OpenAI key.
    const claimed = await request(gateway.url, `/v1/responses/${id}`, { method: 'GET', key: 'vk_other_own_server' });
    assert.equal(claimed.status, 404, 'its own server answered for another id: not the response it asked for');
    for (const [method, path] of [['GET', `/v1/responses/${id}/input_items`], ['DELETE', `/v1/responses/${id}`], ['GET', `/v1/responses/${id}`]] as const) {
      const theirs = await request(gateway.url, path, { method, key: 'vk_codex_other' });
      assert.equal(theirs.status, 404, `${method} ${path}: ${theirs.text}`);
    }
    const continued = await responses('vk_codex_other', { model: 'gpt-5', input: 'repeat everything', previous_response_id: id, store: false });
    assert.equal(continued.status, 400, continued.text);
    assert.equal(continued.json.error.code, 'previous_response_not_found');
    const mine = await request(gateway.url, `/v1/responses/${id}`, { method: 'GET', key: 'vk_codex' });
    assert.equal(mine.status, 200, 'still there, and still its creator\'s');
  });

  it('refuses to continue another key\'s response, and continues its own', async () => {
    const theirs = await responses('vk_codex_other', { model: 'gpt-5', input: 'and then?', previous_response_id: id });
    assert.equal(theirs.status, 400);
    assert.deepEqual(theirs.json.error, { message: `Previous response with id '${id}' not found.`, type: 'invalid_request_error', param: 'previous_response_id', code: 'previous_response_not_found' });
    const mine = await responses('vk_codex', { model: 'gpt-5', input: 'and then?', previous_response_id: id, store: false });
    assert.equal(mine.status, 200, mine.text);
    assert.equal(mine.json.previous_response_id, id);
    for (const previous of [[id], { id }, 1]) {
      openai.requests.length = 0;
      const odd = await responses('vk_codex_other', { model: 'gpt-5', input: 'and then?', previous_response_id: previous });
      assert.equal(odd.status, 400, JSON.stringify(previous));
      assert.deepEqual([odd.json.error.param, odd.json.error.code], ['previous_response_id', 'invalid_type']);
      assert.equal(openai.requests.length, 0, 'the owner check does not depend on the provider refusing the type');
    }
    const conversation = await responses('vk_codex', { model: 'gpt-5', input: 'x', conversation: 'conv_1' });
    assert.equal(conversation.status, 400);
    assert.equal(conversation.json.error.param, 'conversation');
  });

  it('refuses a stream read however the query spells it, and a duplicated previous_response_id goes as the gateway checked it', async () => {
    for (const query of ['stream=true', 'stream=%74rue', 'STREAM=True', '%73tream=1']) {
      openai.requests.length = 0;
      const reply = await request(gateway.url, `/v1/responses/${id}?${query}`, { method: 'GET', key: 'vk_codex_other' });
      assert.equal(reply.status, 400, query);
      assert.equal(openai.requests.length, 0, `${query}: nothing reached the provider`);
    }
    const continued = await responses('vk_codex', { model: 'gpt-5', input: 'still mine?', previous_response_id: id, store: false });
    assert.equal(continued.status, 200, 'the owner is not locked out');
    openai.requests.length = 0;
    const body = `{"model":"gpt-5","input":"x","store":false,"previous_response_id":"${id}","previous_response_id":null}`;
    const sneaky = await request(gateway.url, '/v1/responses', { key: 'vk_codex_other', body });
    assert.equal(sneaky.status, 200, sneaky.text);
    assert.equal(openai.requests[0]?.raw, '{"model":"gpt-5","input":"x","store":false,"previous_response_id":null}', 'one previous_response_id: the one the gateway checked');
    const invalid = await responses('vk_codex', { model: 'gpt-5', input: 'x', metadata: 'tag' });
    assert.equal(invalid.status, 400);
    assert.equal(invalid.json.error.param, 'metadata');
  });

  it("gives a provider's refusal without a code OpenAI's code on compact and input_tokens, as on create (Codex waits on rate_limit_exceeded)", async () => {
    openai.behave(({ res, recorded }): boolean | void => {
      if (!recorded.path.startsWith('/v1/responses')) return false;
      res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '1' });
      res.end(JSON.stringify({ error: { message: 'Too many requests.', type: 'requests', param: null, code: null } }));
    });
    try {
      for (const path of ['/v1/responses', '/v1/responses/compact', '/v1/responses/input_tokens']) {
        const reply = await request(gateway.url, path, { key: 'vk_codex', headers: { 'x-stainless-retry-count': '0' }, body: { model: 'gpt-5', input: [{ role: 'user', content: 'hi' }] } });
        assert.equal(reply.status, 429, `${path}: ${reply.text}`);
        assert.equal(reply.json.error.code, 'rate_limit_exceeded', `${path}: ${reply.text}`);
      }
    } finally {
      openai.behave(null);
    }
  });

  it('sends what it checked however a key is spelled (twice, or with escapes): create, compact and input_tokens', async () => {
    openai.requests.length = 0;
    const escaped = `{"model":"gpt-5","input":"x","store":false,"previous_resp\\u006fnse_id":"${id}","previous_response_id":null}`;
    const create = await request(gateway.url, '/v1/responses', { key: 'vk_codex_other', body: escaped });
    assert.equal(create.status, 200, create.text);
    assert.equal(openai.requests[0]?.raw, '{"model":"gpt-5","input":"x","store":false,"previous_response_id":null}', 'one previous_response_id: the one the gateway checked');
    for (const path of ['/v1/responses/compact', '/v1/responses/input_tokens']) {
      for (const body of [`{"model":"gpt-5","input":"x","previous_response_id":"${id}","previous_response_id":null}`, escaped.replace(',"store":false', '')]) {
        openai.requests.length = 0;
        const reply = await request(gateway.url, path, { key: 'vk_codex_other', body });
        assert.equal(reply.status, 200, `${path} ${body}: ${reply.text}`);
        assert.equal(openai.requests.at(-1)?.raw, '{"model":"gpt-5","input":"x","previous_response_id":null}', `${path} ${body}`);
      }
    }
  });

  it("refuses item_reference input items naming no item of the key's own stored responses: an item id does not say whose response it is from", async () => {
    // OpenAI's type is optional on a reference: an id with no type (or a null one) and no role is one too.
    for (const reference of [{ type: 'item_reference', id: 'msg_of_another_key' }, { id: 'msg_of_another_key' }, { type: null, id: 'msg_of_another_key' }, { id: 'msg_of_another_key', role: null }, { type: null, id: 'msg_of_another_key', role: null }]) {
      for (const path of ['/v1/responses', '/v1/responses/compact', '/v1/responses/input_tokens']) {
        openai.requests.length = 0;
        const reply = await request(gateway.url, path, { key: 'vk_codex_other', body: { model: 'gpt-5', input: [{ role: 'user', content: 'x' }, reference] } });
        assert.equal(reply.status, 400, `${path} ${JSON.stringify(reference)}`);
        assert.deepEqual([reply.json.error.code, reply.json.error.param], ['unsupported_parameter', 'input[1]'], path);
        assert.match(reply.json.error.message, /item_reference \(to 'msg_of_another_key'\) names no item of a response this virtual key stored through this gateway process.*providerOptions\.openai\.store = false/);
        assert.equal(openai.requests.length, 0, `${path}: nothing reached the provider`);
      }
    }
    // A message that carries an id of its own is a message.
    const message = await request(gateway.url, '/v1/responses', { key: 'vk_codex_other', body: { model: 'gpt-5', input: [{ id: 'msg_mine', role: 'user', content: 'x' }] } });
    assert.equal(message.status, 200, message.text);
  });

  it("refuses a reasoning item named by an id without its encrypted_content (OpenAI reads it from the responses it stored) where the id is known to be another key's, and passes one it does not know (a restart: every turn of a stored conversation sends its reasoning back) or that carries its content (Codex), in a small body and an agent-sized one", async () => {
    const stored = await responses('vk_codex', { model: 'gpt-5', input: 'hello' });
    assert.equal(stored.status, 200, stored.text);
    const theirs: string = stored.json.output[0].id;
    const encrypted = `gAAAAB${'x'.repeat(3000)}`;
    for (const padding of ['', 'y'.repeat(100_000)]) {
      const input = (item: object): unknown[] => [{ role: 'user', content: `x${padding}` }, item, { role: 'user', content: 'and?' }];
      for (const path of ['/v1/responses', '/v1/responses/compact', '/v1/responses/input_tokens']) {
        openai.requests.length = 0;
        // Content it cannot read (empty, or no string) is none: the provider may take the stored item.
        for (const content of [{}, { encrypted_content: null }, { encrypted_content: '' }, { encrypted_content: false }, { encrypted_content: {} }]) {
          const reply = await request(gateway.url, path, { key: 'vk_codex_other', body: { model: 'gpt-5', input: input({ type: 'reasoning', id: theirs, summary: [], ...content }) } });
          assert.equal(reply.status, 400, `${path} ${JSON.stringify(content)} ${reply.text.slice(0, 300)}`);
          assert.deepEqual([reply.json.error.code, reply.json.error.param], ['unsupported_parameter', 'input[1]'], path);
          assert.match(reply.json.error.message, /a reasoning item without its encrypted_content \(to '[^']+'\) names no item/);
          assert.equal(openai.requests.length, 0, `${path}: nothing reached the provider`);
        }
        const unknown = await request(gateway.url, path, { key: 'vk_codex_other', body: { model: 'gpt-5', input: input({ type: 'reasoning', id: 'rs_not_seen_here', summary: [] }) } });
        assert.equal(unknown.status, 200, `${path}: ${unknown.text.slice(0, 300)}`);
        const own = await request(gateway.url, path, { key: 'vk_codex', body: { model: 'gpt-5', input: input({ type: 'reasoning', id: theirs, summary: [] }) } });
        assert.equal(own.status, 200, `${path}: ${own.text.slice(0, 300)}`);
      }
      const carried = await request(gateway.url, '/v1/responses', { key: 'vk_codex_other', body: { model: 'gpt-5', store: false, input: input({ type: 'reasoning', id: theirs, summary: [], encrypted_content: encrypted }) } });
      assert.equal(carried.status, 200, carried.text.slice(0, 300));
      assert.equal(JSON.parse(openai.requests.at(-1)?.raw ?? '{}').input[1].encrypted_content, encrypted, 'sent as it came');
    }
  });

  it('lets a key name its items on any worker (GATEWAY_WORKERS=2): the worker that saw them stored tells the others', async () => {
    const workers = await startGateway({ keys: keysFor(openai.baseUrl), env: { LOG_CONSOLE: 'off', UPSTREAM_RETRIES: '0', STATE_FILE: 'off', GATEWAY_WORKERS: '2' } });
    try {
      // Each request on a new connection: the primary hands them to the workers in turn.
      for (let turn = 0; turn < 4; turn++) {
        // Streamed every other turn: remembered before the terminal event goes out.
        const stream = turn % 2 === 1;
        const stored = await request(workers.url, '/v1/responses', { key: 'vk_codex', body: { model: 'gpt-5', input: `turn ${turn}`, stream } });
        assert.equal(stored.status, 200, stored.text);
        const item = stream ? /"type":"response\.completed".*?"output":\[\{[^{]*?"id":"([^"]+)"/.exec(stored.text)?.[1] : stored.json.output[0].id;
        assert.ok(typeof item === 'string', 'an output item id');
        // The next turn at once, as the AI SDK's tool loop sends it, on another connection (another worker).
        const next = await request(workers.url, '/v1/responses', { key: 'vk_codex', body: { model: 'gpt-5', input: [{ role: 'user', content: `turn ${turn}` }, { type: 'item_reference', id: item }, { role: 'user', content: 'and?' }] } });
        assert.equal(next.status, 200, `turn ${turn}: ${next.text}`);
        const theirs = await request(workers.url, '/v1/responses', { key: 'vk_codex_other', body: { model: 'gpt-5', input: [{ type: 'item_reference', id: item }] } });
        assert.equal(theirs.status, 400, `turn ${turn}: another key's, on either worker`);
      }
    } finally {
      await workers.stop();
    }
  });

  it("lets a key name by item_reference the output items of its own stored responses (the Vercel AI SDK's history), never another key's", async () => {
    const first = await responses('vk_codex', { model: 'gpt-5', input: 'hello' });
    assert.equal(first.status, 200, first.text);
    const streamed = await responses('vk_codex', { model: 'gpt-5', input: 'again', stream: true });
    assert.equal(streamed.status, 200, streamed.text);
    const unstored = await responses('vk_codex', { model: 'gpt-5', input: 'not kept', store: false });
    const [said] = first.json.output.map((item: { id: string }) => item.id);
    const streamedId = /"type":"response\.completed".*?"output":\[\{[^{]*?"id":"([^"]+)"/.exec(streamed.text)?.[1];
    assert.ok(said !== undefined && streamedId !== undefined, 'output items with ids');
    // As @ai-sdk/openai sends a conversation's history while it stores: each earlier assistant turn by reference.
    const history = { model: 'gpt-5', input: [{ role: 'user', content: 'hello' }, { type: 'item_reference', id: said }, { role: 'user', content: 'again' }, { type: 'item_reference', id: streamedId }, { role: 'user', content: 'and?' }] };
    openai.requests.length = 0;
    const mine = await responses('vk_codex', history);
    assert.equal(mine.status, 200, mine.text);
    assert.deepEqual(JSON.parse(openai.requests[0]?.raw ?? '{}').input[1], { type: 'item_reference', id: said }, 'sent as it came');
    openai.requests.length = 0;
    const theirs = await responses('vk_codex_other', history);
    assert.equal(theirs.status, 400, theirs.text);
    assert.equal(theirs.json.error.param, 'input[1]');
    assert.equal(openai.requests.length, 0, "another key's reference never reaches the provider");
    for (const path of ['/v1/responses/input_tokens', '/v1/responses/compact']) {
      assert.equal((await responses('vk_codex_other', history, { path })).status, 400, path);
      assert.equal(openai.requests.length, 0, path);
      assert.equal((await responses('vk_codex', history, { path })).status, 200, path);
      openai.requests.length = 0;
    }
    // A response not stored has no items to name.
    const notKept = unstored.json.output[0].id;
    const refused = await responses('vk_codex', { model: 'gpt-5', input: [{ type: 'item_reference', id: notKept }] });
    assert.equal(refused.status, 400, refused.text);
  });

  it('knows a response created outside the gateway as no key\'s', async () => {
    openai.stored.set('resp_outside', { response: { id: 'resp_outside', object: 'response', status: 'completed', output: [], metadata: {} }, input: [] });
    const reply = await request(gateway.url, '/v1/responses/resp_outside', { method: 'GET', key: 'vk_codex' });
    assert.equal(reply.status, 404);
    const odd = await request(gateway.url, '/v1/responses/..%2Fmodels', { method: 'GET', key: 'vk_codex' });
    assert.equal(odd.status, 404);
  });

  it('holds after a restart (the owner is read from the response at the provider), then lets the owner delete it', async () => {
    await gateway.stop();
    gateway = await startGateway({ keys: keysFor(openai.baseUrl), env: { LOG_CONSOLE: 'off', UPSTREAM_RETRIES: '0', STATE_FILE: 'off', UPSTREAM_IDLE_TIMEOUT_MS: '1500' } });
    const theirs = await request(gateway.url, `/v1/responses/${id}`, { method: 'DELETE', key: 'vk_codex_other' });
    assert.equal(theirs.status, 404);
    assert.ok(openai.stored.has(id));
    const cancel = await request(gateway.url, `/v1/responses/${id}/cancel`, { method: 'POST', key: 'vk_codex', body: {} });
    assert.equal(cancel.status, 400, "the provider's own answer: only background responses can be cancelled");
    const deleted = await request(gateway.url, `/v1/responses/${id}`, { method: 'DELETE', key: 'vk_codex' });
    assert.equal(deleted.status, 200, deleted.text);
    assert.deepEqual(deleted.json, { id, object: 'response', deleted: true });
    assert.equal(openai.stored.has(id), false);
    const gone = await request(gateway.url, `/v1/responses/${id}`, { method: 'GET', key: 'vk_codex' });
    assert.equal(gone.status, 404);
  });

  it('says a key reached through translation stores nothing, and refuses what is not an id route', async () => {
    const reply = await request(gateway.url, '/v1/responses/resp_x', { method: 'GET', key: 'vk_ds' });
    assert.equal(reply.status, 404);
    assert.equal(reply.json.error.code, 'responses_not_stored');
    const put = await request(gateway.url, '/v1/responses/resp_x', { method: 'PUT', key: 'vk_codex' });
    assert.equal(put.status, 405);
    assert.equal(put.headers.allow, 'GET, DELETE');
    const stream = await request(gateway.url, '/v1/responses/resp_x?stream=true', { method: 'GET', key: 'vk_codex' });
    assert.equal(stream.status, 400);
  });

  it('counts input tokens at the provider, or estimates them for a translated key', async () => {
    const passed = await request(gateway.url, '/v1/responses/input_tokens', { key: 'vk_codex', body: { model: 'gpt-5', input: 'count these words please' } });
    assert.equal(passed.status, 200, passed.text);
    assert.equal(passed.json.object, 'response.input_tokens');
    assert.equal(openai.requests.at(-1)?.path, '/v1/responses/input_tokens');
    const estimated = await request(gateway.url, '/responses/input_tokens', { key: 'vk_ds', body: { model: 'gpt-5', input: 'count these words please' } });
    assert.equal(estimated.status, 200);
    // About four characters a token of what the model reads (instructions, input and tools, as JSON).
    assert.equal(estimated.json.input_tokens, Math.ceil('["","count these words please",[]]'.length / 4));
  });

  it("passes compaction through to OpenAI, and says a translated key's provider has none", async () => {
    const compacted = await request(gateway.url, '/v1/responses/compact', { key: 'vk_codex_mapped', body: { model: 'gpt-5-codex', input: [{ role: 'user', content: 'long story' }] } });
    assert.equal(compacted.status, 200, compacted.text);
    assert.equal(compacted.json.object, 'response.compaction');
    assert.deepEqual([openai.requests.at(-1)?.path, openai.requests.at(-1)?.json.model], ['/v1/responses/compact', 'gpt-4o-mini']);
    const translated = await request(gateway.url, '/v1/responses/compact', { key: 'vk_ds', body: { model: 'gpt-5', input: 'x' } });
    assert.equal(translated.status, 404);
    assert.equal(translated.json.error.code, 'responses_not_stored');
  });

  it('answers a provider answer cut short (content-length shorter than its JSON) with 502 upstream_invalid_response: a compaction, and a read (not a 404)', async () => {
    openai.behave(({ res, recorded }): boolean | void => {
      if (recorded.path !== '/v1/responses/compact' && recorded.path !== '/v1/responses/resp_cut') return false;
      const whole = JSON.stringify({ id: 'resp_cut', object: 'response', status: 'completed', output: [], usage: { input_tokens: 10, output_tokens: 2, total_tokens: 12 } });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': whole.length - 20 });
      res.end(whole.slice(0, -20));
    });
    try {
      const compacted = await request(gateway.url, '/v1/responses/compact', { key: 'vk_codex', body: { model: 'gpt-5', input: 'long story' } });
      assert.equal(compacted.status, 502, compacted.text);
      assert.equal(compacted.json.error.code, 'upstream_invalid_response');
      const entry = await waitForEntry(gateway.logFile, String(compacted.headers['x-request-id']));
      assert.equal(entry.status, 502);
      const read = await request(gateway.url, '/v1/responses/resp_cut', { method: 'GET', key: 'vk_codex' });
      assert.equal(read.status, 502, `the provider failed, the response is not missing: ${read.text}`);
      assert.equal(read.json.error.code, 'upstream_invalid_response');
    } finally {
      openai.behave(null);
    }
  });
});

describe('stateless translation to a Chat Completions provider', () => {
  it('answers a response for a text request to DeepSeek, with instructions as the system message', async () => {
    deepseek.requests.length = 0;
    const reply = await responses('vk_ds', { model: 'gpt-4.1', instructions: 'Be terse.', input: 'hello deepseek', max_output_tokens: 500, store: true });
    assert.equal(reply.status, 200, reply.text);
    assert.equal(reply.json.object, 'response');
    assert.match(reply.json.id, /^resp_/);
    assert.equal(reply.json.status, 'completed');
    assert.equal(reply.json.output_text, 'deepseek says: hello deepseek');
    assert.deepEqual(reply.json.usage, { input_tokens: 11, input_tokens_details: { cached_tokens: 0 }, output_tokens: 7, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 18 });
    assert.deepEqual(deepseek.requests[0]?.json, { model: 'deepseek-chat', messages: [{ role: 'system', content: 'Be terse.' }, { role: 'user', content: 'hello deepseek' }], max_tokens: 500 });
    const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
    assert.deepEqual([entry.provider, entry.model, entry.upstream.model, entry.upstream.url], ['deepseek', 'gpt-4.1', 'deepseek-chat', `${deepseek.baseUrl}/chat/completions`]);
    assert.deepEqual(entry.response, reply.json);
  });

  it("streams Codex's first turn from DeepSeek's reasoner: reasoning summary, text, completed with usage; web_search left out and logged", async () => {
    const reply = await request(gateway.url, '/v1/responses', { key: 'vk_ds', body: codexFirstTurn('gpt-5-codex', 'What does this repo do?'), headers: CODEX_HEADERS });
    assert.equal(reply.status, 200, reply.text);
    const list = events(reply.text);
    const response = assertCodexStream(list);
    assert.deepEqual(response.output.map((item: any) => item.type), ['reasoning', 'message']);
    assert.equal(response.output[0].summary[0].text, 'Thinking about it.');
    assert.ok(list.some((event) => event.type === 'response.reasoning_summary_text.delta' && event.summary_index === 0));
    assert.equal(response.output[1].content[0].text, 'deepseek says: What does this repo do?');
    assert.deepEqual(response.usage, { input_tokens: 11, input_tokens_details: { cached_tokens: 0 }, output_tokens: 7, output_tokens_details: { reasoning_tokens: 3 }, total_tokens: 18 });
    const sent = deepseek.requests.at(-1)?.json;
    assert.equal(sent.model, 'deepseek-reasoner');
    assert.equal(sent.tools.length, 12);
    assert.ok(sent.tools.some((tool: any) => tool.function.name === 'multi_agent_v1__spawn_agent'));
    const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
    assert.deepEqual(entry.upstream.dropped_tools, ['web_search']);
    assert.equal(entry.response.id, response.id);
  });

  it('streams a function call and completes a two-turn tool round trip, reasoning handed back (DeepSeek requires it)', async () => {
    const first = { model: 'gpt-5', input: [{ role: 'user', content: [{ type: 'input_text', text: 'weather in Paris?' }] }], tools: [weatherTool], stream: true, store: false };
    const reply = await responses('vk_ds', first);
    assert.equal(reply.status, 200, reply.text);
    const list = events(reply.text);
    const response = assertCodexStream(list);
    const call = response.output.find((item: any) => item.type === 'function_call');
    assert.deepEqual([call.name, call.arguments, call.call_id], ['get_weather', '{"city": "Paris", "unit": "celsius"}', 'call_00_ds1']);
    const deltas = list.filter((event) => event.type === 'response.function_call_arguments.delta').map((event) => event.delta).join('');
    assert.equal(deltas, call.arguments);
    // The next turn, as Codex sends it: the earlier output items, then the tool's output.
    const second = { ...first, input: [...first.input, ...response.output, { type: 'function_call_output', call_id: call.call_id, output: '{"temp_c":21}' }] };
    const answer = await responses('vk_ds', second);
    assert.equal(answer.status, 200, answer.text);
    const done = assertCodexStream(events(answer.text));
    assert.equal(done.output.at(-1).content[0].text, 'deepseek says: the tool answered {"temp_c":21}');
    const sent = deepseek.requests.at(-1)?.json;
    assert.equal(sent.messages[1].reasoning_content, 'Thinking about it.');
  });

  it('keeps a turn whose calls have text or reasoning between them one assistant message, as OpenAI and DeepSeek require', async () => {
    // What a chat model that writes, calls, writes again and calls again comes back as, and Codex resends.
    const call = (id: string, city: string): unknown => ({ type: 'function_call', call_id: id, name: 'get_weather', arguments: JSON.stringify({ city }) });
    const said = (text: string): unknown => ({ type: 'message', role: 'assistant', content: [{ type: 'output_text', text }] });
    const thought = (text: string): unknown => ({ type: 'reasoning', summary: [{ type: 'summary_text', text }] });
    const input = [
      { role: 'user', content: 'weather in Paris and Rome?' },
      thought('Paris first.'),
      call('call_p', 'Paris'),
      said('And Rome:'),
      thought('Then Rome.'),
      call('call_r', 'Rome'),
      { type: 'function_call_output', call_id: 'call_p', output: '{"temp_c":21}' },
      { type: 'function_call_output', call_id: 'call_r', output: '{"temp_c":25}' },
    ];
    for (const key of ['vk_ds', 'vk_compat']) {
      const reply = await responses(key, { model: 'gpt-5', input, tools: [weatherTool], store: false });
      assert.equal(reply.status, 200, `${key}: ${reply.text}`);
    }
    const sent = deepseek.requests.at(-1)?.json;
    assert.deepEqual(sent.messages.map((message: any) => message.role), ['user', 'assistant', 'tool', 'tool']);
    assert.deepEqual([sent.messages[1].content, sent.messages[1].tool_calls.map((c: any) => c.id), sent.messages[1].reasoning_content], ['And Rome:', ['call_p', 'call_r'], 'Paris first.\n\nThen Rome.']);
  });

  it('maps a namespaced function back to its namespace, and takes it back in the next turn', async () => {
    const tools = [{ type: 'namespace', name: 'geo', description: 'Places', tools: [{ type: 'function', name: 'get_weather', parameters: weatherTool.parameters }] }];
    const first = { model: 'gpt-4o-mini', input: 'weather in Paris?', tools };
    const reply = await responses('vk_compat', first);
    assert.equal(reply.status, 200, reply.text);
    const call = reply.json.output[0];
    assert.deepEqual([call.type, call.name, call.namespace], ['function_call', 'get_weather', 'geo']);
    assert.equal(openai.requests.at(-1)?.json.tools[0].function.name, 'geo__get_weather');
    const next = await responses('vk_compat', { ...first, input: [{ role: 'user', content: 'weather in Paris?' }, call, { type: 'function_call_output', call_id: call.call_id, output: 'sunny' }] });
    assert.equal(next.status, 200, next.text);
    assert.equal(next.json.output_text, 'openai says: the tool answered sunny');
    assert.equal(openai.requests.at(-1)?.path, '/v1/chat/completions', 'an OpenAI-compatible base_url speaks chat unless the key says more');
  });

  it('answers a custom tool as custom_tool_call, streamed with its input, and takes its output back', async () => {
    const tools = [{ type: 'custom', name: 'apply_patch', description: 'Edit files', format: { type: 'grammar', syntax: 'lark', definition: 'start: /.+/' } }];
    const reply = await responses('vk_compat', { model: 'gpt-4o-mini', input: 'weather in Paris?', tools, stream: true });
    const list = events(reply.text);
    const response = assertCodexStream(list);
    const call = response.output[0];
    assert.deepEqual([call.type, call.name, call.input], ['custom_tool_call', 'apply_patch', '{"city": "Paris", "unit": "celsius"}']);
    assert.equal(list.find((event) => event.type === 'response.custom_tool_call_input.done')?.input, call.input);
    const next = await responses('vk_compat', { model: 'gpt-4o-mini', input: [{ role: 'user', content: 'weather in Paris?' }, call, { type: 'custom_tool_call_output', call_id: call.call_id, output: 'patched' }], tools });
    assert.equal(next.status, 200, next.text);
    assert.equal(next.json.output_text, 'openai says: the tool answered patched');
  });

  it('parallel calls a chat server interleaves come out as whole items, one after the other, their arguments exact', async () => {
    const chunk = (toolCalls: unknown[], finish: string | null = null): string =>
      `data: ${JSON.stringify({ id: 'chatcmpl-il', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta: { tool_calls: toolCalls }, finish_reason: finish }] })}\n\n`;
    const named = (index: number, id: string, name: string): unknown => ({ index, id, type: 'function', function: { name, arguments: '' } });
    const args = (index: number, text: string): unknown => ({ index, function: { arguments: text } });
    openai.behave(async ({ res }) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      // Both calls start, then their arguments alternate (some OpenAI-compatible servers do this).
      const stream = [chunk([named(0, 'call_Il0', 'get_weather'), named(1, 'call_Il1', 'apply_patch')]), chunk([args(0, '{"city": "Pa')]), chunk([args(1, '{"input": "*** Begin')]), chunk([args(0, 'ris"}')]), chunk([args(1, ' Patch\\n"}')]), chunk([], 'tool_calls')];
      await drip(res, `${stream.join('')}data: [DONE]\n\n`);
    });
    try {
      const patch = { type: 'custom', name: 'apply_patch', description: 'Edit files', format: { type: 'grammar', syntax: 'lark', definition: 'start: /.+/' } };
      const reply = await responses('vk_compat', { model: 'gpt-4o-mini', input: 'Weather in Paris, and patch it', tools: [weatherTool, patch], stream: true });
      assert.equal(reply.status, 200, reply.text);
      const list = events(reply.text);
      const response = assertCodexStream(list);
      const itemEvents = list.filter((event) => event.output_index !== undefined).map((event) => `${event.type.slice(9)} ${event.output_index}`);
      assert.deepEqual(itemEvents, [
        'output_item.added 0',
        'function_call_arguments.delta 0',
        'function_call_arguments.delta 0',
        'function_call_arguments.done 0',
        'output_item.done 0',
        'output_item.added 1',
        'custom_tool_call_input.delta 1',
        'custom_tool_call_input.done 1',
        'output_item.done 1',
      ]);
      // Item ids are made from the gateway's request id (a provider's completion id may repeat).
      const base = String(reply.headers['x-request-id']).replaceAll('-', '');
      assert.equal(response.id, `resp_${base}`);
      const expected = [
        { type: 'function_call', id: `fc_${base}_0`, status: 'completed', arguments: '{"city": "Paris"}', call_id: 'call_Il0', name: 'get_weather' },
        { type: 'custom_tool_call', id: `ctc_${base}_1`, status: 'completed', call_id: 'call_Il1', name: 'apply_patch', input: '*** Begin Patch\n' },
      ];
      assert.deepEqual(list.filter((event) => event.type === 'response.output_item.done').map((event) => event.item), expected);
      assert.equal(list.find((event) => event.type === 'response.function_call_arguments.done')?.arguments, '{"city": "Paris"}');
      assert.deepEqual(response.output, expected);
      const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
      assert.deepEqual(entry.response.output, expected);
    } finally {
      openai.behave(null);
    }
  });

  it('refuses previous_response_id: the provider is stateless through the gateway', async () => {
    const reply = await responses('vk_ds', { model: 'gpt-5', input: 'more', previous_response_id: 'resp_1' });
    assert.equal(reply.status, 400);
    assert.equal(reply.json.error.code, 'unsupported_parameter');
    assert.equal(reply.json.error.param, 'previous_response_id');
    assert.match(reply.json.error.message, /stateless through this gateway/);
  });

  it("ends a provider's mid-stream failure with response.failed in Codex's terms", async () => {
    deepseek.behave(({ res }) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(`data: ${JSON.stringify({ id: 'x', object: 'chat.completion.chunk', created: 1, model: 'deepseek-chat', choices: [{ index: 0, delta: { content: 'Hel' }, finish_reason: null }] })}\n\n`);
      res.end(`data: ${JSON.stringify({ error: { message: 'Rate limit reached', type: 'rate_limit_error', code: 'rate_limit_exceeded' } })}\n\n`);
    });
    try {
      const reply = await responses('vk_ds', { model: 'gpt-4.1', input: 'hi', stream: true });
      const list = events(reply.text);
      const failed = list.at(-1);
      assert.equal(failed.type, 'response.failed');
      assert.equal(failed.sequence_number, list.length - 1);
      assert.equal(failed.response.error.code, 'rate_limit_exceeded');
      assert.match(failed.response.error.message, /try again in \d+s/);
      const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
      assert.equal(entry.status, 429, 'logged as the rate limit it is');
    } finally {
      deepseek.behave(null);
    }
  });

  it("answers a chat provider's 422 (DeepSeek's invalid parameters) as the 400 it is in the Responses API, which Codex does not retry; the log keeps the 422", async () => {
    deepseek.behave(({ res }) => {
      res.writeHead(422, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: 'Failed to deserialize the JSON body into the target type: messages[0]: unknown variant `image_url`', type: 'invalid_request_error', param: null, code: 'invalid_request_error' } }));
    });
    try {
      for (const stream of [false, true]) {
        const reply = await responses('vk_ds', { model: 'gpt-4.1', input: 'hi', stream });
        assert.equal(reply.status, 400, reply.text);
        assert.match(reply.json.error.message, /unknown variant `image_url`/);
        const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
        assert.deepEqual([entry.status, entry.upstream.status], [400, 422]);
      }
    } finally {
      deepseek.behave(null);
    }
  });

  it('works with the demo mock provider, which speaks chat', async () => {
    const reply = await responses('vk_mock', { model: 'anything', input: 'ping' });
    assert.equal(reply.status, 200);
    assert.equal(reply.json.output_text, 'Echo: ping');
  });
});

describe('stateless translation to Anthropic, through the hub', () => {
  it('answers text and streams a tool round trip', async () => {
    const reply = await responses('vk_claude_test', { model: 'gpt-5-codex', instructions: 'Be terse.', input: 'Hello Claude' });
    assert.equal(reply.status, 200, reply.text);
    assert.equal(reply.json.object, 'response');
    assert.ok(reply.json.output_text.length > 0);
    const sent = anthropic.requests.at(-1);
    assert.equal(sent?.headers['x-api-key'], ANTHROPIC_KEY);
    assert.equal(sent?.json.model, 'claude-sonnet-4-5');
    assert.deepEqual(sent?.json.system, [{ type: 'text', text: 'Be terse.' }]);

    const first = { model: 'gpt-5-codex', input: [{ role: 'user', content: 'What is the weather in Paris?' }], tools: [weatherTool, { type: 'web_search' }], stream: true };
    const streamed = await responses('vk_claude_test', first);
    assert.equal(streamed.status, 200, streamed.text);
    const response = assertCodexStream(events(streamed.text));
    const call = response.output.find((item: any) => item.type === 'function_call');
    assert.equal(call?.name, 'get_weather');
    const next = await responses('vk_claude_test', { ...first, input: [...first.input, ...response.output, { type: 'function_call_output', call_id: call.call_id, output: '21C' }] });
    assert.equal(next.status, 200, next.text);
    assertCodexStream(events(next.text));
    const toolTurn = anthropic.requests.at(-1)?.json.messages;
    const use = toolTurn.at(-2).content.find((block: any) => block.type === 'tool_use');
    assert.equal(toolTurn.at(-1).content[0].type, 'tool_result');
    assert.equal(toolTurn.at(-1).content[0].tool_use_id, use.id, 'the call and its result still pair');
  });
});

describe('stateless translation to Anthropic: tools, effort, structured output, refusals and failures', () => {
  const place = { type: 'object', properties: { city: { type: 'string' }, sunny: { type: 'boolean' } }, required: ['city', 'sunny'], additionalProperties: false };
  const messageStart = 'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_f","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":30,"output_tokens":1}}}\n\n';

  it('maps a namespaced function back to its namespace, and takes it back in the next turn', async () => {
    const tools = [{ type: 'namespace', name: 'geo', description: 'Places', tools: [{ type: 'function', name: 'get_weather', parameters: weatherTool.parameters }] }];
    const first = { model: 'gpt-5-codex', input: 'weather in Paris?', tools, store: false };
    const reply = await responses('vk_claude_test', first);
    assert.equal(reply.status, 200, reply.text);
    const call = reply.json.output.find((item: any) => item.type === 'function_call');
    assert.deepEqual([call.name, call.namespace, JSON.parse(call.arguments)], ['get_weather', 'geo', { city: 'Paris' }]);
    assert.equal(anthropic.requests.at(-1)?.json.tools[0].name, 'geo__get_weather');
    const next = await responses('vk_claude_test', { ...first, input: [{ role: 'user', content: 'weather in Paris?' }, call, { type: 'function_call_output', call_id: call.call_id, output: 'sunny' }] });
    assert.equal(next.status, 200, next.text);
    const turns = anthropic.requests.at(-1)?.json.messages;
    assert.deepEqual(turns.at(-2).content.find((block: any) => block.type === 'tool_use')?.name, 'geo__get_weather');
    assert.deepEqual(turns.at(-1).content[0], { type: 'tool_result', tool_use_id: turns.at(-2).content.find((block: any) => block.type === 'tool_use').id, content: 'sunny' });
  });

  it("carries Codex's client-run tool_search (its MCP tools): the search's call back as a tool_search_call, the tools it loaded callable next turn", async () => {
    const search = { type: 'tool_search', execution: 'client', description: '# Tool discovery', parameters: { type: 'object', properties: { query: { type: 'string' } }, required: ['query'], additionalProperties: false } };
    const first = { model: 'gpt-5-codex', input: [{ role: 'user', content: 'weather in Paris?' }], tools: [search], stream: true, store: false };
    const reply = await responses('vk_claude_test', first);
    assert.equal(reply.status, 200, reply.text);
    assert.deepEqual(anthropic.requests.at(-1)?.json.tools.map((tool: any) => tool.name), ['tool_search']);
    const called = assertCodexStream(events(reply.text)).output.find((item: any) => item.type === 'tool_search_call');
    assert.deepEqual([called.execution, called.status, typeof called.arguments, typeof called.call_id], ['client', 'completed', 'object', 'string']);
    // Codex ran the search and loaded its MCP server's tools.
    const geo = { type: 'namespace', name: 'mcp__geo', description: 'Places', tools: [{ type: 'function', name: 'get_weather', description: 'Weather now', defer_loading: true, parameters: weatherTool.parameters }] };
    const loaded = { type: 'tool_search_output', call_id: called.call_id, status: 'completed', execution: 'client', tools: [geo] };
    const next = await responses('vk_claude_test', { ...first, stream: false, tools: [], input: [...first.input, called, loaded, { role: 'user', content: 'weather in Paris?' }] });
    assert.equal(next.status, 200, next.text);
    const sent = anthropic.requests.at(-1)?.json;
    assert.deepEqual(sent.tools.map((tool: any) => tool.name), ['mcp__geo__get_weather']);
    const use = sent.messages[1].content.find((block: any) => block.type === 'tool_use');
    assert.deepEqual([use.name, use.input], ['tool_search', called.arguments]);
    assert.deepEqual(sent.messages[2].content[0], { type: 'tool_result', tool_use_id: use.id, content: 'Tools found, which can be called now:\n- mcp__geo__get_weather: Weather now' });
    const call = next.json.output.find((item: any) => item.type === 'function_call');
    assert.deepEqual([call.namespace, call.name], ['mcp__geo', 'get_weather'], 'a loaded tool is called under its namespace');
  });

  it('answers a custom tool as custom_tool_call, streamed with its input, and takes its output back', async () => {
    const tools = [{ type: 'custom', name: 'apply_patch', description: 'Edit files', format: { type: 'grammar', syntax: 'lark', definition: 'start: /.+/' } }];
    const reply = await responses('vk_claude_test', { model: 'gpt-5-codex', input: 'weather in Paris?', tools, stream: true });
    assert.equal(reply.status, 200, reply.text);
    const list = events(reply.text);
    const call = assertCodexStream(list).output.find((item: any) => item.type === 'custom_tool_call');
    assert.deepEqual([call.name, call.input], ['apply_patch', '{"city": "Paris", "unit": "celsius"}']);
    assert.equal(list.find((event) => event.type === 'response.custom_tool_call_input.done')?.input, call.input);
    const next = await responses('vk_claude_test', { model: 'gpt-5-codex', input: [{ role: 'user', content: 'weather in Paris?' }, call, { type: 'custom_tool_call_output', call_id: call.call_id, output: 'patched' }], tools });
    assert.equal(next.status, 200, next.text);
    const use = anthropic.requests.at(-1)?.json.messages.at(-2).content.find((block: any) => block.type === 'tool_use');
    assert.deepEqual([use.name, use.input], ['apply_patch', { input: call.input }]);
  });

  it('refuses previous_response_id: the provider is stateless through the gateway', async () => {
    anthropic.requests.length = 0;
    const reply = await responses('vk_claude_test', { model: 'gpt-5-codex', input: 'more', previous_response_id: 'resp_1' });
    assert.equal(reply.status, 400);
    assert.deepEqual([reply.json.error.code, reply.json.error.param], ['unsupported_parameter', 'previous_response_id']);
    assert.match(reply.json.error.message, /stateless through this gateway/);
    assert.equal(anthropic.requests.length, 0);
  });

  it('gives reasoning.effort as thinking (a budget on Claude 4.5, adaptive on 4.6) and text.format json_schema as structured output', async () => {
    const reply = await responses('vk_claude_test', { model: 'gpt-5-codex', input: 'Where is it sunny?', reasoning: { effort: 'medium', summary: 'auto' }, text: { format: { type: 'json_schema', name: 'place', schema: place, strict: true } } });
    assert.equal(reply.status, 200, reply.text);
    assert.deepEqual(reply.json.output.map((item: any) => item.type), ['reasoning', 'message']);
    assert.deepEqual(JSON.parse(reply.json.output_text), { city: 'claude says: Where is it sunny?', sunny: true });
    const sent = anthropic.requests.at(-1)?.json;
    assert.deepEqual([sent.thinking, sent.max_tokens, sent.output_config], [{ type: 'enabled', budget_tokens: 2048 }, 4096 + 2048, { format: { type: 'json_schema', schema: place } }]);
    // A schema as zod writes it (openai's zodTextFormat): the keywords Anthropic refuses go into descriptions.
    const zodPlace = { $schema: 'http://json-schema.org/draft-07/schema#', type: 'object', properties: { city: { type: 'string', minLength: 1 }, visits: { type: 'integer', minimum: -9007199254740991, maximum: 9007199254740991 } }, required: ['city', 'visits'], additionalProperties: false };
    const zod = await responses('vk_claude_test', { model: 'gpt-5-codex', input: 'Where?', text: { format: { type: 'json_schema', name: 'place', schema: zodPlace, strict: true } } });
    assert.equal(zod.status, 200, zod.text);
    assert.deepEqual(anthropic.requests.at(-1)?.json.output_config.format.schema, {
      type: 'object',
      properties: { city: { type: 'string', description: '{minLength: 1}' }, visits: { type: 'integer', description: '{minimum: -9007199254740991, maximum: 9007199254740991}' } },
      required: ['city', 'visits'],
      additionalProperties: false,
    });
    // Codex sets no output limit: on a key with max_output_tokens, that is the limit Claude gets (not 4,096), thinking within it.
    const codexTurn = await responses('vk_claude_capped', { model: 'gpt-5-codex', input: 'Write the patch.', reasoning: { effort: 'medium' }, store: false });
    assert.equal(codexTurn.status, 200, codexTurn.text);
    const capped = anthropic.requests.at(-1)?.json;
    assert.deepEqual([capped.max_tokens, capped.thinking], [32000, { type: 'enabled', budget_tokens: 2048 }]);
    const asked = await responses('vk_claude_capped', { model: 'gpt-5-codex', input: 'Short.', max_output_tokens: 1000, store: false });
    assert.equal(asked.status, 200, asked.text);
    assert.equal(anthropic.requests.at(-1)?.json.max_tokens, 1000, "a client's own limit stays");
    // While it runs, it holds what it may generate: the cap it was sent, not the 4,096 of a request without a limit.
    let release = (): void => {};
    anthropic.behave(() => new Promise<void>((resolve) => (release = resolve)).then(() => false));
    try {
      const pending = responses('vk_claude_capped', { model: 'gpt-5-codex', input: 'Write the patch.', store: false });
      await waitFor(async () => (await request(gateway.url, '/v1/usage', { method: 'GET', key: 'vk_claude_capped' })).json.in_flight.tokens > 0, 'held while it runs');
      const held = (await request(gateway.url, '/v1/usage', { method: 'GET', key: 'vk_claude_capped' })).json.in_flight.tokens;
      assert.ok(held >= 32000, `holds the cap it was sent: ${held}`);
      release();
      assert.equal((await pending).status, 200);
    } finally {
      release();
      anthropic.behave(null);
    }
    // A chat client's limit, however wrong, is its own: refused as before, never replaced by the cap;
    // its own thinking budget above the cap is lowered below it (it would let a request generate
    // 60,000 tokens while holding the cap's worth), with or without a limit of its own.
    const chatOn = (body: object) => request(gateway.url, '/v1/chat/completions', { key: 'vk_claude_capped', body: { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }], ...body } });
    for (const limit of [0, -5, 0.5]) assert.equal((await chatOn({ max_tokens: limit })).status, 400, `max_tokens ${limit}`);
    for (const limit of [{}, { max_tokens: 64096 }, { max_completion_tokens: 64096 }]) {
      const thinking = await chatOn({ thinking: { type: 'enabled', budget_tokens: 60000 }, ...limit });
      assert.equal(thinking.status, 200, thinking.text);
      const sent = anthropic.requests.at(-1)?.json;
      assert.deepEqual([sent.max_tokens, sent.thinking], [32000, { type: 'enabled', budget_tokens: 31999 }], JSON.stringify(limit));
    }
    // Responses has no max_tokens nor thinking: written there, neither is a limit.
    assert.equal((await responses('vk_claude_capped', { model: 'gpt-5-codex', input: 'hi', store: false, max_tokens: 5, thinking: { type: 'enabled', budget_tokens: 60000 } })).status, 200);
    assert.equal(anthropic.requests.at(-1)?.json.max_tokens, 32000);

    const adaptive = await responses('vk_claude_adaptive', { model: 'gpt-5-codex', input: 'hi', reasoning: { effort: 'high', summary: 'auto' }, stream: true, store: false, max_output_tokens: 20000 });
    assert.equal(adaptive.status, 200, adaptive.text);
    assert.equal(assertCodexStream(events(adaptive.text)).output[0].summary[0].text, 'Let me think.');
    const thought = anthropic.requests.at(-1)?.json;
    assert.deepEqual([thought.thinking, thought.output_config, thought.max_tokens], [{ type: 'adaptive', display: 'summarized' }, { effort: 'high' }, 20000]);

    // A tool loop: the call's turn thinks; its continuation cannot send Claude's thinking back, so it goes on without.
    const first = { model: 'gpt-5-codex', input: [{ role: 'user', content: 'weather in Paris?' }], tools: [weatherTool], reasoning: { effort: 'high' }, store: false };
    const called = await responses('vk_claude_adaptive', first);
    assert.equal(called.status, 200, called.text);
    const call = called.json.output.find((item: any) => item.type === 'function_call');
    const next = await responses('vk_claude_adaptive', { ...first, input: [...first.input, ...called.json.output, { type: 'function_call_output', call_id: call.call_id, output: '21C' }] });
    assert.equal(next.status, 200, next.text);
    assert.equal(anthropic.requests.at(-1)?.json.thinking, undefined);

    const jsonMode = await responses('vk_claude_test', { model: 'gpt-5-codex', input: 'x', text: { format: { type: 'json_object' } } });
    assert.equal(jsonMode.status, 400);
    assert.deepEqual([jsonMode.json.error.code, jsonMode.json.error.param], ['unsupported_parameter', 'text.format']);
    assert.match(jsonMode.json.error.message, /structured output only with a schema: send the format of type "json_schema", with its "name" and "schema"/);
    assert.doesNotMatch(jsonMode.json.error.message, /response_format|"json_schema": \{/, "nothing in Chat's shape");
    // A message refused on its way to Anthropic is named by the client's item, not the chat message it became.
    const fileRef = await responses('vk_claude_test', { model: 'gpt-5-codex', instructions: 'be brief', input: [{ role: 'user', content: [{ type: 'input_text', text: 'read' }, { type: 'input_file', file_id: 'file-1' }] }] });
    assert.equal(fileRef.status, 400);
    assert.equal(fileRef.json.error.param, 'input[0].content[1]');
    assert.doesNotMatch(fileRef.json.error.message, /messages/);
  });

  it('gives a chat client structured output and thinking from Claude too', async () => {
    const reply = await request(gateway.url, '/v1/chat/completions', {
      key: 'vk_claude_adaptive',
      body: { model: 'gpt-4o', messages: [{ role: 'user', content: 'Where?' }], reasoning_effort: 'low', response_format: { type: 'json_schema', json_schema: { name: 'place', schema: place, strict: true } } },
    });
    assert.equal(reply.status, 200, reply.text);
    assert.deepEqual(JSON.parse(reply.json.choices[0].message.content), { city: 'claude says: Where?', sunny: true });
    assert.equal(reply.json.choices[0].message.reasoning_content, 'Let me think.');
    const sent = anthropic.requests.at(-1)?.json;
    assert.deepEqual([sent.thinking, sent.output_config], [{ type: 'adaptive', display: 'summarized' }, { effort: 'low', format: { type: 'json_schema', schema: place } }]);
  });

  it("answers an error before the stream in OpenAI's shape with its status, and OpenAI's code (Responses and chat clients): a prompt too long is context_length_exceeded, a 429 rate_limit_exceeded", async () => {
    for (const [status, type, message, code] of [
      [429, 'rate_limit_error', 'Number of request tokens has exceeded your per-minute rate limit', 'rate_limit_exceeded'],
      [400, 'invalid_request_error', 'prompt is too long: 215000 tokens > 200000 maximum', 'context_length_exceeded'],
    ] as const) {
      anthropic.behave(({ res }) => {
        const text = JSON.stringify(anthropicError(type, message));
        res.writeHead(status, { 'content-type': 'application/json', 'retry-after': '7' });
        res.end(text);
      });
      try {
        const reply = await responses('vk_claude_test', { model: 'gpt-5-codex', input: 'hi', stream: true, store: false });
        assert.equal(reply.status, status);
        assert.match(String(reply.headers['content-type']), /^application\/json/);
        assert.deepEqual(reply.json, { error: { message, type, param: null, code } });
        // LangChain's ChatOpenAI raises its context overflow on this code; the OpenAI SDK's error carries it.
        for (const stream of [false, true]) {
          const chat = await request(gateway.url, '/v1/chat/completions', { key: 'vk_claude_test', body: { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }], stream } });
          assert.equal(chat.status, status);
          assert.deepEqual(chat.json, { error: { message, type, param: null, code } }, `chat, stream ${stream}`);
        }
      } finally {
        anthropic.behave(null);
      }
    }
  });

  it('ends a mid-stream failure with response.failed carrying the code Codex acts on', async () => {
    anthropic.behave(({ res }) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(messageStart);
      res.write('event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n');
      res.write('event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hal"}}\n\n');
      res.end('event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n');
    });
    try {
      const reply = await responses('vk_claude_test', { model: 'gpt-5-codex', input: 'hi', stream: true, store: false });
      const list = events(reply.text);
      list.forEach((event, index) => assert.equal(event.sequence_number, index));
      const failed = list.at(-1);
      assert.equal(failed.type, 'response.failed');
      assert.deepEqual(failed.response.error, { code: 'server_is_overloaded', message: 'Overloaded' });
      assert.ok(list.some((event) => event.type === 'response.output_text.delta' && event.delta === 'Hal'));
      const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
      assert.equal(entry.error.type, 'overloaded_error');
    } finally {
      anthropic.behave(null);
    }
  });
});

describe('the Responses route as a client sees it', () => {
  it("answers every refusal in OpenAI's shape: no key, unknown key, not allowed, bad body, wrong method", async () => {
    const none = await responses(null, { model: 'gpt-5', input: 'x' });
    assert.equal(none.status, 401);
    assert.equal(none.json.error.type, 'authentication_error');
    assert.equal((await responses('vk_nope', { model: 'gpt-5', input: 'x' })).status, 401);
    const blocked = await responses('vk_mini_only', { model: 'gpt-5', input: 'x' });
    assert.equal(blocked.status, 404);
    assert.equal(blocked.json.error.code, 'model_not_allowed');
    // compact and input_tokens may name no model (the provider picks one): not with an allowlist, which must see it.
    for (const path of ['/v1/responses/compact', '/v1/responses/input_tokens']) {
      for (const [body, status, code] of [
        [{ input: 'x' }, 400, 'missing_required_parameter'],
        [{ model: null, input: 'x' }, 400, 'missing_required_parameter'],
        [{ model: ['gpt-5'], input: 'x' }, 400, 'invalid_type'],
        [{ model: 'gpt-5', input: 'x' }, 404, 'model_not_allowed'],
      ] as const) {
        openai.requests.length = 0;
        const reply = await request(gateway.url, path, { key: 'vk_mini_only', body });
        assert.deepEqual([reply.status, reply.json.error?.code, reply.json.error?.param], [status, code, 'model'], `${path} ${JSON.stringify(body)}: ${reply.text}`);
        assert.equal(openai.requests.length, 0, `${path} ${JSON.stringify(body)}: nothing reached the provider`);
      }
      const open = await request(gateway.url, path, { key: 'vk_codex', body: { model: null, input: 'x' } });
      assert.equal(open.status, 200, `${path}: a key without an allowlist may leave the model to the provider: ${open.text}`);
      assert.equal((await request(gateway.url, path, { key: 'vk_codex', body: { model: 7, input: 'x' } })).status, 400, `${path}: a model that is not a string`);
    }
    const broken = await request(gateway.url, '/v1/responses', { key: 'vk_codex', body: '{"model":' });
    assert.equal(broken.status, 400);
    assert.equal(broken.json.error.code, 'invalid_json');
    const get = await request(gateway.url, '/v1/responses', { method: 'GET', key: 'vk_codex' });
    assert.equal(get.status, 405);
  });

  it('counts against the key\'s requests per minute, and answers a limit with 429', async () => {
    assert.equal((await responses('vk_rpm', { model: 'gpt-5', input: 'x', store: false })).status, 200);
    const limited = await responses('vk_rpm', { model: 'gpt-5', input: 'x', store: false });
    assert.equal(limited.status, 429);
    assert.equal(limited.json.error.code, 'rate_limit_exceeded');
  });

  it('is a gateway error when the provider cannot be reached', async () => {
    const port = await refusingPort();
    const text = JSON.stringify({ virtual_keys: { vk_down: { provider: 'openai', api_key: OPENAI_KEY, base_url: `http://127.0.0.1:${port}/v1`, api: ['chat', 'responses'] } } });
    const other = await startGateway({ keys: text, env: { LOG_CONSOLE: 'off', UPSTREAM_RETRIES: '0', STATE_FILE: 'off' } });
    try {
      const reply = await request(other.url, '/v1/responses', { key: 'vk_down', body: { model: 'gpt-5', input: 'x' } });
      assert.equal(reply.status, 502);
      assert.equal(reply.json.error.code, 'upstream_unreachable');
    } finally {
      await other.stop();
    }
  });

  it('stops the provider when the client leaves mid-stream, and logs 499', async () => {
    let aborted = false;
    openai.behave(({ res, recorded }): boolean | void => {
      if (recorded.path !== '/v1/responses') return false;
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('event: response.created\ndata: {"type":"response.created","sequence_number":0,"response":{"id":"resp_slow","status":"in_progress","output":[]}}\n\n');
      res.once('close', () => {
        aborted = true;
      });
    });
    try {
      const body = JSON.stringify({ model: 'gpt-5', input: 'x', stream: true, store: false });
      const id = await new Promise<string>((resolve, reject) => {
        const req = http.request(`${gateway.url}/v1/responses`, { method: 'POST', agent: false, headers: { authorization: 'Bearer vk_codex', 'content-type': 'application/json' } }, (res) => {
          res.once('data', () => {
            req.destroy();
            resolve(String(res.headers['x-request-id']));
          });
        });
        req.on('error', () => {});
        req.on('close', () => {});
        req.end(body);
        setTimeout(() => reject(new Error('no first event')), 3000);
      });
      await waitFor(() => aborted, 'the provider call to be aborted');
      const entry = await waitForEntry(gateway.logFile, id);
      assert.equal(entry.status, 499);
    } finally {
      openai.behave(null);
    }
  });

  it('ends a stream whose provider goes silent with response.failed (UPSTREAM_IDLE_TIMEOUT_MS)', async () => {
    openai.behave(({ res, recorded }): boolean | void => {
      if (recorded.path !== '/v1/responses') return false;
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('event: response.created\ndata: {"type":"response.created","sequence_number":0,"response":{"id":"resp_idle","status":"in_progress","output":[]}}\n\n');
    });
    try {
      const reply = await responses('vk_codex', { model: 'gpt-5', input: 'x', stream: true, store: false });
      const list = events(reply.text);
      assert.deepEqual(list.map((event) => [event.type, event.sequence_number]), [['response.created', 0], ['response.failed', 1]]);
      assert.equal(list[1].response.id, 'resp_idle');
    } finally {
      openai.behave(null);
    }
  });
});
