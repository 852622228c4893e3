/**
 * End to end through the real gateway process: routes, authentication, validation, forwarding
 * to mock OpenAI and DeepSeek upstreams, and every error the client can get.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startGateway, waitForEntry, type GatewayProcess } from './support/gateway.js';
import { chat, request, sseData } from './support/http.js';
import { refusingPort } from './support/ports.js';
import { openAIError, startOpenAIMock, type MockUpstream } from './support/mock-openai.js';

const OPENAI_KEY = 'sk-proj-e2eOPENAIrealkey000111';
const DEEPSEEK_KEY = 'sk-e2eDEEPSEEKrealkey222333';
const hello = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hello!' }] };

let openaiMock: MockUpstream;
let deepseekMock: MockUpstream;
let gateway: GatewayProcess;

before(async () => {
  openaiMock = await startOpenAIMock({ flavor: 'openai', apiKey: OPENAI_KEY });
  deepseekMock = await startOpenAIMock({ flavor: 'deepseek', apiKey: DEEPSEEK_KEY });
  gateway = await startGateway({
    keys: {
      virtual_keys: {
        vk_openai: { provider: 'openai', api_key: OPENAI_KEY, base_url: openaiMock.baseUrl },
        vk_deepseek: { provider: 'deepseek', api_key: DEEPSEEK_KEY, base_url: deepseekMock.baseUrl },
        vk_deepseek_v1: { provider: 'deepseek', api_key: DEEPSEEK_KEY, base_url: `${deepseekMock.origin}/v1` },
        vk_wrong_real_key: { provider: 'openai', api_key: 'sk-proj-WRONGrealkey999888', base_url: openaiMock.baseUrl },
        vk_down: { provider: 'openai', api_key: OPENAI_KEY, base_url: `http://127.0.0.1:${await refusingPort()}/v1` },
        vk_nodns: { provider: 'openai', api_key: OPENAI_KEY, base_url: 'http://no-such-host.invalid/v1' },
        vk_mock: { provider: 'mock' },
        vk_openai_capped: { provider: 'openai', api_key: OPENAI_KEY, base_url: openaiMock.baseUrl, max_output_tokens: 100 },
      },
    },
    env: { GATEWAY_MAX_BODY_BYTES: '4096', LOG_CONSOLE: 'off', UPSTREAM_RETRIES: '0' },
  });
});

after(async () => {
  await gateway?.stop();
  await openaiMock?.close();
  await deepseekMock?.close();
});

describe('chat routes', () => {
  for (const path of ['/chat/completions', '/v1/chat/completions']) {
    it(`POST ${path} forwards to OpenAI and returns its answer unchanged`, async () => {
      openaiMock.requests.length = 0;
      const reply = await chat(gateway.url, 'vk_openai', hello, path);
      assert.equal(reply.status, 200);
      assert.match(String(reply.headers['content-type']), /^application\/json/);
      assert.match(String(reply.headers['x-request-id']), /^[0-9a-f-]{36}$/);
      assert.equal(reply.json.object, 'chat.completion');
      assert.equal(reply.json.choices[0].message.content, 'openai says: Hello!');
      assert.equal(reply.json.usage.total_tokens, 18);
      assert.equal(openaiMock.requests.length, 1);
      assert.equal(openaiMock.requests[0]?.path, '/v1/chat/completions');
    });
  }

  it('sends the client body byte for byte, with the real key and no client header', async () => {
    openaiMock.requests.length = 0;
    const raw = '{"model":"gpt-4o-mini",   "messages":[{"role":"user","content":"caf\\u00e9 ☕"}],"temperature":0.2,"metadata":{"x":"1"}}';
    const reply = await request(gateway.url, '/v1/chat/completions', {
      key: 'vk_openai',
      body: raw,
      headers: { cookie: 'session=secret', 'x-custom-header': 'nope', 'openai-organization': 'org-client', 'user-agent': 'client/1.0' },
    });
    assert.equal(reply.status, 200);
    const seen = openaiMock.requests[0];
    assert.equal(seen?.raw, raw);
    assert.equal(seen?.headers.authorization, `Bearer ${OPENAI_KEY}`);
    assert.equal(seen?.headers['content-type'], 'application/json');
    for (const header of ['cookie', 'x-custom-header', 'openai-organization']) assert.equal(seen?.headers[header], undefined, header);
    assert.notEqual(seen?.headers['user-agent'], 'client/1.0');
  });

  it('serves an absolute-form request target (as a client sends one to a proxy), and never passes a fragment on', async () => {
    const raw = (target: string): Promise<string> =>
      new Promise((resolve, reject) => {
        const body = JSON.stringify(hello);
        const socket = net.connect(gateway.port, '127.0.0.1', () => {
          socket.write(`POST ${target} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer vk_openai\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`);
        });
        let text = '';
        socket.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
        socket.on('end', () => resolve(text));
        socket.on('error', reject);
      });
    openaiMock.requests.length = 0;
    const absolute = await raw(`http://127.0.0.1:${gateway.port}/v1/chat/completions?api-version=1`);
    assert.match(absolute, /^HTTP\/1\.1 200 /);
    assert.deepEqual([openaiMock.requests[0]?.path, openaiMock.requests[0]?.query], ['/v1/chat/completions', 'api-version=1']);
    const fragment = await raw('/v1/chat/completions?api-version=2#part');
    assert.match(fragment, /^HTTP\/1\.1 200 /);
    assert.deepEqual([openaiMock.requests[1]?.path, openaiMock.requests[1]?.query], ['/v1/chat/completions', 'api-version=2']);
  });

  it('accepts a body sent without a JSON content type (curl -d)', async () => {
    const reply = await request(gateway.url, '/chat/completions', { key: 'vk_openai', body: JSON.stringify(hello), headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    assert.equal(reply.status, 200);
  });

  it('answers from the built-in mock provider without any network', async () => {
    const reply = await chat(gateway.url, 'vk_mock', { model: 'demo', messages: [{ role: 'user', content: 'ping' }] });
    assert.equal(reply.status, 200);
    assert.equal(reply.json.choices[0].message.content, 'Echo: ping');
    assert.equal(reply.json.model, 'demo');
    assert.ok(reply.json.usage.total_tokens > 0);
  });

  it('the mock answers n choices and certain logprobs when asked, streamed or not, and refuses what OpenAI refuses', async () => {
    const ask = { model: 'demo', messages: [{ role: 'user', content: 'two words' }], n: 2, logprobs: true, top_logprobs: 1 };
    const reply = await chat(gateway.url, 'vk_mock', ask);
    assert.equal(reply.status, 200, reply.text);
    assert.deepEqual(reply.json.choices.map((choice: any) => [choice.index, choice.message.content]), [[0, 'Echo: two words'], [1, 'Echo: two words']]);
    assert.deepEqual(reply.json.choices[1].logprobs.content.map((token: any) => [token.token, token.logprob, token.top_logprobs.length]), [['Echo: ', 0, 1], ['two ', 0, 1], ['words', 0, 1]]);
    const one = await chat(gateway.url, 'vk_mock', { model: 'demo', messages: ask.messages });
    assert.equal(reply.json.usage.completion_tokens, 2 * one.json.usage.completion_tokens, 'every choice billed');
    assert.equal(one.json.choices[0].logprobs, null);
    const streamed = await chat(gateway.url, 'vk_mock', { ...ask, stream: true });
    const chunks = sseData(streamed.text).slice(0, -1).map((text) => JSON.parse(text));
    for (const index of [0, 1]) {
      const mine = chunks.filter((chunk) => chunk.choices[0]?.index === index);
      assert.equal(mine.map((chunk) => chunk.choices[0].delta.content ?? '').join(''), 'Echo: two words');
      assert.equal(mine.flatMap((chunk) => chunk.choices[0].logprobs?.content ?? []).length, 3);
    }
    // The echo is cut for all the choices together: 128 copies of a 3,000-character message, each
    // word with its logprobs, would make a 4 KB request of the demo key megabytes of answer and log.
    const many = await chat(gateway.url, 'vk_mock', { model: 'demo', messages: [{ role: 'user', content: 'word '.repeat(600) }], n: 128, logprobs: true, top_logprobs: 20 });
    assert.equal(many.status, 200);
    assert.equal(many.json.choices.length, 128);
    assert.equal(many.json.choices[127].message.content, `Echo: ${'word '.repeat(6)}wo…`);
    assert.ok(many.text.length < 200_000, `${many.text.length} bytes`);
    const none = await chat(gateway.url, 'vk_mock', { model: 'demo', messages: ask.messages, n: null, logprobs: false, top_logprobs: 0 });
    assert.equal(none.status, 200, 'what asks for nothing is taken');
    for (const [bad, param] of [[{ n: 0 }, 'n'], [{ n: 129 }, 'n'], [{ top_logprobs: 2 }, 'logprobs'], [{ logprobs: true, top_logprobs: 21 }, 'top_logprobs']] as const) {
      const refused = await chat(gateway.url, 'vk_mock', { model: 'demo', messages: ask.messages, ...bad });
      assert.deepEqual([refused.status, refused.json.error.param], [400, param], JSON.stringify(bad));
    }
  });

  it('the mock answers chat requests with a query string (an SDK\'s defaultQuery, Azure-style api-version)', async () => {
    const path = '/v1/chat/completions?api-version=2024-06-01';
    const ping = { model: 'demo', messages: [{ role: 'user', content: 'ping' }] };
    const reply = await chat(gateway.url, 'vk_mock', ping, path);
    assert.equal(reply.status, 200, reply.text);
    assert.equal(reply.json.choices[0].message.content, 'Echo: ping');
    const streamed = await chat(gateway.url, 'vk_mock', { ...ping, stream: true }, path);
    assert.equal(streamed.status, 200, streamed.text);
    const chunks = sseData(streamed.text).slice(0, -1).map((text) => JSON.parse(text));
    assert.equal(chunks.map((chunk) => chunk.choices[0]?.delta.content ?? '').join(''), 'Echo: ping');
  });
});

describe('DeepSeek', () => {
  it('flattens text-only content parts (DeepSeek rejects arrays) and keeps its own fields', async () => {
    deepseekMock.requests.length = 0;
    const reply = await chat(gateway.url, 'vk_deepseek', {
      model: 'deepseek-reasoner',
      messages: [{ role: 'user', content: [{ type: 'text', text: 'Why is the sky ' }, { type: 'text', text: 'blue?' }] }],
    });
    assert.equal(reply.status, 200, reply.text);
    assert.equal(deepseekMock.requests[0]?.json.messages[0].content, 'Why is the sky blue?');
    assert.equal(reply.json.choices[0].message.reasoning_content, 'Thinking about it.');
    assert.equal(reply.json.usage.prompt_cache_miss_tokens, 11);
    assert.equal(reply.json.usage.prompt_cache_hit_tokens, 0);
    assert.equal(reply.json.usage.completion_tokens_details.reasoning_tokens, 3);
    assert.equal(deepseekMock.requests[0]?.headers.authorization, `Bearer ${DEEPSEEK_KEY}`);
  });

  it('works with the /v1 alias as base_url', async () => {
    deepseekMock.requests.length = 0;
    const reply = await chat(gateway.url, 'vk_deepseek_v1', { model: 'deepseek-chat', messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(reply.status, 200);
    assert.equal(deepseekMock.requests[0]?.path, '/v1/chat/completions');
  });

  it('passes a DeepSeek 422 on with its status and message', async () => {
    const reply = await chat(gateway.url, 'vk_deepseek', {
      model: 'deepseek-chat',
      messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://example.com/a.png' } }] }],
    });
    assert.equal(reply.status, 422);
    assert.match(reply.json.error.message, /Failed to deserialize the JSON body/);
  });
});

describe('gateway errors', () => {
  it('404 for an unknown path, in the OpenAI error shape, listing every route served', async () => {
    const reply = await request(gateway.url, '/v1/completions', { key: 'vk_openai', body: hello });
    assert.equal(reply.status, 404);
    assert.deepEqual(Object.keys(reply.json.error).sort(), ['code', 'message', 'param', 'type']);
    assert.equal(
      reply.json.error.message,
      'Unknown path: POST /v1/completions. The gateway serves POST /chat/completions, POST /v1/chat/completions, POST /v1/messages, POST /v1/messages/count_tokens, POST /v1/responses, POST /v1/responses/input_tokens, POST /v1/responses/compact, GET /v1/responses/{id}, DELETE /v1/responses/{id}, POST /v1/responses/{id}/cancel, GET /v1/responses/{id}/input_items, POST /responses, POST /responses/input_tokens, POST /responses/compact, GET /responses/{id}, DELETE /responses/{id}, POST /responses/{id}/cancel, GET /responses/{id}/input_items, GET /models, GET /v1/models, GET /usage, GET /v1/usage, GET /healthz, HEAD /healthz, GET /metrics.',
    );
    assert.ok(reply.headers['x-request-id']);
  });

  it('405 with Allow: POST for another method on the chat path', async () => {
    for (const method of ['GET', 'PUT', 'DELETE']) {
      const reply = await request(gateway.url, '/v1/chat/completions', { method, key: 'vk_openai' });
      assert.equal(reply.status, 405, method);
      assert.equal(reply.headers.allow, 'POST');
      assert.equal(reply.json.error.code, 'method_not_allowed');
    }
  });

  it('401 for a missing, malformed or unknown virtual key, never echoing the key', async () => {
    const cases: Array<Record<string, string>> = [
      {},
      { authorization: 'vk_openai' },
      { authorization: 'Basic dms6b3BlbmFp' },
      { authorization: 'Bearer vk_not_a_real_key_123456' },
      { authorization: 'Bearer ' },
    ];
    for (const headers of cases) {
      const reply = await request(gateway.url, '/chat/completions', { key: null, headers, body: hello });
      assert.equal(reply.status, 401, JSON.stringify(headers));
      assert.equal(reply.json.error.type, 'authentication_error');
      assert.doesNotMatch(reply.text, /vk_not_a_real_key|dms6b3BlbmFp/);
    }
  });

  it('reads the Bearer scheme in any case, as HTTP says schemes are (RFC 9110 §11.1)', async () => {
    for (const scheme of ['bearer', 'BEARER', 'Bearer']) {
      const reply = await request(gateway.url, '/v1/chat/completions', { key: null, headers: { authorization: `${scheme} vk_openai` }, body: hello });
      assert.equal(reply.status, 200, scheme);
    }
  });

  it('401 for a virtual key sent as x-api-key on an OpenAI route says where it goes, without echoing it', async () => {
    const expected = "Missing virtual key. Send it as 'Authorization: Bearer <virtual key>'; x-api-key is read only on the Anthropic routes (/v1/messages).";
    const routes: Array<[string, string]> = [['/v1/chat/completions', 'POST'], ['/v1/responses', 'POST'], ['/v1/responses/input_tokens', 'POST'], ['/v1/responses/resp_123', 'GET']];
    for (const [path, method] of routes) {
      const reply = await request(gateway.url, path, { method, key: null, headers: { 'x-api-key': 'vk_openai' }, body: method === 'POST' ? hello : undefined });
      assert.equal(reply.status, 401, path);
      assert.equal(reply.json.error.code, 'missing_api_key', path);
      assert.equal(reply.json.error.message, expected, path);
      assert.doesNotMatch(reply.text, /vk_openai/, path);
      const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
      assert.equal(entry.error.message, expected, path);
    }
    // Without x-api-key, the plain advice.
    const none = await request(gateway.url, '/v1/chat/completions', { key: null, body: hello });
    assert.equal(none.json.error.message, "Missing virtual key. Send it as 'Authorization: Bearer <virtual key>'.");
  });

  it('401 entries in the log mask the presented key', async () => {
    const reply = await chat(gateway.url, 'vk_guessing_0123456789', hello);
    const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
    assert.equal(entry.status, 401);
    assert.equal(entry.virtual_key, 'vk_gue…');
    assert.doesNotMatch(JSON.stringify(entry), /guessing_0123456789/);
  });

  it('logs and counts a refused key on the routes that are not logged otherwise (models, usage)', async () => {
    const refusals = async (): Promise<number> => {
      const text = (await request(gateway.url, '/metrics', { method: 'GET', key: null })).text;
      return [...text.matchAll(/^llm_gateway_requests_total\{[^}]*status="401"[^}]*\} (\d+)$/gm)].reduce((sum, match) => sum + Number(match[1]), 0);
    };
    const before = await refusals();
    const tries: Array<[string, Record<string, string>]> = [
      ['/v1/models', { authorization: 'Bearer vk_guessing_models_01' }],
      ['/v1/usage', { authorization: 'Bearer vk_guessing_usage_02' }],
      ['/v1/models', { 'x-api-key': 'vk_guessing_claude_03', 'anthropic-version': '2023-06-01' }],
    ];
    for (const [path, headers] of tries) {
      const reply = await request(gateway.url, path, { method: 'GET', key: null, headers });
      assert.equal(reply.status, 401, path);
      const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id'] ?? reply.headers['request-id']));
      assert.deepEqual([entry.status, entry.method, entry.path, entry.virtual_key], [401, 'GET', path, 'vk_gue…']);
      assert.doesNotMatch(JSON.stringify(entry), /guessing_/, 'the presented key is masked');
    }
    assert.equal(await refusals(), before + tries.length, 'each is in llm_gateway_requests_total with status 401');
  });

  it('413 for a body over GATEWAY_MAX_BODY_BYTES, declared or chunked', async () => {
    const big = { model: 'm', messages: [{ role: 'user', content: 'x'.repeat(5000) }] };
    const declared = await chat(gateway.url, 'vk_openai', big);
    assert.equal(declared.status, 413);
    assert.equal(declared.json.error.code, 'request_too_large');

    const chunked = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(`${gateway.url}/chat/completions`, {
        method: 'POST',
        agent: false,
        headers: { authorization: 'Bearer vk_openai', 'transfer-encoding': 'chunked' },
      });
      req.on('response', (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (text: string) => (body += text));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.write('{"model":"m","messages":[{"role":"user","content":"');
      req.write('y'.repeat(3000));
      req.end('y'.repeat(3000) + '"}]}');
    });
    assert.equal(chunked.status, 413);
    assert.match(chunked.body, /GATEWAY_MAX_BODY_BYTES/);
  });

  it('400 naming the problem for bodies that are not chat requests', async () => {
    const cases: Array<[unknown, RegExp, string | null]> = [
      ['{"model": "m", "messages": [', /not valid JSON/, null],
      ['', /empty/, null],
      ['[1,2]', /must be a JSON object/, null],
      ['"text"', /must be a JSON object/, null],
      [{ messages: [{ role: 'user', content: 'x' }] }, /Missing required parameter: "model"/, 'model'],
      [{ model: 42, messages: [{ role: 'user', content: 'x' }] }, /"model" must be a non-empty string/, 'model'],
      [{ model: 'm' }, /Missing required parameter: "messages"/, 'messages'],
      [{ model: 'm', messages: [] }, /"messages" must be a non-empty array/, 'messages'],
      [{ model: 'm', messages: 'hi' }, /"messages" must be a non-empty array/, 'messages'],
      [{ model: 'm', messages: ['hi'] }, /messages\[0\]/, 'messages[0]'],
      [{ model: 'm', messages: [{ role: 'user', content: 'x' }], stream: 'yes' }, /"stream" must be true or false/, 'stream'],
      // A limit the gateway cannot read would escape the key's output cap.
      [{ model: 'm', messages: [{ role: 'user', content: 'x' }], max_tokens: 'lots' }, /Invalid type for 'max_tokens': expected an integer/, 'max_tokens'],
      [{ model: 'm', messages: [{ role: 'user', content: 'x' }], max_tokens: 16, max_completion_tokens: [1] }, /max_completion_tokens/, 'max_completion_tokens'],
      ['{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":1e400}', /Invalid type for 'max_tokens'/, 'max_tokens'],
      [`{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":"${'9'.repeat(400)}"}`, /Invalid type for 'max_tokens'/, 'max_tokens'],
    ];
    openaiMock.requests.length = 0;
    for (const [body, message, param] of cases) {
      const reply = await chat(gateway.url, 'vk_openai', body);
      assert.equal(reply.status, 400, JSON.stringify(body));
      assert.equal(reply.json.error.type, 'invalid_request_error');
      assert.match(reply.json.error.message, message);
      assert.equal(reply.json.error.param, param);
    }
    assert.equal(openaiMock.requests.length, 0);
  });

  it('logs a body its API\'s checks refused as the JSON it is (a reader of the log can query it), and one that is not JSON as its text', async () => {
    const refused = await chat(gateway.url, 'vk_openai', '{"model":"gpt-4o-mini","stream":0,"messages":[{"role":"user","content":"hi"}]}');
    assert.equal(refused.status, 400);
    const entry = await waitForEntry(gateway.logFile, String(refused.headers['x-request-id']));
    assert.deepEqual(entry.request, { model: 'gpt-4o-mini', stream: 0, messages: [{ role: 'user', content: 'hi' }] });
    const twins = await chat(gateway.url, 'vk_openai', '{"model":"gpt-4o-mini","Model":"o3","messages":[{"role":"user","content":"hi"}]}');
    assert.equal(twins.status, 400);
    assert.deepEqual((await waitForEntry(gateway.logFile, String(twins.headers['x-request-id']))).request, { model: 'gpt-4o-mini', Model: 'o3', messages: [{ role: 'user', content: 'hi' }] });
    const broken = await chat(gateway.url, 'vk_openai', '{"model":"gpt-4o-mini","messages":[}');
    assert.equal(broken.status, 400);
    assert.equal((await waitForEntry(gateway.logFile, String(broken.headers['x-request-id']))).request, '{"model":"gpt-4o-mini","messages":[}');
    // JSON that is no object: an array as itself, anything else as its text (a null would read as a body never read).
    for (const [body, logged] of [['[1, 2]', [1, 2]], ['null', 'null'], ['"abc"', '"abc"']] as const) {
      const reply = await chat(gateway.url, 'vk_openai', body);
      assert.equal(reply.status, 400, body);
      assert.deepEqual((await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']))).request, logged, body);
    }
  });

  it("caps an output limit written as a string, as a lenient server would read it, to the key's max_output_tokens", async () => {
    openaiMock.requests.length = 0;
    for (const [limit, sent] of [['99999', 100], ['50', '50'], [99999.5, 100]] as const) {
      const reply = await chat(gateway.url, 'vk_openai_capped', { model: 'gpt-4o-mini', max_tokens: limit, messages: [{ role: 'user', content: 'hi' }] });
      // What matters is what the provider was sent (OpenAI itself refuses a string; the mock lets it be).
      assert.equal(reply.status, 200, reply.text);
      assert.equal(openaiMock.requests.at(-1)?.json.max_tokens ?? openaiMock.requests.at(-1)?.json.max_completion_tokens, sent, String(limit));
    }
    // Servers that read `max_completion_tokens or max_tokens` take the second when the first is 0.
    await chat(gateway.url, 'vk_openai_capped', { model: 'gpt-4o-mini', max_completion_tokens: 0, max_tokens: '99999', messages: [{ role: 'user', content: 'hi' }] });
    assert.deepEqual([openaiMock.requests.at(-1)?.json.max_completion_tokens, openaiMock.requests.at(-1)?.json.max_tokens], [100, 100]);
    // Only a field above the cap is lowered: the client's lower max_completion_tokens (which wins
    // at OpenAI) stays its limit beside a max_tokens the cap lowers, and the other way round.
    for (const [asked, sent] of [
      [{ max_tokens: 5000, max_completion_tokens: 30 }, [30, 100]],
      [{ max_tokens: 30, max_completion_tokens: 5000 }, [100, 30]],
    ] as const) {
      await chat(gateway.url, 'vk_openai_capped', { model: 'gpt-4o-mini', ...asked, messages: [{ role: 'user', content: 'hi' }] });
      assert.deepEqual([openaiMock.requests.at(-1)?.json.max_completion_tokens, openaiMock.requests.at(-1)?.json.max_tokens], sent, JSON.stringify(asked));
    }
  });

  it('sends a body whose model key stands twice as the gateway read it (parsers differ on which wins)', async () => {
    openaiMock.requests.length = 0;
    const reply = await request(gateway.url, '/v1/chat/completions', { key: 'vk_openai', body: '{"model":"o3","messages":[{"role":"user","content":"hi"}],"model":"gpt-4o-mini"}' });
    assert.equal(reply.status, 200, reply.text);
    const sent = openaiMock.requests[0];
    assert.equal(sent?.json.model, 'gpt-4o-mini');
    assert.equal(String(sent?.raw).match(/"model"/g)?.length, 1);
    assert.doesNotMatch(String(sent?.raw), /o3/);
  });

  it('400 for a model name longer than 256 characters on every route that takes one, before it is a metrics label', async () => {
    const long = `m${'x'.repeat(256)}`;
    const fine = 'x'.repeat(256);
    const routes: Array<[string, (model: string) => unknown]> = [
      ['/v1/chat/completions', (model) => ({ model, messages: [{ role: 'user', content: 'hi' }] })],
      ['/v1/messages', (model) => ({ model, max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] })],
      ['/v1/messages/count_tokens', (model) => ({ model, messages: [{ role: 'user', content: 'hi' }] })],
      ['/v1/responses', (model) => ({ model, input: 'hi' })],
      ['/v1/responses/input_tokens', (model) => ({ model, input: 'hi' })],
    ];
    for (const [path, body] of routes) {
      const refused = await request(gateway.url, path, { key: 'vk_mock', body: body(long) });
      assert.equal(refused.status, 400, path);
      const error = refused.json.error;
      assert.equal(error.type, 'invalid_request_error', path);
      assert.match(error.message, /model: must be at most 256 characters \(this one has 257\)/, path);
      if (!path.startsWith('/v1/messages')) assert.equal(error.param, 'model', path);
      else assert.equal(refused.json.type, 'error', path);
      assert.notEqual((await request(gateway.url, path, { key: 'vk_mock', body: body(fine) })).status, 400, `${path}: 256 characters are taken`);
    }
    const metrics = (await request(gateway.url, '/metrics', { method: 'GET' })).text;
    assert.ok(metrics.includes(fine), 'the names taken are labels');
    assert.ok(!metrics.includes(long), 'the names refused are not');
  });

  it('502 when the provider refuses the connection or its host does not resolve', async () => {
    for (const key of ['vk_down', 'vk_nodns']) {
      const reply = await chat(gateway.url, key, hello);
      assert.equal(reply.status, 502, key);
      assert.equal(reply.json.error.code, 'upstream_unreachable');
      assert.doesNotMatch(reply.text, /127\.0\.0\.1|no-such-host/); // internal addresses stay internal
    }
  });

  it('502 when the provider resets the connection before answering', async () => {
    openaiMock.behave(({ req }) => {
      req.socket.resetAndDestroy();
    });
    try {
      const reply = await chat(gateway.url, 'vk_openai', hello);
      assert.equal(reply.status, 502);
      assert.equal(reply.json.error.code, 'upstream_unreachable');
    } finally {
      openaiMock.behave(null);
    }
  });

  it('502 when the provider answers 200 with something that is not a completion', async () => {
    openaiMock.behave(({ res }) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<html>captive portal</html>');
    });
    try {
      const reply = await chat(gateway.url, 'vk_openai', hello);
      assert.equal(reply.status, 502);
      assert.equal(reply.json.error.code, 'upstream_invalid_response');
    } finally {
      openaiMock.behave(null);
    }
  });

  it("a provider's error answered with a 200 (some servers and proxies) is that error, at the status it stands for, streamed or not", async () => {
    let body = '';
    openaiMock.behave(({ res }) => {
      res.writeHead(200, { 'content-type': 'application/json', 'retry-after': '3' });
      res.end(body);
    });
    try {
      body = JSON.stringify({ type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } });
      const overloaded = await chat(gateway.url, 'vk_openai', hello);
      assert.equal(overloaded.status, 529, overloaded.text);
      assert.equal(overloaded.json.error.message, 'Overloaded');
      assert.equal(overloaded.headers['retry-after'], '3', "the provider's wait is passed on");
      body = JSON.stringify({ error: { message: 'Rate limit reached for requests', type: 'requests', code: 'rate_limit_exceeded' } });
      const limited = await chat(gateway.url, 'vk_openai', { ...hello, stream: true });
      assert.equal(limited.status, 429, limited.text);
      assert.equal(limited.json.error.message, 'Rate limit reached for requests');
      assert.equal(limited.headers['retry-after'], '3');
      body = JSON.stringify({ error: { message: 'Upstream model failed', code: 503 } });
      assert.equal((await chat(gateway.url, 'vk_openai', hello)).status, 503);
      // Nothing that says it is an error: not a completion.
      body = JSON.stringify({ object: 'chat.completion' });
      assert.equal((await chat(gateway.url, 'vk_openai', hello)).json.error.code, 'upstream_invalid_response');
    } finally {
      openaiMock.behave(null);
    }
  });

  it('500 provider_auth_failed when the provider rejects the real key, with no fragment of it', async () => {
    const reply = await chat(gateway.url, 'vk_wrong_real_key', hello);
    assert.equal(reply.status, 500);
    assert.equal(reply.json.error.code, 'provider_auth_failed');
    assert.match(reply.json.error.message, /provider rejected the gateway's API key for this virtual key/);
    assert.equal(reply.headers['x-should-retry'], 'false', 'an SDK retrying would fail the same way');
    assert.doesNotMatch(reply.text, /WRONG|9888|sk-proj/);
    const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
    assert.equal(entry.upstream.status, 401);
    // The entry's and the mock's request ids are random hex, which may hold "9888" by chance: they are not the key's.
    assert.doesNotMatch(JSON.stringify({ ...entry, request_id: null, upstream: { ...entry.upstream, request_id: null } }), /WRONG|9888|sk-proj-W/);
  });

  it('403 from the provider is also a gateway key problem (500)', async () => {
    openaiMock.behave(({ res }) => {
      res.writeHead(403, { 'content-type': 'application/json' });
      res.end(JSON.stringify(openAIError('Country, region, or territory not supported', 'request_forbidden', 'unsupported_country_region_territory')));
    });
    try {
      const reply = await chat(gateway.url, 'vk_openai', hello);
      assert.equal(reply.status, 500);
      assert.equal(reply.json.error.code, 'provider_auth_failed');
    } finally {
      openaiMock.behave(null);
    }
  });

  it('passes other upstream errors on with their status, message and retry-after', async () => {
    const cases: Array<[number, unknown, Record<string, string>]> = [
      [400, openAIError("Unsupported parameter: 'max_tokens' is not supported with this model.", 'invalid_request_error', 'unsupported_parameter', 'max_tokens'), {}],
      [404, openAIError('The model `gpt-5-nope` does not exist or you do not have access to it.', 'invalid_request_error', 'model_not_found'), {}],
      [422, openAIError('Unprocessable', 'invalid_request_error'), {}],
      [429, openAIError('Rate limit reached for gpt-4o in organization org-xxx on tokens per min (TPM).', 'tokens', 'rate_limit_exceeded'), { 'retry-after': '3' }],
      [500, openAIError('The server had an error processing your request.', 'server_error'), {}],
      [503, openAIError('The engine is currently overloaded, please try again later.', 'server_error'), { 'retry-after': '1' }],
    ];
    for (const [status, body, headers] of cases) {
      openaiMock.behave(({ res }) => {
        res.writeHead(status, { 'content-type': 'application/json', ...headers });
        res.end(JSON.stringify(body));
      });
      const reply = await chat(gateway.url, 'vk_openai', hello);
      assert.equal(reply.status, status);
      assert.deepEqual(reply.json, body);
      assert.equal(reply.headers['retry-after'], headers['retry-after']);
    }
    openaiMock.behave(null);
  });

  it('survives garbage HTTP from a client', async () => {
    const answer = await new Promise<string>((resolve) => {
      const socket = net.connect(gateway.port, '127.0.0.1', () => socket.write('BLAH /\r\n\r\n'));
      let text = '';
      socket.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
      socket.on('close', () => resolve(text));
    });
    assert.match(answer, /^HTTP\/1\.1 400/);
    const reply = await chat(gateway.url, 'vk_mock', hello);
    assert.equal(reply.status, 200);
  });
});
