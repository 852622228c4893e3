/**
 * OpenAI-compatible providers without a network: the request a provider gets (the client's own
 * bytes where nothing changes), the pass-through stream a chat client gets, the answer read
 * whole, and upstream error bodies.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GatewayError } from '../src/errors.js';
import { chatClient, chatTarget, type ChatTypes } from '../src/formats/chat/index.js';
import { chatRequestBody } from '../src/formats/chat/request.js';
import { CHAT_NOTABLE } from '../src/formats/chat/stream.js';
import type { ChatRequest } from '../src/formats/chat/types.js';
import { createRouter } from '../src/formats/router.js';
import { deepseek, flattenTextParts } from '../src/providers/deepseek.js';
import { mock } from '../src/providers/mock.js';
import { registry } from '../src/providers/index.js';
import { messagesClient } from '../src/formats/messages/index.js';
import { responsesClient } from '../src/formats/responses/index.js';
import type { ApiTypes, ClientApi } from '../src/formats/api.js';
import { openai } from '../src/providers/openai.js';
import type { Provider } from '../src/providers/types.js';
import { MAX_ASSEMBLED_STREAM_BYTES } from '../src/observe/log-caps.js';
import { streamPipeline } from '../src/surfaces/stream.js';
import { unchanged } from '../src/formats/json-splice.js';
import { upstreamBody } from '../src/surfaces/outbound.js';
import { parseUpstreamError, redactKey, redactMessage, upstreamError } from '../src/upstream/errors.js';

const router = createRouter({ anthropicDefaultMaxTokens: 4096, now: () => 1 });
const route = router.route(chatClient, ['chat']);

/** What a chat-speaking provider is sent for the client's `raw` body. */
function prepared(raw: string, provider: Provider = openai): { body: string; headers: Record<string, string> } {
  const request = JSON.parse(raw) as ChatRequest;
  const body = upstreamBody(route, provider, route.translation.exchange(request), unchanged(Buffer.from(raw), request));
  return { body: typeof body === 'string' || Buffer.isBuffer(body) ? body.toString() : Buffer.concat(body).toString(), headers: chatTarget.authHeaders('sk-real') };
}

describe('chat client', () => {
  it('reads the output limit the client allows, and whether it wrote one at all (0 or -5 is written: the provider refuses it, no default replaces it)', () => {
    const read = (body: object) => {
      const parsed = chatClient.parseRequest(Buffer.from(JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }], ...body })));
      return [parsed.maxOutputTokens, parsed.statesOutputLimit];
    };
    assert.deepEqual(read({}), [0, false]);
    assert.deepEqual(read({ max_tokens: null, max_completion_tokens: null }), [0, false]);
    assert.deepEqual(read({ max_output_tokens: 500 }), [0, false], "Responses' name is not a chat limit");
    assert.deepEqual(read({ max_tokens: 300 }), [300, true]);
    assert.deepEqual(read({ max_tokens: 300, max_completion_tokens: 700 }), [700, true]);
    assert.deepEqual(read({ max_completion_tokens: 0 }), [0, true]);
    assert.deepEqual(read({ max_tokens: -5 }), [0, true]);
    assert.deepEqual(read({ thinking: { type: 'enabled', budget_tokens: 9000 } }), [0, false], 'a thinking budget is no limit: the key cap still applies');
  });

  it('lowers a thinking budget with the limit it lowers to a cap (Anthropic wants it below max_tokens), or turns it off when none fits', () => {
    const request: ChatRequest = { model: 'claude', messages: [{ role: 'user', content: 'x' }], thinking: { type: 'enabled', budget_tokens: 60000 } };
    assert.deepEqual(chatClient.rewrite(request, { model: 'c', maxOutputTokens: 8192 }), { ...request, model: 'c', max_completion_tokens: 8192, thinking: { type: 'enabled', budget_tokens: 8191 } });
    assert.deepEqual(chatClient.rewrite({ ...request, max_tokens: 64000 }, { model: 'c', maxOutputTokens: 8192 }), { ...request, model: 'c', max_tokens: 8192, thinking: { type: 'enabled', budget_tokens: 8191 } });
    const off = chatClient.rewrite(request, { model: 'c', maxOutputTokens: 1024 });
    assert.equal('thinking' in off, false, 'no budget of 1,024 or more fits below 1,024');
    const small = { ...request, thinking: { type: 'enabled', budget_tokens: 2000 } };
    assert.deepEqual(chatClient.rewrite(small, { model: 'c', maxOutputTokens: 8192 }).thinking, small.thinking, 'a budget below the cap stays');
    assert.equal('thinking' in chatClient.rewrite({ model: 'm', messages: [] }, { model: 'c', maxOutputTokens: 8192 }), false, 'none added');
  });
});

