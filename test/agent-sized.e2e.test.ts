/**
 * Agent-sized requests (a coding agent's whole conversation, 137 KB to 1 MB) on each client API,
 * passed through and translated: the provider gets the client's bytes, the client its answer,
 * and both log destinations the whole body.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { agentConversation, chatBody, messagesBody, responsesBody } from '../bench/fixtures.js';
import { startGateway, waitFor, waitForEntry, type GatewayProcess } from './support/gateway.js';
import { request } from './support/http.js';
import { refusingPort } from './support/ports.js';
import { startAnthropicMock, type AnthropicMock } from './support/mock-anthropic.js';
import { startOpenAIMock, type MockUpstream } from './support/mock-openai.js';

const OPENAI_KEY = 'sk-proj-AGENTtestOPENAI-5Gh2';
const ANTHROPIC_KEY = 'sk-ant-api03-AGENTtestANTHROPIC-9Lm4';

let openai: MockUpstream;
let anthropic: AnthropicMock;
let gateway: GatewayProcess;

const conversation = agentConversation(1_000_000);
const bodies = { chat: chatBody(conversation), messages: messagesBody(conversation), responses: responsesBody(conversation) };
const paths = { chat: '/v1/chat/completions', messages: '/v1/messages', responses: '/v1/responses' };

before(async () => {
  openai = await startOpenAIMock({ flavor: 'openai', apiKey: OPENAI_KEY });
  anthropic = await startAnthropicMock({ apiKey: ANTHROPIC_KEY });
  const down = await refusingPort();
  const openaiTarget = { provider: 'openai', api_key: OPENAI_KEY, base_url: openai.baseUrl, max_output_tokens: 16384 };
  const anthropicTarget = { provider: 'anthropic', api_key: ANTHROPIC_KEY, base_url: anthropic.origin, model_map: { '*': 'claude-sonnet-4-5' } };
  gateway = await startGateway({
    keys: {
      virtual_keys: {
        // Claude Code asks for 32,000 output tokens: capped at what the OpenAI mock accepts.
        vk_openai: { provider: 'openai', api_key: OPENAI_KEY, base_url: openai.baseUrl, api: ['chat', 'responses'], max_output_tokens: 16384 },
        vk_anthropic: { provider: 'anthropic', api_key: ANTHROPIC_KEY, base_url: anthropic.origin },
        // A chat-only provider: Responses clients are translated.
        vk_chat_only: openaiTarget,
        // The first target unreachable: a chat request translated (then passed through), or passed through (then translated).
        vk_translated_first: { targets: [{ ...anthropicTarget, base_url: `http://127.0.0.1:${down}` }, openaiTarget] },
        vk_passed_first: { targets: [{ ...openaiTarget, base_url: `http://127.0.0.1:${down}/v1` }, anthropicTarget] },
      },
    },
    // One line per entry on stdout: the body spliced into the compact rendering too.
    env: { LOG_CONSOLE: 'json' },
  });
});

after(async () => {
  await gateway?.stop();
  await openai?.close();
  await anthropic?.close();
});

/** Sends `body` and checks the answer ended as its API ends a stream, and both log entries hold the whole body. */
async function send(api: keyof typeof paths, key: string, body: string): Promise<void> {
  assert.ok(Buffer.byteLength(body) > 990_000, 'about 1 MB');
  const reply = await request(gateway.url, paths[api], { key, body, headers: { 'anthropic-version': '2023-06-01' } });
  assert.equal(reply.status, 200, reply.text.slice(0, 500));
  assert.match(String(reply.headers['content-type']), /^text\/event-stream/);
  const ending = { chat: 'data: [DONE]', messages: 'event: message_stop', responses: 'event: response.completed' }[api];
  assert.ok(reply.text.includes(ending), `the stream ends with ${ending}`);
  const id = String(reply.headers['x-request-id']);
  const entry = await waitForEntry(gateway.logFile, id);
  assert.equal(entry.status, 200);
  assert.deepEqual(entry.request, JSON.parse(body), 'the whole body in the file');
  assert.ok(entry.usage.output_tokens > 0);
  // Its whole line, not the part of it that has arrived.
  const line = (): string | undefined => gateway.stdout().split('\n').slice(0, -1).find((each) => each.includes(id));
  await waitFor(() => line() !== undefined, 'the entry on stdout');
  assert.deepEqual(JSON.parse(line() as string).request, JSON.parse(body), 'the whole body on one stdout line');
}

