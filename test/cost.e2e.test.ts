/**
 * Cost in USD end to end: `cost_usd` in the log and a header, metrics by key and model, unpriced
 * models (warned once, counted), PRICES_FILE (validated at start, reloaded with the keys), budgets
 * in USD that survive a restart, the usage route (each key sees only its own), with workers too,
 * and `npm run usage` over the log the gateway wrote.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import http from 'node:http';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { gzipSync } from 'node:zlib';
import { endWithFile } from './support/children.js';
import { ROOT, runGatewayUntilExit, startGateway, tempDir, waitFor, waitForEntry, type GatewayProcess } from './support/gateway.js';
import { chat, messages, request } from './support/http.js';
import { startAnthropicMock, type AnthropicMock } from './support/mock-anthropic.js';
import { startOpenAIMock, type MockUpstream } from './support/mock-openai.js';

const OPENAI_KEY = 'sk-proj-costKEY-1111';
const DEEPSEEK_KEY = 'sk-costKEY-deepseek-2222';
const ANTHROPIC_KEY = 'sk-ant-costKEY-3333';
const ask = (model: string, extra: Record<string, unknown> = {}) => ({ model, messages: [{ role: 'user', content: 'hi' }], ...extra });
/** The mocks' usage: OpenAI 11 prompt and 7 completion tokens; Anthropic 25 input, 5 read from the cache, 12 output. */
const GPT_4O_MINI = Number(((11 * 0.15 + 7 * 0.6) / 1e6).toFixed(10));
const SONNET_4_5 = Number(((25 * 3 + 5 * 0.3 + 12 * 15) / 1e6).toFixed(10));

let openai: MockUpstream;
let deepseek: MockUpstream;
let anthropic: AnthropicMock;

before(async () => {
  openai = await startOpenAIMock({ flavor: 'openai', apiKey: OPENAI_KEY });
  deepseek = await startOpenAIMock({ flavor: 'deepseek', apiKey: DEEPSEEK_KEY });
  anthropic = await startAnthropicMock({ apiKey: ANTHROPIC_KEY });
});
after(async () => {
  await openai?.close();
  await deepseek?.close();
  await anthropic?.close();
});

function metric(text: string, line: RegExp): number | null {
  const found = text.split('\n').find((each) => line.test(each));
  return found === undefined ? null : Number(found.split(' ').at(-1));
}

