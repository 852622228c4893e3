/**
 * Translations between APIs compose: a chain (a client API → chat → Anthropic) is a composition,
 * not new code. The router picks none when the provider speaks the client's API, and the hub
 * otherwise.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { GatewayError } from '../src/errors.js';
import type { ApiTypes } from '../src/formats/api.js';
import { chatClient, chatTarget, type ChatTypes } from '../src/formats/chat/index.js';
import type { ChatCompletion, ChatCompletionChunk, ChatRequest } from '../src/formats/chat/types.js';
import { chatToMessages, messagesTarget, type MessagesTypes } from '../src/formats/messages/index.js';
import type { AnthropicResponse, MessagesEvent } from '../src/formats/messages/types.js';
import { createRouter } from '../src/formats/router.js';
import type { StreamItem } from '../src/formats/stream.js';
import { compose, identity, stateless, type Translation, type WayBack } from '../src/formats/translation.js';

/** A toy client API, to show a chain: requests say `say`, answers and events carry `said`. */
interface ShoutTypes extends ApiTypes {
  request: { model: string; say: string };
  response: { said: string };
  event: { said: string };
}

const shoutToChat: Translation<ShoutTypes, ChatTypes> = stateless({
  request: (request) => ({ model: request.model, messages: [{ role: 'user', content: request.say }] }),
  response: (response) => ({ said: String(response.choices[0]?.message.content).toUpperCase() }),
  stream: () => (item) => {
    if (item.kind !== 'event') return [item];
    const content = item.event.choices[0]?.delta.content;
    return typeof content === 'string' && content !== '' ? [{ kind: 'event', event: { said: content.toUpperCase() } }] : [];
  },
});

const chatToAnthropic = chatToMessages({ defaultMaxTokens: 100, now: () => 1730000000 });

const message: AnthropicResponse = {
  id: 'msg_1',
  type: 'message',
  role: 'assistant',
  model: 'claude-x',
  content: [{ type: 'text', text: 'hello there' }],
  stop_reason: 'end_turn',
  stop_sequence: null,
  usage: { input_tokens: 3, output_tokens: 2 },
};

describe('translations', () => {
  it('identity passes requests, answers and stream items unchanged', () => {
    const same = identity<ChatTypes>();
    const request: ChatRequest = { model: 'm', messages: [{ role: 'user', content: 'x' }] };
    assert.equal(same.identity, true);
    const exchange = same.exchange(request);
    assert.equal(exchange.request, request);
    const item: StreamItem<ChatCompletionChunk> = { kind: 'end' };
    assert.deepEqual(exchange.stream({ promptTokens: 1, answerId: 'gw1' })(item), [item]);
  });

  it('composing with identity gives the other translation itself', () => {
    assert.equal(compose(identity<ChatTypes>(), chatToAnthropic), chatToAnthropic);
    assert.equal(compose(chatToAnthropic, identity<MessagesTypes>()), chatToAnthropic);
  });

  it('a chain client → chat → Anthropic translates requests forward and answers back, with no code of its own', () => {
    const chain = compose(shoutToChat, chatToAnthropic);
    assert.equal(chain.identity, false);
    const exchange = chain.exchange({ model: 'claude-x', say: 'hi' });
    assert.deepEqual(exchange.request, { model: 'claude-x', max_tokens: 100, messages: [{ role: 'user', content: 'hi' }] });
    assert.deepEqual(exchange.response(message, { promptTokens: 1, answerId: 'gw1' }), { said: 'HELLO THERE' });
  });

  it('a chain translates a stream event by event, in order, and passes its end and errors through', () => {
    const chain = compose(shoutToChat, chatToAnthropic).exchange({ model: 'claude-x', say: 'hi' }).stream({ promptTokens: 1, answerId: 'gw1' });
    const events: MessagesEvent[] = [
      { type: 'message_start', message: { id: 'msg_1', model: 'claude-x', usage: { input_tokens: 3 } } },
      { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } },
      { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'hel' } },
      { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'lo' } },
      { type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 2 } },
      { type: 'message_stop' },
    ];
    const out = events.flatMap((event) => chain({ kind: 'event', event }));
    assert.deepEqual(out, [
      { kind: 'event', event: { said: 'HEL' } },
      { kind: 'event', event: { said: 'LO' } },
    ]);
    assert.deepEqual(chain({ kind: 'end' }), [{ kind: 'end' }]);
  });

  it("a refusal further down a chain names what the client sent, and keeps the rest of the error (its headers, log detail, whether it may be tried again)", () => {
    const outer: Translation<ShoutTypes, ChatTypes> = {
      identity: false,
      exchange: (request) => ({ ...shoutToChat.exchange(request), clientParam: (param) => (param === 'messages[0].content' ? 'say' : null) }),
    };
    const refusing: Translation<ChatTypes, MessagesTypes> = {
      identity: false,
      exchange: () => {
        throw new GatewayError(400, '"messages[0].content" is too long.', { code: 'too_long', param: 'messages[0].content', headers: { 'x-why': 'length' }, logDetail: 'at 9 MB', retryable: true });
      },
    };
    assert.throws(
      () => compose(outer, refusing).exchange({ model: 'claude-x', say: 'hi' }),
      (err: unknown) => {
        assert.ok(err instanceof GatewayError);
        assert.deepEqual(
          { status: err.status, message: err.message, type: err.type, code: err.code, param: err.param, headers: err.headers, logDetail: err.logDetail, retryable: err.retryable },
          { status: 400, message: '"say" is too long.', type: 'invalid_request_error', code: 'too_long', param: 'say', headers: { 'x-why': 'length' }, logDetail: 'at 9 MB', retryable: true },
        );
        return true;
      },
    );
  });
});