describe('agent-sized requests (1 MB)', () => {
  it('chat passes through byte for byte and is logged whole', async () => {
    const before = openai.requests.length;
    await send('chat', 'vk_openai', bodies.chat);
    const upstream = openai.requests.slice(before);
    assert.equal(upstream.length, 1);
    assert.equal(upstream[0]?.raw, bodies.chat);
  });

  it('chat without stream_options reaches the provider as its bytes with the usage field spliced in', async () => {
    const before = openai.requests.length;
    const body = bodies.chat.replace('"stream_options":{"include_usage":true},', '');
    await send('chat', 'vk_openai', body);
    const upstream = openai.requests.slice(before);
    assert.equal(upstream[0]?.raw, `{"stream_options":{"include_usage":true},${body.slice(1)}`);
  });

  it('Messages passes through byte for byte and is logged whole', async () => {
    const before = anthropic.requests.length;
    await send('messages', 'vk_anthropic', bodies.messages);
    assert.equal(anthropic.requests.slice(before)[0]?.raw, bodies.messages);
  });

  it('Responses passes through byte for byte and is logged whole', async () => {
    const before = openai.requests.length;
    await send('responses', 'vk_openai', bodies.responses);
    assert.equal(openai.requests.slice(before)[0]?.raw, bodies.responses);
  });

  it('Messages translated for a chat provider carries every turn, tool call and result', async () => {
    const before = openai.requests.length;
    await send('messages', 'vk_openai', bodies.messages);
    const sent = openai.requests.slice(before)[0]?.json;
    const expected = JSON.parse(bodies.chat).messages;
    assert.equal(sent.messages.length, expected.length);
    assert.deepEqual(
      sent.messages.filter((message: { role: string }) => message.role === 'tool').map((message: { tool_call_id: string; content: unknown }) => [message.tool_call_id, message.content]),
      expected.filter((message: { role: string }) => message.role === 'tool').map((message: { tool_call_id: string; content: unknown }) => [message.tool_call_id, message.content]),
    );
  });

  it('count_tokens of the whole conversation passes through and is logged whole', async () => {
    const { max_tokens: _max, stream: _stream, metadata: _metadata, ...counted } = JSON.parse(bodies.messages);
    const body = JSON.stringify(counted);
    const before = anthropic.requests.length;
    const reply = await request(gateway.url, '/v1/messages/count_tokens', { key: 'vk_anthropic', body, headers: { 'anthropic-version': '2023-06-01' } });
    assert.equal(reply.status, 200, reply.text.slice(0, 500));
    assert.ok(reply.json.input_tokens > 0);
    assert.equal(anthropic.requests.slice(before)[0]?.raw, body);
    const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
    assert.deepEqual(entry.request, counted);
  });

  it('Responses translated for a chat provider carries every item, and its answer echoes the tools and instructions', async () => {
    const before = openai.requests.length;
    const reply = await request(gateway.url, paths.responses, { key: 'vk_chat_only', body: bodies.responses });
    assert.equal(reply.status, 200, reply.text.slice(0, 500));
    const sent = openai.requests.slice(before)[0]?.json;
    const request_ = JSON.parse(bodies.responses);
    assert.equal(sent.messages.filter((message: { role: string }) => message.role === 'tool').length, request_.input.filter((item: { type: string }) => item.type === 'function_call_output').length);
    // The conversation was let go of once sent: what the answer echoes is read again from the client's bytes.
    const completed = reply.text.split('\n\n').find((frame) => frame.startsWith('event: response.completed'));
    assert.ok(completed !== undefined, 'response.completed');
    const response = JSON.parse(completed.slice(completed.indexOf('data: ') + 6)).response;
    assert.deepEqual(response.tools, request_.tools);
    assert.equal(response.instructions, request_.instructions);
    assert.equal(response.status, 'completed');
  });

  it('moves to the next target with the whole conversation, from a translated target to a pass-through and back', async () => {
    const beforeOpenai = openai.requests.length;
    await send('chat', 'vk_translated_first', bodies.chat);
    assert.equal(openai.requests.slice(beforeOpenai)[0]?.raw, bodies.chat, 'passed through byte for byte after a translated attempt');
    const beforeAnthropic = anthropic.requests.length;
    await send('chat', 'vk_passed_first', bodies.chat);
    const sent = anthropic.requests.slice(beforeAnthropic)[0]?.json;
    assert.equal(sent.messages.length, JSON.parse(bodies.messages).messages.length, 'translated whole after a pass-through attempt');
    assert.equal(sent.messages.at(-1).content.at(-1).text, conversation.last);
  });

  it('chat translated for Anthropic arrives whole', async () => {
    const before = anthropic.requests.length;
    await send('chat', 'vk_anthropic', bodies.chat.replace('"model":"gpt-4o-mini"', '"model":"claude-sonnet-4-5"'));
    const sent = anthropic.requests.slice(before)[0]?.json;
    assert.equal(sent.messages.at(-1).content.at(-1).text, conversation.last);
  });
});