describe('openai request', () => {
  it("leaves earlier thinking (reasoning_content) out of the gateway's own translations, which OpenAI would refuse, and out of nothing else", () => {
    const request: ChatRequest = { model: 'gpt-4o', messages: [{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b', reasoning_content: 'r' }, { role: 'user', content: 'c' }] };
    assert.deepEqual(openai.adjust?.('chat', request, true), { ...request, messages: [{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }, { role: 'user', content: 'c' }] });
    assert.equal(openai.adjust?.('chat', request, false), null, "a client's own body goes as sent");
    assert.equal(openai.adjust?.('chat', { model: 'm', messages: [{ role: 'user', content: 'a' }] }, true), null, 'nothing to take out: no copy');
    assert.equal(deepseek.adjust?.('chat', request, true), null, 'DeepSeek wants it back');
  });

  it('forwards the client bytes unchanged when nothing must change', () => {
    const raw = '{ "model":"gpt-4o",  "messages":[{"role":"user","content":"hi"}], "temperature": 0.5 }';
    const request = JSON.parse(raw) as ChatRequest;
    const body = upstreamBody(route, openai, route.translation.exchange(request), unchanged(Buffer.from(raw), request));
    assert.ok(Buffer.isBuffer(body));
    assert.equal(body.toString(), raw);
    assert.deepEqual(chatTarget.authHeaders('sk-real'), { authorization: 'Bearer sk-real' });
  });

  it('asks for stream usage by splicing stream_options into the original bytes', () => {
    const raw = ' {"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}';
    const { body } = prepared(raw);
    assert.equal(body, ' {"stream_options":{"include_usage":true},"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}');
    assert.deepEqual(JSON.parse(body).stream_options, { include_usage: true });
    // The client's bytes are not copied: the field goes between two views of them.
    const rawBytes = Buffer.from(raw);
    const request = JSON.parse(raw) as ChatRequest;
    const pieces = chatRequestBody(request, unchanged(rawBytes, request));
    assert.ok(Array.isArray(pieces) && pieces.length === 3);
    assert.ok(pieces[0]?.buffer === rawBytes.buffer && pieces[2]?.buffer === rawBytes.buffer);
  });

  it('keeps the client bytes when the client already asked for usage', () => {
    const raw = '{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}';
    assert.equal(prepared(raw).body, raw);
  });

  it('sets include_usage inside existing stream_options, keeping their other fields', () => {
    const raw = '{"model":"m","stream":true,"stream_options":{"include_usage":false,"include_obfuscation":false},"messages":[{"role":"user","content":"hi"}]}';
    assert.deepEqual(JSON.parse(prepared(raw).body).stream_options, { include_usage: true, include_obfuscation: false });
    const nullOptions = '{"model":"m","stream":true,"stream_options":null,"messages":[{"role":"user","content":"hi"}]}';
    assert.deepEqual(JSON.parse(prepared(nullOptions).body).stream_options, { include_usage: true });
  });

  it('asks for usage again where stream_options holds a twin of include_usage that Go servers would read instead', () => {
    const raw = '{"model":"m","stream":true,"stream_options":{"include_usage":true,"Include_usage":false,"include_obfuscation":false},"messages":[{"role":"user","content":"hi"}]}';
    assert.deepEqual(JSON.parse(prepared(raw).body).stream_options, { include_usage: true, include_obfuscation: false });
  });

  it('does not add stream_options to a non-stream request', () => {
    const raw = '{"model":"m","stream":false,"messages":[{"role":"user","content":"hi"}]}';
    const rawBytes = Buffer.from(raw);
    const request = JSON.parse(raw) as ChatRequest;
    assert.equal(chatRequestBody(request, unchanged(rawBytes, request)), rawBytes);
    assert.equal(prepared(raw).body, raw);
  });
});

describe('deepseek request', () => {
  it('flattens text-only content-part arrays to strings and leaves the rest alone', () => {
    const request = {
      model: 'deepseek-chat',
      messages: [
        { role: 'system', content: [{ type: 'text', text: 'Be ' }, { type: 'text', text: 'brief.' }] },
        { role: 'user', content: 'plain' },
        { role: 'user', content: [{ type: 'text', text: 'look' }, { type: 'image_url', image_url: { url: 'https://x/y.png' } }] },
        { role: 'assistant', content: null, tool_calls: [] },
      ],
    } as ChatRequest;
    const flat = flattenTextParts(request);
    assert.deepEqual(flat?.messages.map((message) => message.content), ['Be brief.', 'plain', request.messages[2]?.content, null]);
    // Parts the gateway made of a Messages client's blocks (Claude Code's reminder, then its question): apart.
    assert.equal(flattenTextParts(request, true)?.messages[0]?.content, 'Be \n\nbrief.');
    assert.equal(flattenTextParts({ model: 'm', messages: [{ role: 'user', content: 'x' }] }), null);
  });

  it('sends the flattened body with Bearer auth', () => {
    const { body, headers } = prepared('{"model":"deepseek-chat","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}', deepseek);
    assert.deepEqual(JSON.parse(body).messages, [{ role: 'user', content: 'hi' }]);
    assert.equal(headers.authorization, 'Bearer sk-real');
  });

  it('flattens and asks for usage in one rewrite', () => {
    const { body } = prepared('{"model":"deepseek-chat","stream":true,"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}', deepseek);
    assert.deepEqual(JSON.parse(body), { model: 'deepseek-chat', stream: true, messages: [{ role: 'user', content: 'hi' }], stream_options: { include_usage: true } });
  });
});

describe('chat stream pass-through', () => {
  const event = (data: string) => ({ event: undefined, data });
  const chunk = '{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}],"usage":null}';
  const usageChunk = '{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}';
  const finalWithUsage = '{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}';
  /** One chat client's stream, passed through; `logged`: a log entry wants the assembled answer. */
  const pipeline = (clientWantsUsage: boolean, logged = true) => {
    const request: ChatRequest = { model: 'm', messages: [], stream: true, ...(clientWantsUsage ? { stream_options: { include_usage: true } } : {}) };
    return streamPipeline<ChatTypes>(route, route.translation.exchange(request), chatClient.streamOutput(request, 'gw1'), logged ? chatClient.assembler() : null, { promptTokens: 1, answerId: 'gw1' });
  };

  it(`relays a stream past ${MAX_ASSEMBLED_STREAM_BYTES / 1024 / 1024} MiB of events whole, and logs the answer assembled until then, marked cut, with the events' size`, () => {
    const stream = pipeline(false);
    const big = `{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"${'x'.repeat(1024 * 1024)}"},"finish_reason":null}],"usage":null}`;
    const count = MAX_ASSEMBLED_STREAM_BYTES / (1024 * 1024) + 2;
    for (let i = 0; i < count; i++) assert.equal(stream.event(event(big)).text.length, big.length + 8, 'every event reaches the client');
    stream.event(event(finalWithUsage));
    const logged = stream.response((answer) => answer) as { truncated: boolean; original_bytes: number; head: string };
    assert.equal(logged.truncated, true);
    assert.equal(logged.original_bytes, count * big.length + finalWithUsage.length);
    const assembled = JSON.parse(logged.head) as { choices: Array<{ message: { content: string } }> };
    assert.equal(assembled.choices[0]?.message.content.length, Math.floor(MAX_ASSEMBLED_STREAM_BYTES / big.length) * 1024 * 1024, 'the events within the limit');
    assert.deepEqual(stream.usage(), { input: 1, output: 1, cacheRead: 0, cacheWrite: 0, cacheWrite1h: 0, reasoning: 0 }, 'usage is still read');
    const small = pipeline(false);
    small.event(event(chunk));
    assert.equal((small.response((answer) => answer) as { truncated?: boolean }).truncated, undefined, 'below it: the answer itself');
  });

  it('passes chunks through byte for byte', () => {
    assert.equal(pipeline(false).event(event(chunk)).text, `data: ${chunk}\n\n`);
  });

  it('holds the usage chunk back from a client that did not ask for it, but still counts it and hands it to the log', () => {
    const hidden = pipeline(false);
    assert.equal(hidden.event(event(usageChunk)).text, '');
    assert.deepEqual(hidden.usage(), { input: 1, output: 1, cacheRead: 0, cacheWrite: 0, cacheWrite1h: 0, reasoning: 0 });
    assert.deepEqual((hidden.response((answer) => answer) as { usage: unknown }).usage, { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 });
    assert.equal(pipeline(true).event(event(usageChunk)).text, `data: ${usageChunk}\n\n`);
  });

  it('strips usage from a final content chunk (DeepSeek style) for a client that did not ask', () => {
    const { text } = pipeline(false).event(event(finalWithUsage));
    const sent = JSON.parse(text.slice('data: '.length));
    assert.equal(sent.usage, undefined);
    assert.equal(sent.choices[0].finish_reason, 'stop');
  });

  it('decodes only the chunks that matter (the end, errors, usage, a finish), and still sees the finish', () => {
    const fast = pipeline(false, false);
    assert.equal(CHAT_NOTABLE.test(chunk), false, 'a plain chunk goes out as its bytes');
    const quoted = '{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"say \\"usage\\": {1} or \\"error\\""},"finish_reason":null}]}';
    assert.equal(CHAT_NOTABLE.test(quoted), false, 'quoted words in content are not keys');
    assert.equal(fast.event(event(quoted)).text, `data: ${quoted}\n\n`);
    assert.equal(fast.finish(), null, 'no finish yet: a stream ending now is incomplete');
    const last = fast.event(event(finalWithUsage));
    assert.equal(JSON.parse(last.text.slice('data: '.length)).usage, undefined, 'usage still held back');
    assert.equal(fast.finish(), 'data: [DONE]\n\n', 'a finish seen: a stream ending now is complete');
    assert.equal(fast.event(event(usageChunk)).text, '');
    assert.equal(fast.event(event('{"error":{"message":"boom","type":"server_error"}}')).error?.message, 'boom');
  });

  it('turns [DONE] and upstream error events into the end / errors, and passes on what it need not read', () => {
    const translator = pipeline(false);
    assert.deepEqual(translator.event(event('[DONE]')), { text: 'data: [DONE]\n\n', done: true });
    // Passing through, an event that is not notable goes on as it came, JSON or not (translated
    // streams read every event, and refuse one that is not JSON: see the Anthropic stream tests).
    assert.equal(translator.event(event('{not json')).text, 'data: {not json\n\n');
    assert.equal(translator.event(event('{not json, "error"')).error?.code, 'upstream_invalid_response');
    const upstreamFailure = translator.event(event('{"error":{"message":"The server had an error","type":"server_error"}}'));
    assert.equal(upstreamFailure.error?.message, 'The server had an error');
  });
});

describe('openai response', () => {
  it('reads an answer whole, with its usage as the one normalised usage; the bytes are what the client gets', () => {
    const body = Buffer.from('\n\n{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5,"prompt_tokens_details":{"cached_tokens":1}},"system_fingerprint":"fp"}');
    const answer = chatTarget.parseResponse(body);
    assert.equal(answer.id, 'x');
    assert.deepEqual(chatTarget.usage(answer), { input: 2, output: 2, cacheRead: 1, cacheWrite: 0, cacheWrite1h: 0, reasoning: 0 });
    assert.equal(route.translation.identity, true, 'passed through: the client gets these very bytes');
  });

  it('refuses (502) an answer cut short, even one that starts like a completion', () => {
    // A content-length shorter than the JSON: the bytes read are the start of a completion.
    for (const text of ['{"choices": [', '{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hel', '{"choices":[]}  {']) {
      assert.throws(
        () => chatTarget.parseResponse(Buffer.from(text)),
        (err: unknown) => err instanceof GatewayError && err.status === 502 && err.code === 'upstream_invalid_response',
        text,
      );
    }
  });
  it('refuses a body that is not a completion with a 502', () => {
    for (const text of ['<html>oops</html>', '{"no":"choices"}', '']) {
      assert.throws(() => chatTarget.parseResponse(Buffer.from(text)), (err: unknown) => err instanceof GatewayError && err.status === 502);
    }
  });
});

describe('upstream errors', () => {
  it('reads OpenAI, Anthropic, bare-string and plain-text error bodies', () => {
    assert.deepEqual(parseUpstreamError(Buffer.from('{"error":{"message":"m","type":"t","param":"p","code":"c"}}')), { message: 'm', type: 't', code: 'c', param: 'p' });
    assert.deepEqual(parseUpstreamError(Buffer.from('{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}')), { message: 'Overloaded', type: 'overloaded_error', code: null, param: null });
    // Anthropic's thread refusals keep their code (its SDK recovers by it); no other detail becomes one.
    assert.equal(parseUpstreamError(Buffer.from('{"type":"error","error":{"type":"not_found_error","message":"m","details":{"error_code":"thread_not_found"}}}')).code, 'thread_not_found');
    assert.equal(parseUpstreamError(Buffer.from('{"type":"error","error":{"type":"invalid_request_error","message":"m","details":{"error_code":"anything_a_provider_says"}}}')).code, null);
    assert.equal(parseUpstreamError(Buffer.from('{"error":"model not found"}')).message, 'model not found');
    assert.equal(parseUpstreamError(Buffer.from('Failed to deserialize the JSON body')).message, 'Failed to deserialize the JSON body');
    assert.equal(parseUpstreamError(Buffer.from('<html><body>502</body></html>')).message, null);
  });

  it('turns a rejected provider key into 500 provider_auth_failed without any fragment of the key', () => {
    const body = Buffer.from('{"error":{"message":"Incorrect API key provided: sk-REALK***ab12. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}');
    for (const status of [401, 403]) {
      const error = upstreamError(status, body, {}, 'sk-REALKEY-ab12');
      assert.equal(error.status, 500);
      assert.equal(error.code, 'provider_auth_failed');
      assert.doesNotMatch(JSON.stringify(error.toBody()) + (error.logDetail ?? ''), /REALK|ab12/);
    }
  });

  it('keeps the status, message and retry-after of other errors', () => {
    const error = upstreamError(429, Buffer.from('{"error":{"message":"Rate limit reached","type":"tokens","param":null,"code":"rate_limit_exceeded"}}'), { 'retry-after': '7' }, 'sk-x');
    assert.equal(error.status, 429);
    assert.deepEqual(error.toBody(), { error: { message: 'Rate limit reached', type: 'tokens', param: null, code: 'rate_limit_exceeded' } });
    assert.deepEqual(error.headers, { 'retry-after': '7' });
    const anthropic529 = upstreamError(529, Buffer.from('{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'), {}, 'k');
    assert.equal(anthropic529.status, 529);
    assert.equal(anthropic529.type, 'overloaded_error');
    const html = upstreamError(503, Buffer.from('<html>bad gateway</html>'), {}, 'k');
    assert.equal(html.message, 'The provider answered with status 503.');
  });

  it('redacts the real key and masked key echoes from any upstream message', () => {
    assert.equal(redactKey('your key sk-abc123 is bad', 'sk-abc123'), 'your key [redacted] is bad');
    assert.equal(redactKey('Your api key: ****cd15 is invalid', 'zzzz'), 'Your api key: [redacted] is invalid');
  });

  it("redacts a real key cut short or masked in a provider's message: its start and a mask, the key less its last character, its secret part alone", () => {
    const key = 'sk-REALKEY-abcdefghijklmnop1234';
    for (const echoed of ['sk-REALKEY-abcdefghijklmnop123', 'sk-REALKEY-abcdefghi...', 'sk-REA...1234', 'sk-REALKEY-abc…1234', 'sk-REALKEYXXXXXXXXXX1234', 'REALKEY-abcdefghijklmnop1234', 'abcdefghijklmnop1234', 'REALKEY-abcdefghij***1234']) {
      assert.equal(redactMessage(`Invalid key ${echoed} given.`, key), 'Invalid key [redacted] given.', echoed);
    }
    assert.equal(redactMessage(`keys sk-REALKEY-abcdefghijklmnop12 and abcdefghijklmnop1234.`, ['sk-other-0000000000000000', key]), 'keys [redacted] and [redacted].');
    // Fewer than 16 of its characters in a row, and every other text, stay as they were.
    assert.equal(redactMessage('Rate limit for sk-REALKEY-abc on gpt-4o-mini-2024-07-18: 10000 TPM...', key), 'Rate limit for sk-REALKEY-abc on gpt-4o-mini-2024-07-18: 10000 TPM...');
    const error = upstreamError(429, Buffer.from(JSON.stringify({ error: { message: `Rate limit reached for key REALKEY-abcdefghijklmnop123 in org x.`, type: 'requests', code: null } })), {}, key);
    assert.equal(error.message, 'Rate limit reached for key [redacted] in org x.');
    // A mask other than stars only with the key's end after it: these are text.
    assert.equal(redactMessage('Install sk-learn... then retry; see .../sk-proj...', key), 'Install sk-learn... then retry; see .../sk-proj...');
  });

  it("redacts 40,000 pieces of a key in a provider's message in time linear in it (one answer must not hold every tenant)", () => {
    const key = 'sk-proj-REALKEYabcdefghijklmnopqrstuvwxyz0123456789';
    const piece = key.slice(10, 26);
    const started = performance.now();
    const message = `${piece} `.repeat(40_000);
    assert.equal(redactMessage(message, key), '[redacted] '.repeat(40_000));
    const mixed = `${key.slice(0, 30)}…wxyz ${piece.slice(0, 15)} `.repeat(20_000);
    assert.equal(redactMessage(mixed, [key, 'sk-another-key-0000000000000000']), `[redacted] ${piece.slice(0, 15)} `.repeat(20_000));
    // Quadratic, 40,000 pieces took 98 s; linear, tens of milliseconds. Loose on purpose.
    assert.ok(performance.now() - started < 3000, `${Math.round(performance.now() - started)} ms`);
  });
});

describe('redaction of masked keys, in time linear in the text', () => {
  it('scrubs 80,000 characters a provider may echo (stars, sk- over and over) as it scrubs a short text', () => {
    // Quadratic, the stars alone took ~10 s (blocking the event loop); linear, milliseconds. The
    // bound is loose on purpose: it tells the two apart on any machine.
    const started = performance.now();
    const stars = '*'.repeat(80_000);
    assert.equal(redactKey(`role ${stars} is invalid`, 'zzzz'), `role ${stars} is invalid`);
    assert.equal(redactKey(`${stars}ab`, 'zzzz'), '[redacted]');
    const prefixes = 'sk-'.repeat(27_000);
    assert.equal(redactKey(prefixes, 'zzzz'), prefixes);
    assert.equal(redactKey(`${prefixes}***wjh3`, 'zzzz').endsWith('[redacted]'), true);
    assert.equal(redactKey(`sk-${stars}`, 'zzzz'), '[redacted]');
    assert.equal(redactKey('key sk-VKMIs***wjh3 and ****cd15', 'zzzz'), 'key [redacted] and [redacted]');
    assert.ok(performance.now() - started < 3000, `${Math.round(performance.now() - started)} ms`);
  });
});

describe('redaction does not eat ordinary text', () => {
  it('keeps markdown emphasis and other asterisks', () => {
    assert.equal(redactKey('Use ***bold*** formatting, 2 * 3 = 6', 'sk-none-here'), 'Use ***bold*** formatting, 2 * 3 = 6');
    assert.equal(redactKey('Incorrect API key provided: sk-proj-****abcd.', 'zzzz'), 'Incorrect API key provided: [redacted].');
  });
});

describe('mock provider', () => {
  it('answers a path it does not serve with the gateway\'s own 404 (not_found), whatever the query', async () => {
    const answer = mock.local?.handle('POST', '/v1/nope?api-version=2024-06-01', Buffer.from('{}'));
    assert.equal(answer?.status, 404);
    const body: unknown = JSON.parse(Buffer.concat(await (answer?.body.toArray() ?? [])).toString('utf8'));
    assert.deepEqual(body, {
      error: { message: 'Unknown path: POST /v1/nope. The mock provider serves POST /chat/completions and GET /models.', type: 'not_found_error', param: null, code: 'not_found' },
    });
  });
});

describe('the provider registry', () => {
  it('routes every client API to every provider, at its own base URL and at an operator\'s (where only its first API is assumed)', () => {
    const fresh = createRouter({ anthropicDefaultMaxTokens: 4096, now: () => 1 });
    for (const provider of Object.values(registry)) {
      for (const speaks of [provider.apis, provider.apis.slice(0, 1)]) {
        for (const client of [chatClient, messagesClient, responsesClient] as ClientApi<ApiTypes>[]) {
          // A provider listing first an API the hub does not translate into would fail here, not at a client's request.
          assert.doesNotThrow(() => fresh.route(client, speaks), `${provider.name} speaking ${speaks.join(', ')}, a ${client.name} client`);
        }
      }
    }
  });
});