describe('the way back of an exchange', () => {
  it("holds neither the hub's request nor the target's: a conversation dies once sent, not with its answer", async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const hubRequests: Array<WeakRef<object>> = [];
    const recorded: Translation<ShoutTypes, ChatTypes> = {
      ...shoutToChat,
      exchange(request) {
        const exchange = shoutToChat.exchange(request);
        hubRequests.push(new WeakRef(exchange.request));
        return exchange;
      },
    };
    // As the gateway does: the request is sent, and only the way back is kept.
    const exchangeOnce = (): { back: WayBack<ShoutTypes, MessagesTypes>; sent: WeakRef<object> } => {
      const { request, ...back } = compose(recorded, chatToAnthropic).exchange({ model: 'claude-x', say: 'x'.repeat(100_000) });
      return { back, sent: new WeakRef(request) };
    };
    const { back, sent } = exchangeOnce();
    // A WeakRef's target lives to the end of the job that made it: collected in a later one.
    await new Promise((resolve) => setImmediate(resolve));
    gc();
    assert.ok(hubRequests.length === 1 && sent.deref() === undefined, "the target's request is kept");
    assert.ok(hubRequests[0]?.deref() === undefined, "the hub's request is kept");
    assert.deepEqual(back.response(message, { promptTokens: 1, answerId: 'gw1' }), { said: 'HELLO THERE' });
    assert.deepEqual(back.stream({ promptTokens: 1, answerId: 'gw1' })({ kind: 'end' }), [{ kind: 'end' }]);
  });
});

describe('the router', () => {
  const router = createRouter({ anthropicDefaultMaxTokens: 100, now: () => 1 });

  it('passes through when the provider speaks the client\'s API', () => {
    const route = router.route(chatClient, ['chat']);
    assert.equal(route.translation.identity, true);
    assert.equal(route.target, chatTarget);
  });

  it('translates through the hub otherwise, to the first API the provider speaks', () => {
    const route = router.route(chatClient, ['messages']);
    assert.equal(route.translation.identity, false);
    assert.equal(route.target.name, messagesTarget.name);
    const exchange = route.translation.exchange({ model: 'claude-x', messages: [{ role: 'user', content: 'x' }] } satisfies ChatRequest);
    assert.deepEqual(exchange.request, { model: 'claude-x', max_tokens: 100, messages: [{ role: 'user', content: 'x' }] });
    const answer = exchange.response(message, { promptTokens: 1, answerId: 'gw1' }) as ChatCompletion;
    assert.equal(answer.choices[0]?.message.content, 'hello there');
  });
});