describe('agent-sized requests the gateway checks without parsing them', () => {
  it('refuses a message without a role, naming it, as for any body', async () => {
    const body = JSON.parse(bodies.chat);
    body.messages[7] = { content: 'no role' };
    const reply = await request(gateway.url, paths.chat, { key: 'vk_openai', body: JSON.stringify(body) });
    assert.equal(reply.status, 400);
    assert.equal(reply.json.error.param, 'messages[7]');
    const messages = JSON.parse(bodies.messages);
    messages.messages[3] = 'a string';
    const refused = await request(gateway.url, paths.messages, { key: 'vk_anthropic', body: JSON.stringify(messages), headers: { 'anthropic-version': '2023-06-01' } });
    assert.equal(refused.status, 400);
    assert.equal(refused.json.type, 'error');
    assert.match(refused.json.error.message, /^messages\.3: /);
  });

  it('refuses an item_reference in a large Responses input, wherever it stands and however its type is spelled', async () => {
    const body = JSON.parse(bodies.responses);
    body.input.splice(40, 0, { type: 'item_reference', id: 'msg_someone_elses' });
    // An escaped spelling of the same key and value: what a byte search would miss.
    const text = JSON.stringify(body).replace('{"type":"item_reference"', '{"t\\u0079pe":"item\\u005freference"');
    assert.ok(text.includes('item\\u005freference'));
    const before = openai.requests.length;
    const reply = await request(gateway.url, paths.responses, { key: 'vk_openai', body: text });
    assert.equal(reply.status, 400, reply.text.slice(0, 300));
    assert.equal(reply.json.error.param, 'input[40]');
    assert.equal(openai.requests.length, before, 'nothing sent');
    // A reference without its (optional) type, seen in the same scan.
    const untyped = JSON.parse(bodies.responses);
    untyped.input.splice(12, 0, { id: 'msg_someone_elses' });
    const refused = await request(gateway.url, paths.responses, { key: 'vk_openai', body: JSON.stringify(untyped) });
    assert.equal(refused.status, 400, refused.text.slice(0, 300));
    assert.equal(refused.json.error.param, 'input[12]');
  });

  it('reads a top-level key named after an Object.prototype member as any other', async () => {
    const body = JSON.parse(bodies.chat);
    const text = JSON.stringify({ constructor: [{ a: 1 }], toString: [{ b: 2 }], ...body });
    const before = openai.requests.length;
    const reply = await request(gateway.url, paths.chat, { key: 'vk_openai', body: text });
    // Passed on as sent: the provider, not the gateway, says what it makes of the unknown field.
    assert.equal(openai.requests.slice(before)[0]?.raw, text);
    assert.equal(reply.status, 400);
    assert.match(reply.json.error.message, /Unrecognized request argument supplied: constructor/);
  });

  it('passes a body that is not JSON inside a large member on to the provider, whose refusal the client gets; the log holds it as text', async () => {
    // A raw control character in a string: the structure is sound, the JSON is not.
    const body = bodies.chat.replace('"role":"user","content":"', '"role":"user","content":"\u0001');
    assert.notEqual(body, bodies.chat);
    const reply = await request(gateway.url, paths.chat, { key: 'vk_openai', body });
    assert.equal(reply.status, 400, reply.text.slice(0, 300));
    assert.match(reply.json.error.message, /could not parse the JSON body/);
    const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
    assert.equal(entry.status, 400);
    assert.equal(entry.request, body, 'the body whole, as its text: the log stays JSON');
    const id = String(reply.headers['x-request-id']);
    await waitFor(() => gateway.stdout().split('\n').slice(0, -1).some((line) => line.includes(id)), 'the entry on stdout');
    const line = gateway.stdout().split('\n').find((each) => each.includes(id)) as string;
    assert.equal(JSON.parse(line).request, body);
  });

  it('translates such a body into a 400 of its own, where the provider speaks another API', async () => {
    const body = bodies.chat.replace('"model":"gpt-4o-mini"', '"model":"claude-sonnet-4-5"').replace('"role":"user","content":"', '"role":"user","content":"\\q');
    const before = anthropic.requests.length;
    const reply = await request(gateway.url, paths.chat, { key: 'vk_anthropic', body });
    assert.equal(reply.status, 400, reply.text.slice(0, 300));
    assert.equal(reply.json.error.code, 'invalid_json');
    assert.equal(anthropic.requests.length, before, 'nothing sent');
  });
});