describe('cost per request', () => {
  let gateway: GatewayProcess;
  let pricesFile: string;
  before(async () => {
    // The price file beside keys.json, both watched.
    const dir = tempDir();
    pricesFile = join(dir, 'prices.json');
    writeFileSync(pricesFile, JSON.stringify({ prices: { openai: { 'gpt-4.1-nano': { input: 0.05, output: 0.2, source: 'our contract', checked: '2026-11-30' } } } }));
    const keys = {
      virtual_keys: {
        vk_team_a: { name: 'team-a', provider: 'openai', api_key: OPENAI_KEY, base_url: openai.baseUrl, rate_limit: { requests_per_minute: 100 } },
        vk_team_b: { name: 'team-b', provider: 'anthropic', api_key: ANTHROPIC_KEY, base_url: anthropic.baseUrl, budget: { max_usd: 10, max_tokens: 1000000, period: 'day' } },
        vk_deepseek: { name: 'old-models', provider: 'deepseek', api_key: DEEPSEEK_KEY, base_url: deepseek.baseUrl },
      },
    };
    writeFileSync(join(dir, 'keys.json'), JSON.stringify(keys));
    gateway = await startGateway({ keys: '{}', env: { LOG_CONSOLE: 'off', KEYS_FILE: join(dir, 'keys.json'), PRICES_FILE: pricesFile, GATEWAY_HOST: '127.0.0.1' } });
  });
  after(async () => {
    await gateway?.stop();
  });

  it('logs cost_usd from the usage and the price of the model that served, and sends it in a header', async () => {
    const reply = await chat(gateway.url, 'vk_team_a', ask('gpt-4o-mini'));
    assert.equal(reply.status, 200);
    assert.equal(reply.headers['x-gateway-cost-usd'], String(GPT_4O_MINI));
    const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
    assert.equal(entry.cost_usd, GPT_4O_MINI);
  });

  it('prices a stream after it ends: in the log, not in a header that went before the usage was known', async () => {
    const reply = await messages(gateway.url, 'vk_team_b', { model: 'claude-sonnet-4-5', max_tokens: 100, stream: true, messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(reply.status, 200);
    assert.equal(reply.headers['x-gateway-cost-usd'], undefined);
    const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
    assert.equal(entry.cost_usd, SONNET_4_5, 'cache reads at their rate');
  });

  it('uses PRICES_FILE over the built-in table', async () => {
    const reply = await chat(gateway.url, 'vk_team_a', ask('gpt-4.1-nano'));
    assert.equal(reply.headers['x-gateway-cost-usd'], String(Number(((11 * 0.05 + 7 * 0.2) / 1e6).toFixed(10))));
  });

  it('logs null for a model without a price, warns once per model, counts it in metrics, and prices it after PRICES_FILE adds it and the keys reload', async () => {
    const first = await chat(gateway.url, 'vk_deepseek', ask('deepseek-chat'));
    const second = await chat(gateway.url, 'vk_deepseek', ask('deepseek-chat'));
    assert.equal(first.status, 200);
    assert.equal(first.headers['x-gateway-cost-usd'], undefined);
    assert.equal((await waitForEntry(gateway.logFile, String(second.headers['x-request-id']))).cost_usd, null);
    assert.equal(gateway.stderr().match(/no price for deepseek model "deepseek-chat"/g)?.length, 1, gateway.stderr());
    // A name a client chose is quoted: it cannot write lines of its own to stderr.
    await chat(gateway.url, 'vk_deepseek', ask('deepseek-chat\nllm-gateway: forged'));
    await waitFor(() => /no price for deepseek model "deepseek-chat\\nllm-gateway: forged"/.test(gateway.stderr()), 'the quoted warning');
    assert.doesNotMatch(gateway.stderr(), /^llm-gateway: forged/m);
    const scraped = (await request(gateway.url, '/metrics', { method: 'GET' })).text;
    assert.equal(metric(scraped, /^llm_gateway_unpriced_requests_total\{provider="deepseek",model="deepseek-chat"\}/), 2);

    writeFileSync(pricesFile, JSON.stringify({ prices: { deepseek: { 'deepseek-chat': { input: 0.28, cache_read: 0.028, output: 0.42 } } } }));
    gateway.child.kill('SIGHUP');
    await waitFor(() => /keys reloaded \(SIGHUP\): 3 virtual keys and prices from/.test(gateway.stderr()), 'the reload');
    const priced = await chat(gateway.url, 'vk_deepseek', ask('deepseek-chat'));
    assert.equal(priced.headers['x-gateway-cost-usd'], String(Number(((11 * 0.28 + 7 * 0.42) / 1e6).toFixed(10))));

    writeFileSync(pricesFile, JSON.stringify({ prices: { deepseek: { 'deepseek-chat': { input: 'cheap', output: 0.42 } } } }));
    gateway.child.kill('SIGHUP');
    await waitFor(() => /keys NOT reloaded \(SIGHUP\); still using the previous 3 and their prices:\n.*prices\.json: deepseek "deepseek-chat": "input" must be a number/.test(gateway.stderr()), 'the refused reload');
    const still = await chat(gateway.url, 'vk_deepseek', ask('deepseek-chat'));
    assert.equal(still.headers['x-gateway-cost-usd'], priced.headers['x-gateway-cost-usd'], 'the prices in use stay');
    // The change is seen too, and said once however often the folder changes, though both files'
    // folder is the same (the change above may have been seen before SIGHUP or, refused already, not at all).
    await new Promise((resolve) => setTimeout(resolve, 300));
    const watched = () => gateway.stderr().match(/keys NOT reloaded \((?:file|prices) changed\)/g)?.length ?? 0;
    const before = watched();
    writeFileSync(pricesFile, JSON.stringify({ prices: { deepseek: { 'deepseek-chat': { input: 'dear', output: 0.42 } } } }));
    await waitFor(() => watched() > before, 'the refused reload on change');
    writeFileSync(join(dirname(pricesFile), 'unrelated.txt'), 'x');
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(watched(), before + 1, gateway.stderr());
  });

  it('adds up cost per provider, key name and served model in llm_gateway_cost_usd_total, never naming a key', async () => {
    const scraped = (await request(gateway.url, '/metrics', { method: 'GET' })).text;
    assert.match(scraped, /# TYPE llm_gateway_cost_usd_total counter/);
    assert.equal(metric(scraped, /^llm_gateway_cost_usd_total\{provider="anthropic",key_name="team-b",model="claude-sonnet-4-5"\}/), SONNET_4_5);
    assert.equal(metric(scraped, /^llm_gateway_cost_usd_total\{provider="openai",key_name="team-a",model="gpt-4o-mini"\}/), GPT_4O_MINI, 'its one gpt-4o-mini request');
    assert.doesNotMatch(scraped, /vk_team/);
  });

  it('GET /v1/usage tells a key its own spend, budget and rate limits, and nothing about other keys', async () => {
    const a = await request(gateway.url, '/v1/usage', { method: 'GET', headers: { authorization: 'Bearer vk_team_a' } });
    assert.equal(a.status, 200);
    const own = a.json;
    assert.equal(own.object, 'usage');
    assert.equal(own.key_name, 'team-a');
    assert.equal(own.period, 'month');
    assert.match(own.period_start, /^\d{4}-\d{2}-01T00:00:00\.000Z$/);
    assert.equal(own.requests, 2);
    assert.deepEqual(own.usage, { input_tokens: 22, output_tokens: 14, cache_read_tokens: 0, cache_write_tokens: 0, reasoning_tokens: 0, total_tokens: 36 });
    assert.equal(own.cost_usd, Number((GPT_4O_MINI + (11 * 0.05 + 7 * 0.2) / 1e6).toFixed(10)));
    assert.equal(own.budget, null);
    assert.equal(own.rate_limit.requests_per_minute.limit, 100);
    assert.ok(own.rate_limit.requests_per_minute.remaining >= 97);
    assert.doesNotMatch(a.text, /team-b|old-models|vk_/);

    const b = await request(gateway.url, '/v1/usage', { method: 'GET', headers: { 'x-api-key': 'vk_team_b', 'anthropic-version': '2023-06-01' } });
    assert.equal(b.json.key_name, 'team-b');
    assert.equal(b.json.period, 'day', 'the period of its budget');
    assert.equal(b.json.requests, 1);
    assert.equal(b.json.cost_usd, SONNET_4_5);
    assert.deepEqual(b.json.budget, { max_tokens: 1000000, max_usd: 10, remaining_tokens: 1000000 - 42, remaining_usd: Number((10 - SONNET_4_5).toFixed(10)) });
    assert.equal(b.json.rate_limit, null);
    assert.doesNotMatch(b.text, /team-a|old-models/);

    const old = await request(gateway.url, '/usage', { method: 'GET', headers: { authorization: 'Bearer vk_deepseek' } });
    assert.equal(old.json.unpriced_requests, 3);

    const none = await request(gateway.url, '/v1/usage', { method: 'GET' });
    assert.equal(none.status, 401);
    assert.equal(none.json.error.code, 'missing_api_key');
    assert.match(none.json.error.message, /'Authorization: Bearer <virtual key>' or as 'x-api-key: <virtual key>'/, 'both ways this route takes');
    const wrong = await request(gateway.url, '/v1/usage', { method: 'GET', headers: { 'x-api-key': 'vk_team_c' } });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.json.type, 'error', "Anthropic's error shape for an Anthropic-style request");
    const post = await request(gateway.url, '/v1/usage', { method: 'POST', headers: { authorization: 'Bearer vk_team_a' } });
    assert.equal(post.status, 405);
  });
});

describe('budgets in USD', () => {
  it('refuse with 429 budget_exceeded saying the spend and the limit, and hold across a restart', async () => {
    const dir = tempDir();
    const stateFile = join(dir, 'state.json');
    // Two gpt-4o-mini answers cost $0.0000117: the third request finds the budget spent.
    const keys = {
      virtual_keys: {
        vk_usd: { provider: 'openai', api_key: OPENAI_KEY, base_url: openai.baseUrl, budget: { max_usd: 0.00001, period: 'total' } },
        vk_mapped: { provider: 'openai', api_key: OPENAI_KEY, base_url: openai.baseUrl, model_map: { '*': 'my-llama' }, budget: { max_usd: 1, period: 'total' } },
      },
    };
    const env = { LOG_CONSOLE: 'off', STATE_FILE: stateFile };
    let gateway = await startGateway({ keys, env });
    try {
      assert.equal((await chat(gateway.url, 'vk_usd', ask('gpt-4o-mini'))).status, 200);
      assert.equal((await chat(gateway.url, 'vk_usd', ask('gpt-4o-mini'))).status, 200);
      const calls = openai.requests.length;
      const refused = await chat(gateway.url, 'vk_usd', ask('gpt-4o-mini'));
      assert.equal(refused.status, 429);
      assert.equal(refused.json.error.code, 'budget_exceeded');
      assert.equal(refused.json.error.type, 'insufficient_quota');
      assert.equal(refused.json.error.message, 'This virtual key has used its budget ($0.000012 of $0.00001 spent in total); it does not reset.');
      assert.equal(openai.requests.length, calls, 'the provider was not called');

      const unpriced = await chat(gateway.url, 'vk_usd', ask('gpt-9-preview'));
      assert.equal(unpriced.status, 404, 'a USD budget cannot count a model without a price');
      assert.equal(unpriced.json.error.code, 'model_not_priced');
      assert.match(unpriced.json.error.message, /"gpt-9-preview" has no price/);
      // The model without a price is the one the key's model_map sends the request to: named, beside the one asked for.
      const mapped = await chat(gateway.url, 'vk_mapped', ask('gpt-4o-mini'));
      assert.equal(mapped.status, 404);
      assert.match(mapped.json.error.message, /^The model "my-llama" \(which this virtual key's model_map sends "gpt-4o-mini" to\) has no price/);
    } finally {
      await gateway.stop();
    }
    gateway = await startGateway({ keys, env });
    try {
      const refused = await chat(gateway.url, 'vk_usd', ask('gpt-4o-mini'));
      assert.equal(refused.status, 429, 'the spend was kept');
      assert.match(refused.json.error.message, /\$0\.000012 of \$0\.00001/);
    } finally {
      await gateway.stop();
    }
  });

  it('with workers: the primary keeps the spend every worker reports, and answers the usage route', async () => {
    const gateway = await startGateway({
      keys: { virtual_keys: { vk_w: { name: 'workers', provider: 'openai', api_key: OPENAI_KEY, base_url: openai.baseUrl, budget: { max_usd: 1, period: 'month' } } } },
      env: { LOG_CONSOLE: 'off', GATEWAY_WORKERS: '2', KEYS_WATCH: 'off' },
    });
    try {
      for (let i = 0; i < 4; i++) assert.equal((await chat(gateway.url, 'vk_w', ask('gpt-4o-mini'))).status, 200);
      await waitFor(async () => (await request(gateway.url, '/v1/usage', { method: 'GET', headers: { authorization: 'Bearer vk_w' } })).json.requests === 4, 'the four requests counted');
      const usage = (await request(gateway.url, '/v1/usage', { method: 'GET', headers: { authorization: 'Bearer vk_w' } })).json;
      assert.equal(usage.cost_usd, Number((4 * GPT_4O_MINI).toFixed(10)));
      assert.equal(usage.budget.remaining_usd, Number((1 - 4 * GPT_4O_MINI).toFixed(10)));
    } finally {
      await gateway.stop();
    }
  });
});

describe('what a budget in USD cannot be made to miss', () => {
  it('holds an output reserve for requests that set no output limit: parallel requests cannot all pass a nearly spent budget', async () => {
    // gpt-4o-mini: each request in flight holds 4,096 output tokens ($0.0025): the third finds $0.003 committed.
    const gateway = await startGateway({ keys: { virtual_keys: { vk_par: { provider: 'openai', api_key: OPENAI_KEY, base_url: openai.baseUrl, budget: { max_usd: 0.003, period: 'total' } } } }, env: { LOG_CONSOLE: 'off' } });
    openai.behave(async () => {
      await new Promise((resolve) => setTimeout(resolve, 300));
      return false;
    });
    try {
      const replies = await Promise.all(Array.from({ length: 10 }, () => chat(gateway.url, 'vk_par', ask('gpt-4o-mini'))));
      const served = replies.filter((reply) => reply.status === 200).length;
      assert.ok(served <= 2, `${served} of 10 admitted`);
      // Nothing spent yet: what refuses is what the two in flight hold, which comes back.
      assert.ok(replies.filter((reply) => reply.status === 429).every((reply) => reply.json.error.code === 'budget_held' && reply.headers['retry-after'] === '5'));
    } finally {
      openai.behave(null);
      await gateway.stop();
    }
  });

  it('holds and charges images and files by URL or id at their worth, not their bytes: a stream cut before its usage is not nearly free', async () => {
    const gateway = await startGateway({ keys: { virtual_keys: { vk_media: { provider: 'openai', api_key: OPENAI_KEY, base_url: openai.baseUrl, budget: { max_tokens: 1_000_000, period: 'total' } }, vk_small: { provider: 'openai', api_key: OPENAI_KEY, base_url: openai.baseUrl, budget: { max_tokens: 20_000, period: 'total' } } } }, env: { LOG_CONSOLE: 'off' } });
    let hang!: () => void;
    openai.behave(async ({ res }) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(`data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta: { role: 'assistant', content: 'I see' }, finish_reason: null }] })}\n\n`);
      await new Promise<void>((resolve) => (hang = resolve));
      res.end();
      return true;
    });
    const images = (n: number) => Array.from({ length: n }, (_, i) => ({ type: 'image_url', image_url: { url: `https://example.com/${i}.png` } }));
    // Cut after the first chunk, as the attacker does: the provider bills every image, the gateway never hears how much.
    const cut = (content: unknown[], spell = (body: string): string => body) =>
      new Promise<void>((resolve, reject) => {
        const body = spell(JSON.stringify({ model: 'gpt-4o-mini', max_tokens: 1, stream: true, messages: [{ role: 'user', content }] }));
        const req = http.request(`${gateway.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: 'Bearer vk_media', 'content-type': 'application/json' } }, (res) => {
          res.once('data', () => {
            req.destroy();
            resolve();
          });
        });
        req.on('error', () => {});
        req.end(body);
        setTimeout(() => reject(new Error('no stream')), 5000).unref();
      });
    const spent = async (): Promise<number> => 1_000_000 - (await request(gateway.url, '/v1/usage', { method: 'GET', key: 'vk_media' })).json.budget.remaining_tokens;
    try {
      await cut(images(20)); // 2 KB
      await waitFor(async () => (await spent()) > 0, 'the cut stream charged');
      assert.ok((await spent()) >= 20 * 1600, `${await spent()} tokens charged for 20 images`);
      // However the client spells the type (the provider decodes the escape).
      const plain = await spent();
      await cut(images(20), (body) => body.replaceAll('"type":"image_url"', '"type":"image\\u005furl"'));
      await waitFor(async () => (await spent()) > plain, 'the escaped cut stream charged');
      assert.ok((await spent()) - plain >= 20 * 1600, `${(await spent()) - plain} tokens charged for 20 images spelt with an escape`);
      // A body whose conversation is left as bytes on its way through is counted once its usage is known never to come.
      const before = await spent();
      await cut([{ type: 'text', text: 'x'.repeat(100_000) }, ...images(20)]);
      await waitFor(async () => (await spent()) > before, 'the second cut stream charged');
      assert.ok((await spent()) - before >= 25_000 + 20 * 1600, `${(await spent()) - before} tokens for 100 KB of text and 20 images`);
      // And held while it runs: 20 images in flight leave nothing of 20,000 tokens to a request beside them.
      hang();
      const asked = openai.requests.length;
      const first = chat(gateway.url, 'vk_small', { model: 'gpt-4o-mini', max_tokens: 1, messages: [{ role: 'user', content: images(20) }] });
      await waitFor(async () => openai.requests.length > asked, 'the first request at the provider');
      const beside = await chat(gateway.url, 'vk_small', { model: 'gpt-4o-mini', max_tokens: 1, messages: [{ role: 'user', content: 'hi' }] });
      assert.equal(beside.status, 429, beside.text);
      assert.equal(beside.json.error.code, 'budget_held');
      hang();
      await first;
    } finally {
      hang?.();
      openai.behave(null);
      await gateway.stop();
    }
  });

  it("holds each of a chat request's n answers' output, and charges the prompt of a request its provider had when its client left", async () => {
    const gateway = await startGateway({ keys: { virtual_keys: { vk_n: { provider: 'openai', api_key: OPENAI_KEY, base_url: openai.baseUrl, budget: { max_tokens: 20_000, period: 'total' } }, vk_gone: { provider: 'openai', api_key: OPENAI_KEY, base_url: openai.baseUrl, budget: { max_tokens: 1_000_000, period: 'total' } } } }, env: { LOG_CONSOLE: 'off' } });
    // The provider has the request and has not answered yet.
    const waiting: Array<() => void> = [];
    openai.behave(async () => {
      await new Promise<void>((resolve) => waiting.push(resolve));
      return false;
    });
    try {
      // Four answers of up to 6,000 tokens each hold 24,000: nothing of 20,000 is left to a request beside it.
      const asked = openai.requests.length;
      const first = chat(gateway.url, 'vk_n', ask('gpt-4o-mini', { n: 4, max_tokens: 6000 }));
      await waitFor(() => openai.requests.length > asked, 'the first request at the provider');
      const beside = await chat(gateway.url, 'vk_n', ask('gpt-4o-mini', { max_tokens: 1 }));
      assert.equal(beside.status, 429, beside.text);
      assert.equal(beside.json.error.code, 'budget_held');
      for (const answer of waiting.splice(0)) answer();
      assert.equal((await first).status, 200);
      // A client that leaves while its provider works on a 40 KB prompt (~10,000 tokens): the prompt was read, and is charged.
      const before = openai.requests.length;
      const body = JSON.stringify(ask('gpt-4o-mini', { messages: [{ role: 'user', content: 'x'.repeat(40_000) }] }));
      const req = http.request(`${gateway.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: 'Bearer vk_gone', 'content-type': 'application/json' } });
      req.on('error', () => {});
      req.end(body);
      await waitFor(() => openai.requests.length > before, 'the request at the provider');
      req.destroy();
      const spent = async (): Promise<number> => 1_000_000 - (await request(gateway.url, '/v1/usage', { method: 'GET', key: 'vk_gone' })).json.budget.remaining_tokens;
      await waitFor(async () => (await spent()) > 0, 'the abandoned request charged');
      assert.ok((await spent()) >= 10_000, `${await spent()} tokens charged for a 40 KB prompt`);
    } finally {
      for (const answer of waiting.splice(0)) answer();
      openai.behave(null);
      await gateway.stop();
    }
  });

  it('logs cost_usd null, and counts an unpriced request, for a prompt a provider read of a model without a price and never answered', async () => {
    const gateway = await startGateway({
      keys: {
        virtual_keys: {
          vk_unpriced: { provider: 'openai', api_key: OPENAI_KEY, base_url: openai.baseUrl },
          vk_mixed: { targets: [{ provider: 'openai', api_key: OPENAI_KEY, base_url: openai.baseUrl }, { provider: 'openai', api_key: OPENAI_KEY, base_url: openai.baseUrl, model_map: { '*': 'gpt-9-preview' } }] },
        },
      },
      env: { LOG_CONSOLE: 'off', UPSTREAM_TIMEOUT_MS: '400', UPSTREAM_RETRIES: '0' },
    });
    const waiting: Array<() => void> = [];
    openai.behave(async ({ res }) => {
      await new Promise<void>((resolve) => waiting.push(resolve));
      res.destroy();
      return true;
    });
    try {
      const reply = await chat(gateway.url, 'vk_unpriced', ask('gpt-9-preview', { messages: [{ role: 'user', content: 'x'.repeat(4_000) }] }));
      assert.equal(reply.status, 504, reply.text);
      const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
      assert.equal(entry.cost_usd, null);
      const usage = (await request(gateway.url, '/v1/usage', { method: 'GET', key: 'vk_unpriced' })).json;
      assert.ok(usage.usage.total_tokens >= 1_000, JSON.stringify(usage));
      assert.equal(usage.unpriced_requests, 1, JSON.stringify(usage));
      // Beside a priced target that read the prompt too, the priced part stands.
      const mixed = await chat(gateway.url, 'vk_mixed', ask('gpt-4o-mini', { messages: [{ role: 'user', content: 'x'.repeat(4_000) }] }));
      assert.equal(mixed.status, 504, mixed.text);
      const mixedEntry = await waitForEntry(gateway.logFile, String(mixed.headers['x-request-id']));
      assert.equal(mixedEntry.upstream.attempts.length, 2, JSON.stringify(mixedEntry.upstream));
      assert.ok(typeof mixedEntry.cost_usd === 'number' && mixedEntry.cost_usd > 0, JSON.stringify(mixedEntry.cost_usd));
    } finally {
      for (const answer of waiting.splice(0)) answer();
      openai.behave(null);
      await gateway.stop();
    }
  });

  it('charges nothing for a request never written whole to its provider: a TLS handshake that never finishes', async () => {
    // A server that takes the connection and never answers the ClientHello: the request waits in
    // the TLS socket, unsent, until the wait runs out.
    const held: Socket[] = [];
    const silent = createServer((socket) => {
      socket.on('error', () => {});
      held.push(socket);
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as AddressInfo).port;
    const gateway = await startGateway({ keys: { virtual_keys: { vk_tls: { provider: 'openai', api_key: OPENAI_KEY, base_url: `https://127.0.0.1:${port}/v1`, budget: { max_tokens: 1_000_000, period: 'total' } } } }, env: { LOG_CONSOLE: 'off', UPSTREAM_TIMEOUT_MS: '400', UPSTREAM_RETRIES: '0' } });
    try {
      const reply = await chat(gateway.url, 'vk_tls', ask('gpt-4o-mini', { messages: [{ role: 'user', content: 'x'.repeat(40_000) }] }));
      assert.equal(reply.status, 504, reply.text);
      const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
      assert.equal(entry.upstream.attempts.length, 1);
      assert.equal(entry.upstream.attempts[0].error, 'upstream_timeout');
      assert.equal(held.length > 0, true, 'the gateway reached the server');
      const usage = (await request(gateway.url, '/v1/usage', { method: 'GET', key: 'vk_tls' })).json;
      assert.equal(usage.budget.remaining_tokens, 1_000_000, 'nothing charged for a request the provider never had');
    } finally {
      await gateway.stop();
      for (const socket of held) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  it('charges the prompt of an attempt that timed out after it was written whole, beside the answer of the target that took over', async () => {
    // The first target reads every request and never answers.
    const silent = createServer((socket) => {
      socket.on('error', () => {});
      socket.resume();
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as AddressInfo).port;
    // The target that read the prompt runs a dearer model than the one that answered: each is charged at its own price.
    const targets = [
      { provider: 'openai', api_key: OPENAI_KEY, base_url: `http://127.0.0.1:${port}/v1`, model_map: { '*': 'gpt-4o' } },
      { provider: 'openai', api_key: OPENAI_KEY, base_url: openai.baseUrl },
    ];
    // The same first target asked for a model without a price (no USD budget, which would refuse it).
    const unpriced = [{ ...targets[0], model_map: { '*': 'nopricemodel' } }, targets[1]];
    const gateway = await startGateway({ keys: { virtual_keys: { vk_over: { targets, budget: { max_tokens: 1_000_000, max_usd: 10, period: 'total' } }, vk_unpriced: { targets: unpriced } } }, env: { LOG_CONSOLE: 'off', UPSTREAM_TIMEOUT_MS: '400', UPSTREAM_RETRIES: '0' } });
    try {
      const body = ask('gpt-4o-mini', { messages: [{ role: 'user', content: 'x'.repeat(40_000) }] });
      const reply = await chat(gateway.url, 'vk_over', body);
      assert.equal(reply.status, 200, reply.text);
      const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
      assert.deepEqual(entry.upstream.attempts.map((attempt: { status: number | null; error?: string }) => attempt.error ?? attempt.status), ['upstream_timeout', 200]);
      const spent = 1_000_000 - (await request(gateway.url, '/v1/usage', { method: 'GET', key: 'vk_over' })).json.budget.remaining_tokens;
      // The answer's 18 tokens, and ~10,000 for the 40 KB prompt the first target read.
      assert.ok(spent >= 10_018, `${spent} tokens charged`);
      // Its ~10,000 tokens at gpt-4o's $2.50 per million, the answer at gpt-4o-mini's (a few millionths).
      const unanswered = Math.ceil(JSON.stringify(body).length / 4) * 2.5e-6;
      assert.ok(entry.cost_usd >= unanswered && entry.cost_usd < unanswered + 0.0001, `${entry.cost_usd} USD charged, ${unanswered} for the prompt gpt-4o read`);
      // Unpriced, that prompt is said by its own model's name and left out of the cost, which keeps the answer's.
      const other = await chat(gateway.url, 'vk_unpriced', body);
      assert.equal(other.status, 200, other.text);
      const second = await waitForEntry(gateway.logFile, String(other.headers['x-request-id']));
      assert.ok(typeof second.cost_usd === 'number' && second.cost_usd > 0 && second.cost_usd < 0.0001, `${second.cost_usd}`);
      // stderr comes through a pipe, which may trail the log file.
      await waitFor(() => /no price for openai model "nopricemodel"/.test(gateway.stderr()), 'the warning');
      assert.doesNotMatch(gateway.stderr(), /no price for openai model "gpt-4o-mini"/);
    } finally {
      await gateway.stop();
      silent.close();
    }
  });

  it('charges nothing for an error a provider answered with a 200, streamed or not, or as the first event of its stream', async () => {
    const gateway = await startGateway({ keys: { virtual_keys: { vk_err200: { provider: 'openai', api_key: OPENAI_KEY, base_url: openai.baseUrl, api: ['chat', 'responses'], budget: { max_tokens: 1_000_000, period: 'total' } } } }, env: { LOG_CONSOLE: 'off' } });
    openai.behave(({ res }) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: 'Rate limit reached for requests', type: 'requests', code: 'rate_limit_exceeded' } }));
    });
    try {
      const prompt = { messages: [{ role: 'user', content: 'x'.repeat(40_000) }] };
      const whole = await chat(gateway.url, 'vk_err200', ask('gpt-4o-mini', prompt));
      assert.equal(whole.status, 429, whole.text);
      const streamed = await chat(gateway.url, 'vk_err200', ask('gpt-4o-mini', { ...prompt, stream: true }));
      assert.equal(streamed.status, 429, streamed.text);
      for (const reply of [whole, streamed]) assert.equal((await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']))).usage, null);
      // An event stream whose first event is the error: nothing reached the client, which gets it as its status; nothing is charged.
      openai.behave(({ res }) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.end(`data: ${JSON.stringify({ error: { message: 'Rate limit reached for requests', type: 'requests', code: 'rate_limit_exceeded' } })}\n\n`);
      });
      const evented = await chat(gateway.url, 'vk_err200', ask('gpt-4o-mini', { ...prompt, stream: true }));
      assert.equal(evented.status, 429, evented.text);
      assert.equal(evented.json.error.code, 'rate_limit_exceeded');
      assert.equal((await waitForEntry(gateway.logFile, String(evented.headers['x-request-id']))).status, 429);
      const usage = (await request(gateway.url, '/v1/usage', { method: 'GET', key: 'vk_err200' })).json;
      assert.equal(usage.budget.remaining_tokens, 1_000_000, 'a refusal is not billed, whatever its status');
      // One that had begun before its error is charged as any stream cut short.
      openai.behave(({ res }) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.end(`data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta: { role: 'assistant', content: 'Hi' }, finish_reason: null }] })}\n\ndata: ${JSON.stringify({ error: { message: 'Upstream failed', type: 'server_error', code: null } })}\n\n`);
      });
      await chat(gateway.url, 'vk_err200', ask('gpt-4o-mini', { ...prompt, stream: true }));
      const left = async (): Promise<number> => (await request(gateway.url, '/v1/usage', { method: 'GET', key: 'vk_err200' })).json.budget.remaining_tokens;
      await waitFor(async () => (await left()) < 1_000_000 - 10_000, 'the begun stream charged its prompt');
      // A Responses provider's error event is an event of its own: an answer that goes on after it (no usage) is no refusal.
      const before = await left();
      openai.behave(({ res }) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        const events = [
          { type: 'error', sequence_number: 0, code: 'server_error', message: 'hiccup' },
          { type: 'response.created', sequence_number: 1, response: { id: 'resp_x', object: 'response', status: 'in_progress', output: [] } },
          { type: 'response.output_text.delta', sequence_number: 2, item_id: 'msg_x', output_index: 0, content_index: 0, delta: 'x'.repeat(50) },
          { type: 'response.completed', sequence_number: 3, response: { id: 'resp_x', object: 'response', status: 'completed', output: [] } },
        ];
        res.end(events.map((event) => `event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`).join(''));
      });
      const answered = await request(gateway.url, '/v1/responses', { key: 'vk_err200', body: JSON.stringify({ model: 'gpt-4o-mini', input: 'x'.repeat(40_000), stream: true }) });
      assert.match(answered.text, /response\.completed/);
      await waitFor(async () => (await left()) < before - 10_000, 'the answer after the error charged its prompt');
    } finally {
      openai.behave(null);
      await gateway.stop();
    }
  });

  it('charges a whole answer that reports no usage (an OpenAI-compatible server) its size in output tokens', async () => {
    const gateway = await startGateway({ keys: { virtual_keys: { vk_silent: { provider: 'openai', api_key: OPENAI_KEY, base_url: openai.baseUrl, budget: { max_tokens: 1_000_000, max_usd: 10, period: 'total' } } } }, env: { LOG_CONSOLE: 'off' } });
    const content = 'word '.repeat(800);
    openai.behave(async ({ res }) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ id: 'chatcmpl-silent', object: 'chat.completion', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }] }));
      return true;
    });
    try {
      const reply = await chat(gateway.url, 'vk_silent', ask('gpt-4o-mini'));
      assert.equal(reply.status, 200);
      const output = Math.ceil(Buffer.byteLength(reply.text) / 4);
      const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
      assert.equal(entry.usage, null, 'the log says what the provider reported');
      assert.ok(entry.cost_usd >= (output * 0.6) / 1e6, `charged $${entry.cost_usd} for an answer of ~${output} tokens`);
      const usage = await request(gateway.url, '/v1/usage', { method: 'GET', key: 'vk_silent' });
      const spent = 1_000_000 - usage.json.budget.remaining_tokens;
      assert.ok(spent >= output && spent < output + 100, `${spent} tokens counted against the budget for ~${output} of output`);
    } finally {
      openai.behave(null);
      await gateway.stop();
    }
  });

  it('charges an Anthropic stream cut short before its message_delta at least the output it relayed', async () => {
    const gateway = await startGateway({ keys: { virtual_keys: { vk_cut: { provider: 'anthropic', api_key: ANTHROPIC_KEY, base_url: anthropic.baseUrl } } }, env: { LOG_CONSOLE: 'off' } });
    let hang!: () => void;
    anthropic.behave(async ({ res }) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const event = (type: string, data: unknown) => res.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...(data as object) })}\n\n`);
      event('message_start', { message: { id: 'msg_cut', type: 'message', role: 'assistant', model: 'claude-sonnet-4-5-20250929', content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 25, output_tokens: 1 } } });
      event('content_block_start', { index: 0, content_block: { type: 'text', text: '' } });
      for (let i = 0; i < 50; i++) event('content_block_delta', { index: 0, delta: { type: 'text_delta', text: `word${i} ` } });
      await new Promise<void>((resolve) => (hang = resolve));
      res.end();
      return true;
    });
    try {
      const { request: send } = await import('node:http');
      const requestId = await new Promise<string>((resolve, reject) => {
        const body = JSON.stringify({ model: 'claude-sonnet-4-5', max_tokens: 4096, stream: true, messages: [{ role: 'user', content: 'hi' }] });
        const req = send(`${gateway.url}/v1/messages`, { method: 'POST', headers: { 'x-api-key': 'vk_cut', 'anthropic-version': '2023-06-01', 'content-type': 'application/json' } }, (res) => {
          let text = '';
          res.setEncoding('utf8').on('data', (chunk: string) => {
            text += chunk;
            if ((text.match(/content_block_delta/g)?.length ?? 0) >= 100) {
              req.destroy(); // the client leaves (Esc in Claude Code)
              resolve(String(res.headers['request-id']));
            }
          });
        });
        req.on('error', () => {});
        req.end(body);
        setTimeout(() => reject(new Error('the stream did not arrive')), 5000).unref();
      });
      const entry = await waitForEntry(gateway.logFile, requestId);
      assert.equal(entry.status, 499);
      assert.ok(entry.usage.output_tokens >= 50, `charged ${entry.usage.output_tokens} output tokens for 50 relayed deltas`);
      assert.equal(entry.cost_usd, Number(((25 * 3 + entry.usage.output_tokens * 15) / 1e6).toFixed(10)));
    } finally {
      hang?.();
      anthropic.behave(null);
      await gateway.stop();
    }
  });

  it('refuses a background Responses request for a key with a budget or a token limit, and prices a compaction, holding its estimate while it runs', async () => {
    const gateway = await startGateway({
      keys: {
        virtual_keys: {
          vk_resp: { name: 'codex', provider: 'openai', api_key: OPENAI_KEY, base_url: openai.baseUrl, api: ['chat', 'responses'], budget: { max_usd: 5, period: 'month' } },
          vk_compact: { name: 'compacting', provider: 'openai', api_key: OPENAI_KEY, base_url: openai.baseUrl, api: ['chat', 'responses'], budget: { max_usd: 0.003, period: 'total' } },
          vk_tpm: { provider: 'openai', api_key: OPENAI_KEY, base_url: openai.baseUrl, api: ['chat', 'responses'], rate_limit: { tokens_per_minute: 1000 } },
          vk_rpm: { provider: 'openai', api_key: OPENAI_KEY, base_url: openai.baseUrl, api: ['chat', 'responses'], rate_limit: { requests_per_minute: 100 } },
        },
      },
      env: { LOG_CONSOLE: 'off' },
    });
    const compact = (key: string, model: string) => request(gateway.url, '/v1/responses/compact', { key, body: { model, input: [{ role: 'user', content: 'hi' }] } });
    try {
      const background = await request(gateway.url, '/v1/responses', { key: 'vk_resp', body: { model: 'gpt-4o-mini', input: 'hi', background: true } });
      assert.equal(background.status, 400);
      assert.equal(background.json.error.param, 'background');
      assert.match(background.json.error.message, /it has a budget/);
      // Spelled otherwise, as a server that coerces types (pydantic) reads as true, nothing passes either.
      for (const spelled of [1, 'true', '1', 'yes', {}]) {
        const coerced = await request(gateway.url, '/v1/responses', { key: 'vk_resp', body: { model: 'gpt-4o-mini', input: 'hi', background: spelled } });
        assert.equal(coerced.status, 400, JSON.stringify(spelled));
        assert.equal(coerced.json.error.param, 'background');
      }
      assert.equal((await request(gateway.url, '/v1/responses', { key: 'vk_resp', body: { model: 'gpt-4o-mini', input: 'hi', background: false } })).status, 200);
      // Its tokens come after the request: a tokens-per-minute limit could not count them either.
      const limited = await request(gateway.url, '/v1/responses', { key: 'vk_tpm', body: { model: 'gpt-4o-mini', input: 'hi', background: true } });
      assert.equal(limited.status, 400);
      assert.equal(limited.json.error.param, 'background');
      assert.match(limited.json.error.message, /it has a tokens_per_minute limit/);
      const counted = await request(gateway.url, '/v1/responses', { key: 'vk_rpm', body: { model: 'gpt-4o-mini', input: 'hi', background: true } });
      assert.equal(counted.status, 200, 'a limit on requests alone counts a background request as any other');
      const compacted = await compact('vk_resp', 'gpt-4o-mini');
      assert.equal(compacted.status, 200);
      // The mock's compaction: 100 input and 10 output tokens.
      const cost = Number(((100 * 0.15 + 10 * 0.6) / 1e6).toFixed(10));
      assert.equal(compacted.headers['x-gateway-cost-usd'], String(cost), 'a whole answer says its cost');
      const entry = await waitForEntry(gateway.logFile, String(compacted.headers['x-request-id']));
      assert.equal(entry.cost_usd, cost);
      const unpriced = await compact('vk_resp', 'gpt-9-preview');
      assert.equal(unpriced.status, 404);
      assert.equal(unpriced.json.error.code, 'model_not_priced');
      // Null is OpenAI's "the provider picks": a budget in USD could not be priced.
      const unnamed = await request(gateway.url, '/v1/responses/compact', { key: 'vk_resp', body: { model: null, input: [{ role: 'user', content: 'hi' }] } });
      assert.deepEqual([unnamed.status, unnamed.json.error.code, unnamed.json.error.param], [400, 'missing_required_parameter', 'model'], unnamed.text);

      // Each compaction in flight holds its prompt and 4,096 output tokens of gpt-4o-mini ($0.0025): the third finds $0.003 committed.
      openai.behave(async () => {
        await new Promise((resolve) => setTimeout(resolve, 300));
        return false;
      });
      const replies = await Promise.all(Array.from({ length: 10 }, () => compact('vk_compact', 'gpt-4o-mini')));
      const served = replies.filter((reply) => reply.status === 200).length;
      assert.ok(served >= 1 && served <= 2, `${served} of 10 admitted`);
      assert.ok(replies.filter((reply) => reply.status !== 200).every((reply) => reply.status === 429 && reply.json.error.code === 'budget_held'));
    } finally {
      openai.behave(null);
      await gateway.stop();
    }
  });
});

describe('a price file that cannot be used', () => {
  it('stops the gateway at start, listing every problem, and those of keys.json too', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'keys.json'), JSON.stringify({ virtual_keys: { vk: { provider: 'mock' } } }));
    writeFileSync(join(dir, 'prices.json'), JSON.stringify({ prices: { openai: { 'gpt-x': { input: -1, output: 1 }, 'gpt-y': { output: 1 } }, nobody: {} } }));
    const run = await runGatewayUntilExit({ KEYS_FILE: join(dir, 'keys.json'), PRICES_FILE: join(dir, 'prices.json') }, dir);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /prices\.json: 3 problems:/);
    assert.match(run.stderr, /openai "gpt-x": "input" must be a number/);
    assert.match(run.stderr, /openai "gpt-y": "input" is required/);
    assert.match(run.stderr, /unknown provider "nobody"/);
    const missing = await runGatewayUntilExit({ KEYS_FILE: join(dir, 'keys.json'), PRICES_FILE: join(dir, 'nope.json') }, dir);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /nope\.json: file not found/);
    writeFileSync(join(dir, 'keys.json'), JSON.stringify({ virtual_keys: { vk: { provider: 'nobody' } } }));
    const both = await runGatewayUntilExit({ KEYS_FILE: join(dir, 'keys.json'), PRICES_FILE: join(dir, 'prices.json') }, dir);
    assert.equal(both.code, 1);
    assert.match(both.stderr, /keys\.json: virtual key #1 \(…\): unknown provider "nobody" \(supported:/, 'the keys file\'s problems, in the same run');
    assert.match(both.stderr, /prices\.json: 3 problems:\n.*openai "gpt-x": "input" must be a number/);
  });
});

describe('npm run usage', () => {
  it('prints requests, tokens and cost per key and per model from the log the gateway wrote', async () => {
    const gateway = await startGateway({
      keys: { virtual_keys: { vk_report: { name: 'reporting', provider: 'openai', api_key: OPENAI_KEY, base_url: openai.baseUrl } } },
      env: { LOG_CONSOLE: 'off' },
    });
    let last = '';
    try {
      for (let i = 0; i < 3; i++) last = String((await chat(gateway.url, 'vk_report', ask('gpt-4o-mini'))).headers['x-request-id']);
      await waitForEntry(gateway.logFile, last);
    } finally {
      await gateway.stop();
    }
    const usage = (...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> =>
      new Promise((resolve) => {
        const child = endWithFile(spawn(process.execPath, [join(ROOT, 'dist', 'usage.js'), ...args, '--since', '1d'], { stdio: ['ignore', 'pipe', 'pipe'] }));
        let stdout = '';
        let stderr = '';
        child.stdout.setEncoding('utf8').on('data', (text: string) => (stdout += text));
        child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
        child.once('exit', (code) => resolve({ code, stdout, stderr }));
      });
    const output = await usage('--file', gateway.logFile);
    assert.equal(output.code, 0);
    assert.match(output.stdout, /^3 requests in .*llm_interactions\.json, from /);
    assert.match(output.stdout, new RegExp(`^reporting\\s+3\\s+0\\s+33\\s+21\\s+0\\s+0\\s+\\$${Number((3 * GPT_4O_MINI).toPrecision(2))}$`, 'm'));
    assert.match(output.stdout, /^openai\/gpt-4o-mini\s+3\s+/m);
    assert.doesNotMatch(output.stdout, /vk_report/);
    // --json: the same sums under the names the log and GET /v1/usage use.
    const json = await usage('--file', gateway.logFile, '--json');
    assert.equal(json.code, 0, json.stderr);
    const report = JSON.parse(json.stdout);
    assert.deepEqual(report.by_key.reporting, { requests: 3, errors: 0, input_tokens: 33, output_tokens: 21, cache_read_tokens: 0, cache_write_tokens: 0, cost_usd: report.total.cost_usd, unpriced_requests: 0 });
    assert.equal(report.total.cost_usd, Number((3 * GPT_4O_MINI).toFixed(10)));
    assert.equal(report.by_model['openai/gpt-4o-mini'].requests, 3);
    assert.doesNotMatch(json.stdout, /vk_report/);
    // Rotated by logrotate (compress): every --file is read, a .gz one decompressed; an entry cut
    // short at the end of one file does not run on into the next.
    const text = readFileSync(gateway.logFile);
    writeFileSync(`${gateway.logFile}.2.gz`, gzipSync(text));
    writeFileSync(`${gateway.logFile}.1`, Buffer.concat([text, text.subarray(0, 40)]));
    const rotated = await usage('--file', `${gateway.logFile}.2.gz`, '--file', `${gateway.logFile}.1`, '--file', gateway.logFile);
    assert.equal(rotated.code, 0, rotated.stderr);
    assert.match(rotated.stdout, /^9 requests in .*llm_interactions\.json\.2\.gz, .*llm_interactions\.json\.1, .*llm_interactions\.json, from .* \(1 unreadable part skipped\)/);
    assert.match(rotated.stdout, /^reporting\s+9\s+0\s+99\s+63\s/m);
    // Just rotated (nocreate): the current file comes with the next entry; until then it counts as empty.
    const justRotated = await usage('--file', `${gateway.logFile}.1`, '--file', `${gateway.logFile}.new`);
    assert.equal(justRotated.code, 0, justRotated.stderr);
    assert.match(justRotated.stderr, /llm_interactions\.json\.new does not exist \(yet: after a rotation, the next entry makes it\): counted as empty/);
    assert.match(justRotated.stdout, /^reporting\s+3\s+0\s+33\s+21\s/m);
    const none = await usage('--file', `${gateway.logFile}.new`);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /no such file: .*\.new \(nothing logged there yet, or the log is elsewhere: give it with --file\)/);
    // Another file given by mistake (keys.json): no log entry in it, said, not a report of zeros.
    const keysFile = join(gateway.dir, 'keys.json');
    const notLog = await usage('--file', keysFile);
    assert.equal(notLog.code, 2);
    assert.match(notLog.stderr, /^no log entry in \S*keys\.json: is it the interactions log\? \(give it with --file\)/);
    assert.equal(notLog.stdout, '');
    const besideLog = await usage('--file', keysFile, '--file', gateway.logFile);
    assert.equal(besideLog.code, 0, besideLog.stderr);
    assert.match(besideLog.stderr, /keys\.json holds no log entry \(is it the interactions log\?\): counted as empty/);
    assert.match(besideLog.stdout, /^reporting\s+3\s+0\s+33\s+21\s/m);
    // Text where no entry begins (notes, a compressed log without its .gz) is no log either.
    writeFileSync(`${gateway.logFile}.md`, '# notes\nnothing logged here\n');
    const notes = await usage('--file', `${gateway.logFile}.md`);
    assert.equal(notes.code, 2);
    assert.match(notes.stderr, /^no log entry in \S*\.md: is it the interactions log\?/);
    // However large (its bytes then hold lines that begin with a brace): its first line does not.
    writeFileSync(`${gateway.logFile}.renamed`, gzipSync(Buffer.concat(Array.from({ length: 400 }, () => text))));
    const renamed = await usage('--file', `${gateway.logFile}.renamed`);
    assert.equal(renamed.code, 2, renamed.stdout);
    // A byte order mark an editor saved the log with is no part of its first entry.
    writeFileSync(`${gateway.logFile}.bom`, Buffer.concat([Buffer.from('\ufeff'), text]));
    const bom = await usage('--file', `${gateway.logFile}.bom`);
    assert.equal(bom.code, 0, bom.stderr);
    assert.match(bom.stdout, /^3 requests in .*\.bom, from [^(]*$/m);
    // A log whose only entry a crash cut short is a log: counted as what it holds (nothing), not refused.
    writeFileSync(`${gateway.logFile}.torn`, text.subarray(0, 60));
    const torn = await usage('--file', `${gateway.logFile}.torn`);
    assert.equal(torn.code, 0, torn.stderr);
    assert.match(torn.stdout, /^0 requests in .*\.torn, from .* \(1 unreadable part skipped\)/);
    writeFileSync(`${gateway.logFile}.3.gz`, text);
    const notGzip = await usage('--file', `${gateway.logFile}.3.gz`);
    assert.equal(notGzip.code, 2);
    assert.match(notGzip.stderr, /cannot read .*\.3\.gz \(Z_DATA_ERROR\)/);
    // Cut short part-way: what came before counts, and says so; a file named twice is read once.
    const gzipped = gzipSync(Buffer.concat([text, text]));
    writeFileSync(`${gateway.logFile}.4.gz`, gzipped.subarray(0, gzipped.length - 20));
    const cut = await usage('--file', `${gateway.logFile}.4.gz`, '--file', gateway.logFile, '--file', gateway.logFile);
    assert.equal(cut.code, 0, cut.stderr);
    assert.match(cut.stderr, /\.4\.gz: stopped reading at a damaged part \(Z_BUF_ERROR\)/);
    assert.match(cut.stdout, /^(8|9) requests in .*\.4\.gz, .*llm_interactions\.json, from .*unreadable parts? skipped/);
    // An end before the start: the option the user gave is the one named.
    const early = await usage('--file', gateway.logFile, '--until', '2000-01-01');
    assert.equal(early.code, 2);
    assert.match(early.stderr, /^--since must be before --until/);
    const byDefault = spawnSync(process.execPath, [join(ROOT, 'dist', 'usage.js'), '--file', gateway.logFile, '--until', '2000-01-01'], { encoding: 'utf8' });
    assert.equal(byDefault.status, 2);
    assert.match(byDefault.stderr, /^--until is before the start of this month \(the default --since\): give --since too, or --all/);
    // LOG_FILE=off: the default file is read (it may hold what was logged before), and that is said.
    const off = spawnSync(process.execPath, [join(ROOT, 'dist', 'usage.js'), '--all'], { encoding: 'utf8', cwd: gateway.dir, env: { PATH: process.env.PATH ?? '', LOG_FILE: 'off' } });
    assert.equal(off.status, 0, off.stderr);
    assert.match(off.stderr, /^LOG_FILE is off: reading logs\/llm_interactions\.json, which holds only what was logged there before/);
    assert.match(off.stdout, /^3 requests in logs\/llm_interactions\.json, all time/);
  });
});
