import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GatewayError } from '../src/errors.js';
import type { ChatRequest } from '../src/formats/chat/types.js';
import { flattenTextParts, deepseek } from '../src/providers/deepseek.js';
import { openai, passThroughStream, upstreamBody } from '../src/providers/openai.js';
import { parseUpstreamError, redactKey, upstreamError } from '../src/upstream/errors.js';

function prepared(raw: string, provider = openai): { body: string; headers: Record<string, string> } {
  const call = provider.prepare({ request: JSON.parse(raw) as ChatRequest, raw: Buffer.from(raw), apiKey: 'sk-real' });
  return { body: call.body.toString(), headers: call.headers };
}

describe('openai request', () => {
  it('forwards the client bytes unchanged when nothing must change', () => {
    const raw = '{ "model":"gpt-4o",  "messages":[{"role":"user","content":"hi"}], "temperature": 0.5 }';
    const call = openai.prepare({ request: JSON.parse(raw) as ChatRequest, raw: Buffer.from(raw), apiKey: 'sk-real' });
    assert.ok(Buffer.isBuffer(call.body));
    assert.equal(call.body.toString(), raw);
    assert.deepEqual(call.headers, { authorization: 'Bearer sk-real' });
  });

  it('asks for stream usage by splicing stream_options into the original bytes', () => {
    const raw = ' {"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}';
    const { body } = prepared(raw);
    assert.equal(body, ' {"stream_options":{"include_usage":true},"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}');
    assert.deepEqual(JSON.parse(body).stream_options, { include_usage: true });
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

  it('does not add stream_options to a non-stream request', () => {
    const raw = '{"model":"m","stream":false,"messages":[{"role":"user","content":"hi"}]}';
    const rawBytes = Buffer.from(raw);
    assert.equal(upstreamBody(JSON.parse(raw) as ChatRequest, rawBytes, null), rawBytes);
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

describe('openai stream pass-through', () => {
  const event = (data: string) => ({ event: undefined, data });
  const chunk = '{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}],"usage":null}';
  const usageChunk = '{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}';
  const finalWithUsage = '{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}';

  it('passes chunks through byte for byte', () => {
    const [out] = passThroughStream({ clientWantsUsage: false, assemble: true }).event(event(chunk));
    assert.equal(out?.kind, 'chunk');
    assert.equal(out?.kind === 'chunk' ? out.data : null, chunk);
  });

  it('holds the usage chunk back from a client that did not ask for it, but still hands it to the log', () => {
    const [out] = passThroughStream({ clientWantsUsage: false, assemble: true }).event(event(usageChunk));
    assert.ok(out?.kind === 'chunk');
    assert.equal(out.data, null);
    assert.deepEqual((out.chunk as { usage: unknown }).usage, { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 });
    const [shown] = passThroughStream({ clientWantsUsage: true, assemble: true }).event(event(usageChunk));
    assert.equal(shown?.kind === 'chunk' ? shown.data : null, usageChunk);
  });

  it('strips usage from a final content chunk (DeepSeek style) for a client that did not ask', () => {
    const [out] = passThroughStream({ clientWantsUsage: false, assemble: true }).event(event(finalWithUsage));
    assert.ok(out?.kind === 'chunk' && out.data !== null);
    assert.equal(JSON.parse(out.data).usage, undefined);
    assert.equal(JSON.parse(out.data).choices[0].finish_reason, 'stop');
  });

  it('without a log to assemble, parses only the chunks that matter (usage, errors) and still sees the finish', () => {
    const fast = passThroughStream({ clientWantsUsage: false, assemble: false });
    const [plain] = fast.event(event(chunk));
    assert.deepEqual(plain, { kind: 'chunk', chunk: null, data: chunk, finish: false });
    const quoted = '{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"say \\"usage\\": {1} or \\"error\\""},"finish_reason":null}]}';
    assert.deepEqual(fast.event(event(quoted))[0], { kind: 'chunk', chunk: null, data: quoted, finish: false }, 'quoted words in content are not keys');
    const [last] = fast.event(event(finalWithUsage));
    assert.ok(last?.kind === 'chunk' && last.chunk !== null && last.finish === true);
    assert.equal(JSON.parse(last.data ?? '{}').usage, undefined, 'usage still held back');
    const [held] = fast.event(event(usageChunk));
    assert.ok(held?.kind === 'chunk' && held.data === null && held.chunk !== null);
    const [finishOnly] = fast.event(event('{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}'));
    assert.ok(finishOnly?.kind === 'chunk' && finishOnly.finish === true);
    assert.equal(fast.event(event('{"error":{"message":"boom","type":"server_error"}}'))[0]?.kind, 'error');
  });

  it('turns [DONE], invalid JSON and upstream error events into done / error outputs', () => {
    const translator = passThroughStream({ clientWantsUsage: false, assemble: true });
    assert.deepEqual(translator.event(event('[DONE]')), [{ kind: 'done' }]);
    const [bad] = translator.event(event('{not json'));
    assert.ok(bad?.kind === 'error' && bad.error.code === 'upstream_invalid_response');
    const [upstreamFailure] = translator.event(event('{"error":{"message":"The server had an error","type":"server_error"}}'));
    assert.ok(upstreamFailure?.kind === 'error');
    assert.equal(upstreamFailure.error.message, 'The server had an error');
  });
});

describe('openai response', () => {
  it('returns the upstream bytes, its usage as the provider sent it, and the parsed completion', () => {
    const body = Buffer.from('\n\n{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5,"prompt_tokens_details":{"cached_tokens":1}},"system_fingerprint":"fp"}');
    const out = openai.translateResponse(body);
    assert.equal(out.body, body);
    assert.deepEqual(out.usage, { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5, prompt_tokens_details: { cached_tokens: 1 } });
    assert.equal(out.completion()?.id, 'x');
  });

  it('refuses (502) an answer cut short, even one that starts like a completion', () => {
    // A content-length shorter than the JSON: the bytes read are the start of a completion.
    for (const text of ['{"choices": [', '{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hel', '{"choices":[]}  {']) {
      assert.throws(
        () => openai.translateResponse(Buffer.from(text)),
        (err: unknown) => err instanceof GatewayError && err.status === 502 && err.code === 'upstream_invalid_response',
        text,
      );
    }
  });
  it('refuses a body that is not a completion with a 502', () => {
    for (const text of ['<html>oops</html>', '{"no":"choices"}', '']) {
      assert.throws(() => openai.translateResponse(Buffer.from(text)), (err: unknown) => err instanceof GatewayError && err.status === 502);
    }
  });
});

describe('upstream errors', () => {
  it('reads OpenAI, Anthropic, bare-string and plain-text error bodies', () => {
    assert.deepEqual(parseUpstreamError(Buffer.from('{"error":{"message":"m","type":"t","param":"p","code":"c"}}')), { message: 'm', type: 't', code: 'c', param: 'p' });
    assert.deepEqual(parseUpstreamError(Buffer.from('{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}')), { message: 'Overloaded', type: 'overloaded_error', code: null, param: null });
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
});

describe('redaction does not eat ordinary text', () => {
  it('keeps markdown emphasis and other asterisks', () => {
    assert.equal(redactKey('Use ***bold*** formatting, 2 * 3 = 6', 'sk-none-here'), 'Use ***bold*** formatting, 2 * 3 = 6');
    assert.equal(redactKey('Incorrect API key provided: sk-proj-****abcd.', 'zzzz'), 'Incorrect API key provided: [redacted].');
  });
});