describe('agent-sized bodies however they arrive', () => {
  /** Sends `body` in pieces of `piece` bytes, with its length declared or chunked; resolves with the status. */
  function sendInPieces(body: string, piece: number, declared: boolean): Promise<number> {
    const bytes = Buffer.from(body);
    return new Promise((resolve, reject) => {
      const headers: Record<string, string> = { authorization: 'Bearer vk_openai', 'content-type': 'application/json' };
      if (declared) headers['content-length'] = String(bytes.length);
      const req = http.request(`${gateway.url}${paths.chat}`, { method: 'POST', headers, agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      let at = 0;
      const next = (): void => {
        if (at >= bytes.length) return void req.end();
        const end = Math.min(bytes.length, at + piece);
        req.write(bytes.subarray(at, end));
        at = end;
        setImmediate(next);
      };
      next();
    });
  }

  // Over 1 MiB, the room first given to a body grows as it arrives.
  const larger = chatBody(agentConversation(2_600_000));
  for (const [declared, piece, body] of [
    [true, 1000, bodies.chat],
    [true, 65_536, bodies.chat],
    [false, 7_919, bodies.chat],
    [true, 65_536, larger],
  ] as const) {
    it(`reaches the provider byte for byte: ${Math.round(Buffer.byteLength(body) / 1e5) / 10} MB, ${declared ? 'length declared' : 'chunked'}, written ${piece} bytes at a time`, async () => {
      const before = openai.requests.length;
      assert.equal(await sendInPieces(body, piece, declared), 200);
      assert.equal(openai.requests.slice(before)[0]?.raw, body);
    });
  }
});
