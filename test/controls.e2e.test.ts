/**
 * Per-key controls and resilience, end to end: model allowlists, rate limits (also across
 * cluster workers), token budgets that survive a restart, several real keys, retries, the
 * models list and CORS.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startGateway, tempDir, waitFor, waitForEntry, type GatewayProcess } from './support/gateway.js';
import { chat, request } from './support/http.js';
import { refusingPort } from './support/ports.js';
import { startAnthropicMock, type AnthropicMock } from './support/mock-anthropic.js';
import { MOCK_MODELS, openAIError, startOpenAIMock, type MockUpstream } from './support/mock-openai.js';

const KEY_A = 'sk-proj-controlsKEY-A-1111';
const KEY_B = 'sk-proj-controlsKEY-B-2222';
const ANTHROPIC_KEY = 'sk-ant-controlsKEY-3333';
const ask = (model = 'gpt-4o-mini', extra: Record<string, unknown> = {}) => ({ model, messages: [{ role: 'user', content: 'hi' }], ...extra });

let openai: MockUpstream;
let anthropic: AnthropicMock;

before(async () => {
  openai = await startOpenAIMock({ flavor: 'openai', apiKey: KEY_A, otherKeys: [KEY_B] });
  anthropic = await startAnthropicMock({ apiKey: ANTHROPIC_KEY });
});
after(async () => {
  await openai?.close();
  await anthropic?.close();
});

const upstreamCalls = () => openai.requests.filter((recorded) => recorded.path === '/v1/chat/completions').length;

describe('model allowlist', () => {
  let gateway: GatewayProcess;
  before(async () => {
    gateway = await startGateway({
      keys: {
        virtual_keys: {
          vk_limited: { provider: 'openai', api_key: KEY_A, base_url: openai.baseUrl, models: ['gpt-4o-mini', 'gpt-4.1-*'] },
          vk_free: { provider: 'openai', api_key: KEY_A, base_url: openai.baseUrl },
          vk_retried: { provider: 'openai', api_key: KEY_A, base_url: openai.baseUrl },
          vk_kept: { provider: 'openai', api_key: KEY_A, base_url: openai.baseUrl },
          vk_together: { provider: 'openai', api_key: KEY_A, base_url: openai.baseUrl },
          vk_refused: { provider: 'openai', api_key: KEY_A, base_url: openai.baseUrl },
        },
      },
      env: { LOG_CONSOLE: 'off' },
    });
  });
  after(() => gateway.stop());

  it('lets listed models and patterns through and refuses others with 404 model_not_allowed (as providers answer a model a key cannot use: a 403 reads as a bad key), before any upstream call', async () => {
    for (const model of ['gpt-4o-mini', 'gpt-4.1-nano']) assert.equal((await chat(gateway.url, 'vk_limited', ask(model))).status, 200, model);
    const before = upstreamCalls();
    const refused = await chat(gateway.url, 'vk_limited', ask('o3'));
    assert.equal(refused.status, 404);
    assert.equal(refused.json.error.code, 'model_not_allowed');
    assert.equal(refused.json.error.param, 'model');
    assert.doesNotMatch(refused.text, /gpt-4\.1|gpt-4o-mini/, 'the allowlist is not listed');
    assert.equal(upstreamCalls(), before);
    assert.equal((await chat(gateway.url, 'vk_free', ask('o3'))).status, 200, 'no allowlist: every model');
  });

  it('lists the allowed models on GET /v1/models and /models (patterns matched against the provider\'s list)', async () => {
    for (const path of ['/v1/models', '/models']) {
      const reply = await request(gateway.url, path, { method: 'GET', key: 'vk_limited' });
      assert.equal(reply.status, 200, reply.text);
      assert.equal(reply.json.object, 'list');
      assert.deepEqual(reply.json.data.map((model: { id: string }) => model.id).sort(), ['gpt-4.1-mini', 'gpt-4.1-nano', 'gpt-4o-mini']);
      assert.ok(reply.json.data.every((model: { object: string }) => model.object === 'model'));
    }
    const all = await request(gateway.url, '/v1/models', { method: 'GET', key: 'vk_free' });
    assert.deepEqual(all.json.data.map((model: { id: string }) => model.id), MOCK_MODELS.openai);
    assert.equal((await request(gateway.url, '/v1/models', { method: 'GET' })).status, 401);
    assert.equal((await request(gateway.url, '/v1/models', { method: 'GET', key: 'vk_nobody' })).status, 401);
    assert.equal((await request(gateway.url, '/v1/models', { method: 'POST', key: 'vk_free' })).status, 405);
  });

  it('fetches the provider\'s list through the same call path as every request: a 503 is retried', async () => {
    let failed = 0;
    openai.behave(({ req, res }) => {
      if (req.method !== 'GET' || failed > 0) return false;
      failed++;
      res.writeHead(503, { 'content-type': 'application/json' });
      res.end(JSON.stringify(openAIError('busy', 'server_error')));
      return true;
    });
    const before = openai.requests.filter((recorded) => recorded.path === '/v1/models').length;
    try {
      const reply = await request(gateway.url, '/v1/models', { method: 'GET', key: 'vk_retried' });
      assert.equal(reply.status, 200, reply.text);
      assert.deepEqual(reply.json.data.map((model: { id: string }) => model.id), MOCK_MODELS.openai);
      assert.equal(openai.requests.filter((recorded) => recorded.path === '/v1/models').length - before, 2, 'the 503, then the retry');
    } finally {
      openai.behave(null);
    }
  });

  it("keeps a provider's list a minute: a client asking again and again does not spend the real key's rate limit", async () => {
    const asked = (): number => openai.requests.filter((recorded) => recorded.path === '/v1/models').length;
    const before = asked();
    for (let i = 0; i < 5; i++) {
      const reply = await request(gateway.url, '/v1/models', { method: 'GET', key: 'vk_kept' });
      assert.equal(reply.status, 200, reply.text);
      assert.deepEqual(reply.json.data.map((model: { id: string }) => model.id), MOCK_MODELS.openai);
    }
    assert.equal(asked() - before, 1);
  });

  it('asks once for requests that come together, and keeps a refusal a few seconds', async () => {
    const asked = (): number => openai.requests.filter((recorded) => recorded.path === '/v1/models').length;
    let refuse = false;
    openai.behave(({ req, res }) => {
      if (req.method !== 'GET') return false;
      if (refuse) {
        res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '30' });
        res.end(JSON.stringify(openAIError('slow down', 'rate_limit_exceeded')));
        return true;
      }
      setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ object: 'list', data: [{ id: 'gpt-4o-mini', object: 'model', created: 0, owned_by: 'openai' }] })), 200);
      return true;
    });
    try {
      const before = asked();
      const together = await Promise.all(Array.from({ length: 20 }, () => request(gateway.url, '/v1/models', { method: 'GET', key: 'vk_together' })));
      assert.ok(together.every((reply) => reply.status === 200 && reply.json.data[0].id === 'gpt-4o-mini'));
      assert.equal(asked() - before, 1, 'one ask for twenty requests');
      refuse = true;
      const refusedBefore = asked();
      for (let i = 0; i < 5; i++) {
        const refused = await request(gateway.url, '/v1/models', { method: 'GET', key: 'vk_refused' });
        assert.equal(refused.status, 429);
        // The provider gave no code: OpenAI's, which clients wait on, as on every route.
        assert.equal(refused.json.error.code, 'rate_limit_exceeded', refused.text);
      }
      assert.equal(asked() - refusedBefore, 1, 'the refusal is kept: no ask per request');
    } finally {
      openai.behave(null);
    }
  });
});

describe('models list for other providers', () => {
  it('translates Anthropic\'s list, and answers the mock\'s locally', async () => {
    const gateway = await startGateway({
      keys: { virtual_keys: { vk_claude_test: { provider: 'anthropic', api_key: ANTHROPIC_KEY, base_url: anthropic.baseUrl }, vk_mock: { provider: 'mock' }, vk_exact: { provider: 'anthropic', api_key: 'sk-ant-unused', base_url: anthropic.baseUrl, models: ['claude-x'] } } },
      env: { LOG_CONSOLE: 'off' },
    });
    try {
      const claude = await request(gateway.url, '/v1/models', { method: 'GET', key: 'vk_claude_test' });
      assert.equal(claude.status, 200, claude.text);
      assert.deepEqual(claude.json.data[0], { id: 'claude-sonnet-4-5-20250929', object: 'model', created: 1759104000, owned_by: 'anthropic', display_name: 'claude-sonnet-4-5-20250929' });
      const mock = await request(gateway.url, '/v1/models', { method: 'GET', key: 'vk_mock' });
      assert.equal(mock.json.data[0].id, 'mock-echo');
      // Only exact names: answered without asking the provider (whose key here is not even valid).
      const exact = await request(gateway.url, '/v1/models', { method: 'GET', key: 'vk_exact' });
      assert.deepEqual(exact.json.data.map((model: { id: string }) => model.id), ['claude-x']);
    } finally {
      await gateway.stop();
    }
  });
});

describe('rate limits', () => {
  it('requests_per_minute: the next request gets 429 with retry-after and OpenAI\'s x-ratelimit headers', async () => {
    const gateway = await startGateway({ keys: { virtual_keys: { vk_rpm: { provider: 'openai', api_key: KEY_A, base_url: openai.baseUrl, rate_limit: { requests_per_minute: 3 } } } }, env: { LOG_CONSOLE: 'off' } });
    try {
      const ok = [];
      for (let i = 0; i < 3; i++) ok.push(await chat(gateway.url, 'vk_rpm', ask()));
      assert.ok(ok.every((reply) => reply.status === 200));
      assert.equal(ok[0]?.headers['x-ratelimit-limit-requests'], '3');
      assert.equal(ok[0]?.headers['x-ratelimit-remaining-requests'], '2');
      const before = upstreamCalls();
      const refused = await chat(gateway.url, 'vk_rpm', ask());
      assert.equal(refused.status, 429);
      assert.equal(refused.json.error.code, 'rate_limit_exceeded');
      assert.match(refused.json.error.message, /3 requests per minute/);
      assert.ok(Number(refused.headers['retry-after']) >= 19 && Number(refused.headers['retry-after']) <= 20);
      assert.equal(refused.headers['x-ratelimit-remaining-requests'], '0');
      assert.match(String(refused.headers['x-ratelimit-reset-requests']), /^\d+(\.\d+)?s|^\dm\d+s$/);
      assert.equal(upstreamCalls(), before, 'refused before any upstream call');
      const entry = await waitForEntry(gateway.logFile, String(refused.headers['x-request-id']));
      assert.equal(entry.status, 429);
      assert.equal(entry.error.code, 'rate_limit_exceeded');
    } finally {
      await gateway.stop();
    }
  });

  it('tokens_per_minute: counted from the usage of answered requests', async () => {
    // The mock answers 18 tokens (11 prompt + 7 completion) per request.
    const gateway = await startGateway({ keys: { virtual_keys: { vk_tpm: { provider: 'openai', api_key: KEY_A, base_url: openai.baseUrl, rate_limit: { tokens_per_minute: 30 } } } }, env: { LOG_CONSOLE: 'off' } });
    try {
      assert.equal((await chat(gateway.url, 'vk_tpm', ask())).status, 200);
      const second = await chat(gateway.url, 'vk_tpm', ask('gpt-4o-mini', { stream: true }));
      assert.equal(second.status, 200, 'streams count too');
      const refused = await chat(gateway.url, 'vk_tpm', ask());
      assert.equal(refused.status, 429);
      assert.equal(refused.json.error.type, 'tokens');
      assert.equal(refused.headers['x-ratelimit-limit-tokens'], '30');
      assert.equal(refused.headers['x-ratelimit-remaining-tokens'], '0');
    } finally {
      await gateway.stop();
    }
  });

  it('holds for the whole instance with several workers', async () => {
    const gateway = await startGateway({ keys: { virtual_keys: { vk_rpm: { provider: 'mock', rate_limit: { requests_per_minute: 5 } } } }, env: { LOG_CONSOLE: 'off', GATEWAY_WORKERS: '2' } });
    try {
      const statuses: number[] = [];
      // Fresh connections: the kernel spreads them over both workers.
      for (let i = 0; i < 12; i++) statuses.push((await chat(gateway.url, 'vk_rpm', ask())).status);
      assert.equal(statuses.filter((status) => status === 200).length, 5, statuses.join(','));
      assert.equal(statuses.filter((status) => status === 429).length, 7);
    } finally {
      await gateway.stop();
    }
  });

  it('follows the keys file when it is reloaded', async () => {
    const gateway = await startGateway({ keys: { virtual_keys: { vk: { provider: 'mock', rate_limit: { requests_per_minute: 1 } } } }, env: { LOG_CONSOLE: 'off' } });
    try {
      assert.equal((await chat(gateway.url, 'vk', ask())).status, 200);
      assert.equal((await chat(gateway.url, 'vk', ask())).status, 429);
      writeFileSync(gateway.keysFile, JSON.stringify({ virtual_keys: { vk: { provider: 'mock', rate_limit: { requests_per_minute: 600 } } } }));
      await waitFor(() => /keys reloaded/.test(gateway.stderr()), 'the reload');
      await new Promise((resolve) => setTimeout(resolve, 150)); // 600 per minute refills one every 100 ms
      assert.equal((await chat(gateway.url, 'vk', ask())).status, 200);
    } finally {
      await gateway.stop();
    }
  });
});

describe('a budget across a reload', () => {
  it("a reload that counts a key's budget in another period than its spend was says so: what it spent before is not in the new count", async () => {
    const budgeted = (period: string | null) => ({ virtual_keys: { vk_team: { name: 'team', provider: 'openai', api_key: KEY_A, base_url: openai.baseUrl, ...(period === null ? {} : { budget: { max_tokens: 1000, period } }) } } });
    const gateway = await startGateway({ keys: budgeted(null), env: { LOG_CONSOLE: 'off' } });
    const usage = async () => (await request(gateway.url, '/v1/usage', { method: 'GET', key: 'vk_team' })).json;
    const reloaded = async (period: string, count: number) => {
      writeFileSync(gateway.keysFile, JSON.stringify(budgeted(period)));
      await waitFor(() => (gateway.stderr().match(/keys reloaded/g) ?? []).length === count, 'the reload');
    };
    try {
      assert.equal((await chat(gateway.url, 'vk_team', ask())).status, 200);
      assert.deepEqual([(await usage()).period, (await usage()).requests], ['month', 1]);
      // A month budget added: the month's spend counts, nothing to say.
      await reloaded('month', 1);
      assert.equal((await usage()).requests, 1);
      assert.doesNotMatch(gateway.stderr(), /is not in the budget's count/);
      // Per day: its count starts at the reload, and stderr says so (by the key's name).
      await reloaded('day', 2);
      const said = /virtual key "team": its budget now counts per day \(UTC\), and its spend was counted per calendar month \(UTC\) until this reload: what it spent while so counted is not in the budget's count/;
      await waitFor(() => said.test(gateway.stderr()), 'the warning after the reload');
      assert.deepEqual([(await usage()).period, (await usage()).requests], ['day', 0]);
      assert.equal((gateway.stderr().match(/is not in the budget's count/g) ?? []).length, 1, 'said for the day budget, not for the month one');
      assert.doesNotMatch(gateway.stderr(), new RegExp(KEY_A));
    } finally {
      await gateway.stop();
    }
  });
});

describe('token budget', () => {
  it('refuses with 429 budget_exceeded once used, and survives a restart (state file next to the logs)', async () => {
    const dir = tempDir();
    const stateFile = join(dir, 'logs', 'gateway_state.json');
    const keys = { virtual_keys: { vk_budget: { provider: 'openai', api_key: KEY_A, base_url: openai.baseUrl, budget: { max_tokens: 30, period: 'day' } } } };
    const env = { LOG_CONSOLE: 'off', LOG_FILE: join(dir, 'logs', 'llm_interactions.json') };
    const first = await startGateway({ keys, env, logFile: env.LOG_FILE });
    try {
      assert.equal((await chat(first.url, 'vk_budget', ask())).status, 200);
      assert.equal((await chat(first.url, 'vk_budget', ask())).status, 200);
      const refused = await chat(first.url, 'vk_budget', ask());
      assert.equal(refused.status, 429);
      assert.equal(refused.json.error.code, 'budget_exceeded');
      assert.match(refused.json.error.message, /36 of 30 tokens/);
      assert.ok(Number(refused.headers['retry-after']) > 0, 'until the day resets');
      // The official SDKs would otherwise sleep until then (hours) and retry: told not to.
      assert.equal(refused.headers['x-should-retry'], 'false');
    } finally {
      assert.equal(await first.stop(), 0);
    }
    const state = readFileSync(stateFile, 'utf8');
    assert.doesNotMatch(state, /vk_budget/, 'the state file knows keys by digest only');
    assert.match(state, /"tokens": 36/);
    const second = await startGateway({ keys, env, logFile: env.LOG_FILE });
    try {
      const still = await chat(second.url, 'vk_budget', ask());
      assert.equal(still.status, 429, 'a restart does not reset a budget');
      assert.equal(still.json.error.code, 'budget_exceeded');
    } finally {
      await second.stop();
    }
  });

  it('a budget given by a reload is saved from then on, with what the key spent before', async () => {
    const keys = (budget: unknown) => ({ virtual_keys: { vk_later: { provider: 'mock', ...(budget === null ? {} : { budget }) } } });
    const gateway = await startGateway({ keys: keys(null), env: { LOG_CONSOLE: 'off' } });
    const stateFile = join(gateway.dir, 'logs', 'gateway_state.json');
    try {
      assert.equal((await chat(gateway.url, 'vk_later', ask())).status, 200);
      writeFileSync(gateway.keysFile, JSON.stringify(keys({ max_tokens: 1000, period: 'month' })));
      await waitFor(() => /keys reloaded/.test(gateway.stderr()), 'the reload');
      assert.equal(existsSync(stateFile), false, 'no budget until now: nothing written');
      assert.equal((await chat(gateway.url, 'vk_later', ask())).status, 200);
    } finally {
      assert.equal(await gateway.stop(), 0);
    }
    assert.match(readFileSync(stateFile, 'utf8'), /"requests": 2,/);
  });

  it('a state file that cannot be written is said at start, before any spend, and once', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'not-a-folder'), 'x');
    const file = join(dir, 'not-a-folder', 'state.json');
    const keys = { virtual_keys: { vk_budget: { provider: 'openai', api_key: KEY_A, base_url: openai.baseUrl, budget: { max_tokens: 1000, period: 'day' } } } };
    const gateway = await startGateway({ keys, env: { LOG_CONSOLE: 'off', STATE_FILE: file } });
    try {
      assert.match(gateway.stderr(), /cannot write the state file .*not-a-folder\/state\.json \(.*not-a-folder is not a folder\)/, 'said before any request');
      assert.equal((await chat(gateway.url, 'vk_budget', ask())).status, 200);
      await new Promise((resolve) => setTimeout(resolve, 1500)); // a write a second
      assert.equal(gateway.stderr().match(/cannot write the state file/g)?.length, 1, gateway.stderr());
    } finally {
      assert.equal(await gateway.stop(), 0);
    }
  });

  it('a state file that cannot be written warns and leaves no temporary file behind', async () => {
    const dir = tempDir();
    // A folder where the file should be: the write succeeds, the rename over it fails.
    mkdirSync(join(dir, 'state.json'));
    const keys = { virtual_keys: { vk_budget: { provider: 'openai', api_key: KEY_A, base_url: openai.baseUrl, budget: { max_tokens: 1000, period: 'day' } } } };
    const gateway = await startGateway({ keys, env: { LOG_CONSOLE: 'off', STATE_FILE: join(dir, 'state.json') } });
    try {
      assert.equal((await chat(gateway.url, 'vk_budget', ask())).status, 200);
      await waitFor(() => /cannot write the state file/.test(gateway.stderr()), 'the failed write reported', 5000);
      assert.deepEqual(readdirSync(dir), ['state.json'], 'no temporary file left after the periodic write');
      // Writes keep failing, once a second: said once, not each time.
      assert.equal((await chat(gateway.url, 'vk_budget', ask())).status, 200);
      await new Promise((resolve) => setTimeout(resolve, 1500));
      assert.equal(gateway.stderr().match(/cannot write the state file/g)?.length, 1, gateway.stderr());
    } finally {
      assert.equal(await gateway.stop(), 0);
    }
    assert.deepEqual(readdirSync(dir), ['state.json'], 'nor after the one at shutdown');
  });
});

describe('several real keys', () => {
  it('spreads requests over them, and skips a key the provider rate-limits while the others serve', async () => {
    const gateway = await startGateway({ keys: { virtual_keys: { vk_pool: { provider: 'openai', api_keys: [KEY_A, KEY_B], base_url: openai.baseUrl } } }, env: { LOG_CONSOLE: 'off', UPSTREAM_RETRIES: '0' } });
    const used = (from: number) => openai.requests.slice(from).map((recorded) => recorded.headers.authorization);
    try {
      let from = openai.requests.length;
      for (let i = 0; i < 4; i++) assert.equal((await chat(gateway.url, 'vk_pool', ask())).status, 200);
      assert.deepEqual(used(from).sort(), [`Bearer ${KEY_A}`, `Bearer ${KEY_A}`, `Bearer ${KEY_B}`, `Bearer ${KEY_B}`]);

      rateLimit(KEY_A, { 'retry-after': '60' });
      from = openai.requests.length;
      const replies = [];
      for (let i = 0; i < 6; i++) replies.push(await chat(gateway.url, 'vk_pool', ask()));
      // At most one request met key A's 429 (UPSTREAM_RETRIES=0); then A sat out and B served.
      assert.ok(replies.filter((reply) => reply.status === 429).length <= 1);
      assert.ok(replies.slice(-5).every((reply) => reply.status === 200));
      assert.ok(used(from).slice(-5).every((auth) => auth === `Bearer ${KEY_B}`));
      const entry = await waitForEntry(gateway.logFile, String(replies.at(-1)?.headers['x-request-id']));
      assert.equal(entry.upstream.api_key, 1, 'the log names the real key by its index');
      assert.doesNotMatch(readFileSync(gateway.logFile, 'utf8'), /controlsKEY/);
    } finally {
      openai.behave(null);
      await gateway.stop();
    }
  });
});

/** The mock answers real key `key` a rate limit (429, with `headers`); other keys as usual. */
function rateLimit(key: string, headers: Record<string, string>, message = 'Rate limit reached for requests'): void {
  openai.behave(({ req, res }) => {
    if (req.headers.authorization !== `Bearer ${key}`) return false;
    res.writeHead(429, { 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify(openAIError(message, 'requests', 'rate_limit_exceeded')));
    return true;
  });
}

/** A gateway whose key `vk_two` has two targets: this file's mock (KEY_A), then a mock of its own (KEY_B). */
async function twoTargets(extra: Record<string, unknown> = {}): Promise<{ gateway: GatewayProcess; close: () => Promise<void> }> {
  const other = await startOpenAIMock({ flavor: 'openai', apiKey: KEY_B });
  const gateway = await startGateway({
    keys: { virtual_keys: { vk_two: { targets: [{ provider: 'openai', api_key: KEY_A, base_url: openai.baseUrl }, { provider: 'openai', api_key: KEY_B, base_url: other.baseUrl }], ...extra } } },
    env: { LOG_CONSOLE: 'off' },
  });
  return { gateway, close: async () => void (await Promise.all([gateway.stop(), other.close()])) };
}

/** OpenAI's 403 for a model the key's project has no access to (its message names the project). */
const MODEL_REFUSAL = JSON.stringify(openAIError('Project `proj_Xy12Ab34` does not have access to model `o3`', 'invalid_request_error', 'model_not_found'));

/** OpenAI's 429 for a used-up quota, its message `padding` longer. */
const quotaBody = (padding = ''): string => JSON.stringify(openAIError(`You exceeded your current quota, please check your plan and billing details.${padding}`, 'insufficient_quota', 'insufficient_quota'));

describe('a model the provider refuses the real keys', () => {
  const refuseO3For = (keys: string[]) =>
    openai.behave(({ req, recorded, res }) => {
      if (recorded.json?.model !== 'o3' || !keys.includes(String(req.headers.authorization).slice(7))) return false;
      res.writeHead(403, { 'content-type': 'application/json' });
      res.end(MODEL_REFUSAL);
      return true;
    });

  it("a 403 that refuses the model (OpenAI's model_not_found: a project without access to it) cools no key: another real key (another project) is asked, and where none has it the client gets 404 model_not_found in its API's shape, the project unnamed; other models keep taking both keys in turn", async () => {
    const gateway = await startGateway({ keys: { virtual_keys: { vk_pool: { provider: 'openai', api_keys: [KEY_A, KEY_B], base_url: openai.baseUrl } } }, env: { LOG_CONSOLE: 'off', UPSTREAM_RETRIES: '2' } });
    const used = (from: number) => openai.requests.slice(from).map((recorded) => recorded.headers.authorization);
    try {
      // Key A's project lacks o3, key B's has it: every o3 request is served, by B.
      refuseO3For([KEY_A]);
      for (let i = 0; i < 3; i++) {
        const from = openai.requests.length;
        const reply = await chat(gateway.url, 'vk_pool', ask('o3'));
        assert.equal(reply.status, 200, reply.text);
        assert.equal(used(from).at(-1), `Bearer ${KEY_B}`);
      }
      // Neither project has it: each key asked once, however many retries.
      refuseO3For([KEY_A, KEY_B]);
      let from = openai.requests.length;
      const refused = await chat(gateway.url, 'vk_pool', ask('o3'));
      assert.equal(refused.status, 404, refused.text);
      assert.equal(refused.json.error.code, 'model_not_found');
      assert.equal(refused.json.error.type, 'invalid_request_error');
      assert.doesNotMatch(refused.text, /proj_Xy12Ab34/);
      assert.deepEqual(used(from).sort(), [`Bearer ${KEY_A}`, `Bearer ${KEY_B}`], 'each key once, not retried');
      const messages = await request(gateway.url, '/v1/messages', { key: 'vk_pool', body: { model: 'o3', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] }, headers: { 'anthropic-version': '2023-06-01' } });
      assert.equal(messages.status, 404, messages.text);
      assert.equal(messages.json.error.type, 'not_found_error');
      const entry = await waitForEntry(gateway.logFile, String(refused.headers['x-request-id']));
      assert.equal(entry.status, 404);
      assert.match(entry.error.detail, /upstream 403 .*proj_Xy12Ab34/, 'the operator sees the provider\'s own words');
      // Neither key sits out: the next four requests still take them in turn.
      from = openai.requests.length;
      for (let i = 0; i < 4; i++) assert.equal((await chat(gateway.url, 'vk_pool', ask())).status, 200);
      assert.deepEqual(used(from).sort(), [`Bearer ${KEY_A}`, `Bearer ${KEY_A}`, `Bearer ${KEY_B}`, `Bearer ${KEY_B}`]);
      // A 403 that refuses the key is still the operator's to fix, and that key sits out.
      openai.behave(({ req, res }) => {
        if (req.headers.authorization !== `Bearer ${KEY_A}`) return false;
        res.writeHead(403, { 'content-type': 'application/json' });
        res.end(JSON.stringify(openAIError('You are not allowed to sample from this model', 'invalid_request_error')));
        return true;
      });
      from = openai.requests.length;
      const replies = [];
      for (let i = 0; i < 4; i++) replies.push(await chat(gateway.url, 'vk_pool', ask()));
      assert.ok(replies.every((reply) => reply.status === 200), replies.map((reply) => reply.text).join('\n'));
      assert.ok(used(from).filter((auth) => auth === `Bearer ${KEY_A}`).length <= 1, 'key A refused once, then sits out');
    } finally {
      openai.behave(null);
      await gateway.stop();
    }
  });

  it('asks each real key once for a model two of three refuse, whatever UPSTREAM_RETRIES (no retry of a refusal the provider did not process)', async () => {
    const KEY_C = 'sk-proj-controlsKEY-C-3333';
    const third = await startOpenAIMock({ flavor: 'openai', apiKey: KEY_A, otherKeys: [KEY_B, KEY_C] });
    const gateway = await startGateway({ keys: { virtual_keys: { vk_three: { provider: 'openai', api_keys: [KEY_A, KEY_B, KEY_C], base_url: third.baseUrl } } }, env: { LOG_CONSOLE: 'off', UPSTREAM_RETRIES: '0' } });
    third.behave(({ req, recorded, res }) => {
      if (recorded.json?.model !== 'o3' || req.headers.authorization === `Bearer ${KEY_C}`) return false;
      res.writeHead(403, { 'content-type': 'application/json' });
      res.end(MODEL_REFUSAL);
      return true;
    });
    try {
      for (let i = 0; i < 4; i++) {
        const reply = await chat(gateway.url, 'vk_three', ask('o3'));
        assert.equal(reply.status, 200, `request ${i}: ${reply.text}`);
        assert.equal(third.requests.at(-1)?.headers.authorization, `Bearer ${KEY_C}`);
      }
    } finally {
      await gateway.stop();
      await third.close();
    }
  });

  it("answers a rate limit, not a model refusal, where the key that may have the model is only cooling: the client retries after it", async () => {
    const gateway = await startGateway({ keys: { virtual_keys: { vk_pair: { provider: 'openai', api_keys: [KEY_A, KEY_B], base_url: openai.baseUrl } } }, env: { LOG_CONSOLE: 'off', UPSTREAM_RETRIES: '0' } });
    openai.behave(({ req, recorded, res }) => {
      if (recorded.json?.model !== 'o3') return false;
      if (req.headers.authorization === `Bearer ${KEY_A}`) {
        res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '20' });
        res.end(JSON.stringify(openAIError('Rate limit reached for requests', 'requests', 'rate_limit_exceeded')));
      } else {
        res.writeHead(403, { 'content-type': 'application/json' });
        res.end(MODEL_REFUSAL);
      }
      return true;
    });
    try {
      for (let i = 0; i < 3; i++) {
        const reply = await request(gateway.url, '/v1/chat/completions', { key: 'vk_pair', body: ask('o3'), headers: { 'x-stainless-retry-count': '0' } });
        assert.equal(reply.status, 429, `request ${i}: ${reply.text}`);
        assert.equal(reply.headers['retry-after'], '20');
      }
    } finally {
      openai.behave(null);
      await gateway.stop();
    }
  });

  it('opens no circuit of a target whose keys a model is refused: its other models are still served by it', async () => {
    const { gateway, close } = await twoTargets();
    refuseO3For([KEY_A]);
    try {
      for (let i = 0; i < 6; i++) {
        const reply = await chat(gateway.url, 'vk_two', ask('o3'));
        assert.equal(reply.status, 200, reply.text);
      }
      const from = openai.requests.length;
      const served = await chat(gateway.url, 'vk_two', ask());
      assert.equal(served.status, 200, served.text);
      assert.equal(openai.requests.length - from, 1, 'the first target serves gpt-4o-mini: not skipped');
    } finally {
      openai.behave(null);
      await close();
    }
  });
});

describe("a real key's quota used up", () => {
  it("a 429 insufficient_quota is not retried on that key: another serves while it sits out, and on a target's only key the client's SDK is told not to retry (x-should-retry: false)", async () => {
    const gateway = await startGateway({
      keys: { virtual_keys: { vk_one: { provider: 'openai', api_key: KEY_A, base_url: openai.baseUrl }, vk_pool: { provider: 'openai', api_keys: [KEY_A, KEY_B], base_url: openai.baseUrl } } },
      env: { LOG_CONSOLE: 'off', UPSTREAM_RETRIES: '2' },
    });
    const used = (from: number) => openai.requests.slice(from).map((recorded) => recorded.headers.authorization);
    // A message of 70 KB: read whole to tell what it refuses (a provider's error is read up to 1 MiB).
    const quota = quotaBody(' '.repeat(70_000));
    openai.behave(({ req, res }) => {
      if (req.headers.authorization !== `Bearer ${KEY_A}`) return false;
      res.writeHead(429, { 'content-type': 'application/json' });
      res.end(quota);
      return true;
    });
    try {
      let from = openai.requests.length;
      const alone = await chat(gateway.url, 'vk_one', ask());
      assert.equal(alone.status, 429, alone.text.slice(0, 200));
      assert.equal(alone.json.error.code, 'insufficient_quota');
      assert.equal(alone.headers['x-should-retry'], 'false');
      assert.equal(openai.requests.length - from, 1, 'no retry of a used-up quota');
      const messages = await request(gateway.url, '/v1/messages', { key: 'vk_one', body: { model: 'gpt-4o-mini', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] }, headers: { 'anthropic-version': '2023-06-01' } });
      assert.equal(messages.status, 429, messages.text.slice(0, 200));
      assert.equal(messages.headers['x-should-retry'], 'false', 'nor by Claude Code or the Anthropic SDKs');
      from = openai.requests.length;
      const replies = [];
      for (let i = 0; i < 5; i++) replies.push(await chat(gateway.url, 'vk_pool', ask()));
      assert.ok(replies.every((reply) => reply.status === 200 && reply.headers['x-should-retry'] === undefined), replies.map((reply) => reply.text.slice(0, 200)).join('\n'));
      assert.ok(used(from).filter((auth) => auth === `Bearer ${KEY_A}`).length <= 1, 'key A asked once at most, then sits out');
      // Both keys' quota used up: no key is free within a minute, and the client is told so.
      openai.behave(({ res }) => {
        res.writeHead(429, { 'content-type': 'application/json' });
        res.end(quota);
        return true;
      });
      const spent = await chat(gateway.url, 'vk_pool', ask());
      assert.equal(spent.status, 429);
      assert.equal(spent.headers['x-should-retry'], 'false');
    } finally {
      openai.behave(null);
      await gateway.stop();
    }
  });

  it('says x-should-retry: false for a used-up quota only where no other target could serve the retry', async () => {
    const { gateway, close } = await twoTargets({ fallback_on: [500, 502, 503] });
    openai.behave(({ res }) => {
      res.writeHead(429, { 'content-type': 'application/json' });
      res.end(quotaBody());
      return true;
    });
    try {
      const first = await chat(gateway.url, 'vk_two', ask());
      assert.equal(first.status, 429, first.text);
      assert.equal(first.headers['x-should-retry'], undefined, 'the next target serves the retry');
      assert.equal((await chat(gateway.url, 'vk_two', ask())).status, 200, 'the first target sits out');
    } finally {
      openai.behave(null);
      await close();
    }
  });

  it("passes no provider's own x-should-retry: an ordinary rate limit another real key serves is the client's to retry", async () => {
    const gateway = await startGateway({ keys: { virtual_keys: { vk_pool: { provider: 'openai', api_keys: [KEY_A, KEY_B], base_url: openai.baseUrl } } }, env: { LOG_CONSOLE: 'off', UPSTREAM_RETRIES: '0' } });
    rateLimit(KEY_A, { 'x-should-retry': 'false' });
    try {
      const replies = [];
      // UPSTREAM_RETRIES=0, a key with one target: key A's 429 is the answer.
      for (let i = 0; i < 2; i++) replies.push(await chat(gateway.url, 'vk_pool', ask()));
      assert.ok(replies.some((reply) => reply.status === 429), replies.map((reply) => reply.status).join());
      for (const reply of replies) assert.equal(reply.headers['x-should-retry'], undefined, reply.text);
    } finally {
      openai.behave(null);
      await gateway.stop();
    }
  });

  // The timeout is a hang's bound, not a measure: a body that drips for ever was waited for whole.
  it('a 403 or 429 whose body is cut short, slow to come or never whole is handled by its status: handed over to another key, the refusing key sitting out', { timeout: 60_000 }, async () => {
    for (const how of ['cut', 'slow', 'drip'] as const) {
      const gateway = await startGateway({ keys: { virtual_keys: { vk_pool: { provider: 'openai', api_keys: [KEY_A, KEY_B], base_url: openai.baseUrl } } }, env: { LOG_CONSOLE: 'off' } });
      const used = (from: number) => openai.requests.slice(from).map((recorded) => recorded.headers.authorization);
      openai.behave(({ req, res }) => {
        if (req.headers.authorization !== `Bearer ${KEY_A}`) return false;
        res.writeHead(429, { 'content-type': 'application/json', 'content-length': how === 'drip' ? '10000000' : '500' });
        res.write('{"error":{"message":"Rate limit');
        if (how === 'cut') setTimeout(() => res.socket?.destroy(), 50);
        // A byte every 100 ms: never idle, never whole.
        if (how === 'drip') {
          const drip = setInterval(() => (res.destroyed ? clearInterval(drip) : res.write(' ')), 100);
          res.once('close', () => clearInterval(drip));
        }
        return true;
      });
      try {
        const from = openai.requests.length;
        const replies = [];
        for (let i = 0; i < 4; i++) replies.push(await chat(gateway.url, 'vk_pool', ask()));
        assert.ok(replies.every((reply) => reply.status === 200), `${how}: ${replies.map((reply) => reply.text).join('\n')}`);
        assert.equal(used(from).filter((auth) => auth === `Bearer ${KEY_A}`).length, 1, `${how}: key A asked once, then sits out`);
      } finally {
        openai.behave(null);
        await gateway.stop();
      }
    }
  });
});

describe('retries', () => {
  let gateway: GatewayProcess;
  before(async () => {
    gateway = await startGateway({
      keys: {
        virtual_keys: {
          vk: { provider: 'openai', api_key: KEY_A, base_url: openai.baseUrl },
          vk_pool: { provider: 'openai', api_keys: [KEY_A, KEY_B], base_url: openai.baseUrl },
          // A pool of its own: a key another test left cooling would not be asked at all.
          vk_pool_handover: { provider: 'openai', api_keys: [KEY_A, KEY_B], base_url: openai.baseUrl },
          vk_down: { provider: 'openai', api_key: KEY_A, base_url: `http://127.0.0.1:${await refusingPort()}/v1` },
        },
      },
      env: { LOG_CONSOLE: 'off', UPSTREAM_RETRY_MAX_DELAY_MS: '3000' },
    });
  });
  after(() => gateway.stop());

  /** The upstream fails the first `failures` calls with `status` (and headers), then answers normally. */
  function failFirst(failures: number, status: number, headers: Record<string, string> = {}): void {
    let count = 0;
    openai.behave(({ res }) => {
      if (count++ >= failures) return false;
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      res.end(JSON.stringify(openAIError(`failure ${count}`, 'server_error')));
      return true;
    });
  }

  for (const status of [429, 500, 502, 503, 504, 529]) {
    it(`retries a ${status} before anything reached the client, and logs every attempt`, async () => {
      failFirst(2, status);
      try {
        const reply = await chat(gateway.url, 'vk', ask());
        assert.equal(reply.status, 200, reply.text);
        const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
        assert.deepEqual(entry.upstream.attempts.map((attempt: { status: number }) => attempt.status), [status, status, 200]);
      } finally {
        openai.behave(null);
      }
    });
  }

  it('gives up after UPSTREAM_RETRIES (2) retries and answers the last error', async () => {
    failFirst(5, 503);
    try {
      const before = upstreamCalls();
      const reply = await chat(gateway.url, 'vk', ask());
      assert.equal(reply.status, 503);
      assert.equal(upstreamCalls() - before, 3);
    } finally {
      openai.behave(null);
    }
  });

  it('retries nothing for a client that retries on its own (the official SDKs and Claude Code by x-stainless-retry-count, Codex, the Vercel AI SDK) but its other real keys: the status and retry-after go to it at once', async () => {
    failFirst(9, 429, { 'retry-after': '1' });
    try {
      const sdk = { 'x-stainless-retry-count': '0' };
      let before = upstreamCalls();
      const alone = await request(gateway.url, '/v1/chat/completions', { key: 'vk', body: ask(), headers: sdk });
      assert.equal(alone.status, 429);
      assert.equal(alone.headers['retry-after'], '1');
      assert.equal(upstreamCalls() - before, 1, 'one attempt: the SDK retries it');
      before = upstreamCalls();
      const pool = await request(gateway.url, '/v1/chat/completions', { key: 'vk_pool', body: ask(), headers: sdk });
      assert.equal(pool.status, 429);
      assert.equal(upstreamCalls() - before, 2, 'each real key once');
      // Codex (its originator) and the Vercel AI SDK (its user-agent) retry on their own too, and say so otherwise.
      for (const others of <Array<Record<string, string>>>[{ originator: 'codex_cli_rs', 'user-agent': 'codex_cli_rs/0.169.0 (Ubuntu 24.4.0; x86_64) xterm-256color' }, { 'user-agent': 'ai/5.0.60 ai-sdk/provider-utils/3.0.10 runtime/node.js/22' }, { 'user-agent': 'ai-sdk-provider-utils/4.0.15 runtime-node/24' }]) {
        before = upstreamCalls();
        const reply = await request(gateway.url, '/v1/chat/completions', { key: 'vk', body: ask(), headers: others });
        assert.equal(reply.status, 429, JSON.stringify(others));
        assert.equal(upstreamCalls() - before, 1, `one attempt: ${JSON.stringify(others)}`);
      }
      // Without it the gateway retries (UPSTREAM_RETRIES), for a user-agent that merely mentions the SDK too.
      failFirst(2, 503);
      assert.equal((await request(gateway.url, '/v1/chat/completions', { key: 'vk', body: ask(), headers: { 'user-agent': 'my-app (uses-ai-sdk-like-things)' } })).status, 200);
    } finally {
      openai.behave(null);
    }
  });

  it('never retries other statuses (400, 401, 404, 422)', async () => {
    for (const status of [400, 401, 404, 422]) {
      failFirst(1, status);
      const before = upstreamCalls();
      const reply = await chat(gateway.url, 'vk', ask());
      assert.notEqual(reply.status, 200, String(status));
      assert.equal(upstreamCalls() - before, 1, `status ${status}`);
    }
    openai.behave(null);
  });

  it('honours retry-after, up to the cap (UPSTREAM_RETRY_MAX_DELAY_MS)', async () => {
    failFirst(1, 503, { 'retry-after': '1' });
    try {
      const started = Date.now();
      const reply = await chat(gateway.url, 'vk', ask());
      assert.equal(reply.status, 200);
      assert.ok(Date.now() - started >= 1000, 'waited the second the provider asked for');
    } finally {
      openai.behave(null);
    }
    failFirst(1, 503, { 'retry-after': '30' });
    try {
      const before = upstreamCalls();
      const reply = await chat(gateway.url, 'vk', ask());
      assert.equal(reply.status, 503, 'a provider asking for more than the cap is not waited for');
      assert.equal(reply.headers['retry-after'], '30');
      assert.equal(upstreamCalls() - before, 1);
    } finally {
      openai.behave(null);
    }
  });

  it('retries a stream whose upstream failed before its first byte, never one that already started', async () => {
    failFirst(1, 502);
    try {
      const reply = await chat(gateway.url, 'vk', ask('gpt-4o-mini', { stream: true }));
      assert.equal(reply.status, 200);
      assert.match(reply.text, /data: \[DONE\]/);
    } finally {
      openai.behave(null);
    }
    openai.behave(({ res }) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(`data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { content: 'half' }, finish_reason: null }] })}\n\n`);
      setTimeout(() => res.socket?.destroy(), 20);
    });
    try {
      const before = upstreamCalls();
      const reply = await chat(gateway.url, 'vk', ask('gpt-4o-mini', { stream: true }));
      assert.match(reply.text, /upstream_connection_lost/);
      assert.equal(upstreamCalls() - before, 1, 'no retry once a byte was sent');
    } finally {
      openai.behave(null);
    }
  });

  it('retries a connection failure, recording each attempt', async () => {
    const reply = await chat(gateway.url, 'vk_down', ask());
    assert.equal(reply.status, 502);
    const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
    assert.deepEqual(entry.upstream.attempts.map((attempt: { error: string }) => attempt.error), ['upstream_unreachable', 'upstream_unreachable', 'upstream_unreachable']);
  });

  it('moves to the next real key at once when one is rate-limited', async () => {
    // Asking for 30 s: waiting first, the retry would be past UPSTREAM_RETRY_MAX_DELAY_MS, so not made.
    rateLimit(KEY_A, { 'retry-after': '30' }, 'Rate limit reached');
    try {
      const started = Date.now();
      for (let i = 0; i < 3; i++) assert.equal((await chat(gateway.url, 'vk_pool_handover', ask())).status, 200);
      assert.ok(Date.now() - started < 1500, 'no waiting (a wait would be UPSTREAM_RETRY_MAX_DELAY_MS, 3 s)');
    } finally {
      openai.behave(null);
    }
  });
});

describe('limits under pressure', () => {
  it('charges an estimate for a stream the client dropped before its usage chunk (no free tokens)', async () => {
    const gateway = await startGateway({ keys: { virtual_keys: { vk: { provider: 'openai', api_key: KEY_A, base_url: openai.baseUrl, rate_limit: { tokens_per_minute: 100000 } } } }, env: { LOG_CONSOLE: 'off' } });
    openai.behave(async ({ res }) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      for (let i = 0; i < 40 && !res.destroyed; i++) {
        res.write(`data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { content: 'tok ' }, finish_reason: null }] })}\n\n`);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    });
    try {
      const { openStream } = await import('./support/http.js');
      const { res, req } = await openStream(gateway.url, 'vk', ask('gpt-4o-mini', { stream: true }));
      await new Promise((resolve) => setTimeout(resolve, 200));
      req.destroy();
      res.destroy();
      openai.behave(null);
      // Its spend, once settled: the prompt's estimate and a token per event relayed (nothing else
      // ran; an estimate counts in the total only, no provider having said how it splits).
      const usage = async (): Promise<{ requests: number; usage: { total_tokens: number } }> => (await request(gateway.url, '/v1/usage', { method: 'GET', key: 'vk' })).json;
      await waitFor(async () => (await usage()).requests === 1, 'the dropped stream settled');
      const spent = (await usage()).usage;
      assert.ok(spent.total_tokens > 10, `the dropped stream was charged: ${JSON.stringify(spent)}`);
    } finally {
      openai.behave(null);
      await gateway.stop();
    }
  });

  it('counts requests in flight (their prompt and max_tokens) against the budget', async () => {
    const gateway = await startGateway({ keys: { virtual_keys: { vk: { provider: 'openai', api_key: KEY_A, base_url: openai.baseUrl, budget: { max_tokens: 150, period: 'total' } } } }, env: { LOG_CONSOLE: 'off' } });
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    openai.behave(async () => {
      await held;
      return false;
    });
    try {
      // Each request reserves ~ its prompt (~25 tokens) + max_tokens 60 = ~85: only one fits in 150 at a time... two do not.
      const replies = Promise.all([0, 1, 2].map(() => chat(gateway.url, 'vk', ask('gpt-4o-mini', { max_tokens: 60 }))));
      await new Promise((resolve) => setTimeout(resolve, 300));
      release();
      const statuses = (await replies).map((reply) => reply.status).sort();
      assert.deepEqual(statuses, [200, 200, 429]);
    } finally {
      release();
      openai.behave(null);
      await gateway.stop();
    }
  });

  it('keeps budgets and tokens per minute for the whole cluster, and saves budgets when it stops', async () => {
    const dir = tempDir();
    const logFile = join(dir, 'logs', 'llm_interactions.json');
    const gateway = await startGateway({
      keys: { virtual_keys: { vk: { provider: 'openai', api_key: KEY_A, base_url: openai.baseUrl, budget: { max_tokens: 50, period: 'month' } } } },
      env: { LOG_CONSOLE: 'off', GATEWAY_WORKERS: '2', LOG_FILE: logFile },
      logFile,
    });
    // Each request waits until the one before has settled in the primary (a worker settles after
    // answering): a reservation still held would refuse a request the budget has room for.
    const settled = async (): Promise<boolean> => (await request(gateway.url, '/v1/usage', { method: 'GET', key: 'vk' })).json.in_flight.tokens === 0;
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) {
      await waitFor(settled, 'the request before settled');
      statuses.push((await chat(gateway.url, 'vk', ask())).status);
    }
    assert.deepEqual(statuses, [200, 200, 200, 429, 429, 429], '18 tokens each: the third passes at 36 < 50, then the budget is used');
    assert.equal(await gateway.stop('SIGTERM'), 0);
    assert.match(readFileSync(join(dir, 'logs', 'gateway_state.json'), 'utf8'), /"tokens": 54/);
  });
});

describe('several real keys, when one is refused', () => {
  let gateway: GatewayProcess;
  before(async () => {
    const two = { virtual_keys: {
      vk_pool: { provider: 'openai', api_keys: [KEY_A, KEY_B], base_url: openai.baseUrl },
      // Pools of their own: a key another test left cooling would not be asked at all.
      vk_pool_429: { provider: 'openai', api_keys: [KEY_A, KEY_B], base_url: openai.baseUrl },
      vk_pool_401: { provider: 'openai', api_keys: [KEY_A, KEY_B], base_url: openai.baseUrl },
      // Two targets on one server (a shared proxy): the second's answer may echo the first's key.
      vk_fallback: { targets: [{ provider: 'openai', api_key: KEY_A, base_url: openai.baseUrl }, { provider: 'openai', api_key: KEY_B, base_url: openai.baseUrl }] },
    } };
    gateway = await startGateway({ keys: two, env: { LOG_CONSOLE: 'off', UPSTREAM_RETRY_MAX_DELAY_MS: '3000' } });
  });
  after(() => gateway.stop());

  it("takes every real key the request may have sent out of what the provider answers: another key's in turn, a fallback target's (a shared server that echoes another request's key)", async () => {
    // Answers with the key it was not sent this time, and refuses KEY_A with a 429 when asked to.
    let refuseA = false;
    openai.behave(({ req, res, recorded }) => {
      const sent = req.headers.authorization === `Bearer ${KEY_A}` ? KEY_A : KEY_B;
      if (refuseA && sent === KEY_A) {
        res.writeHead(429, { 'content-type': 'application/json' });
        res.end(JSON.stringify(openAIError('Rate limit reached', 'requests', 'rate_limit_exceeded')));
        return true;
      }
      const other = sent === KEY_A ? KEY_B : KEY_A;
      if (recorded.json?.stream !== true) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, message: { role: 'assistant', content: `the last caller used ${other}` }, finish_reason: 'stop' }], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } }));
        return true;
      }
      // Content events the gateway passes on as bytes, each in a write of its own.
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const chunk = (delta: unknown, finish: string | null) => `data: ${JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
      res.write(chunk({ role: 'assistant', content: '' }, null));
      setTimeout(() => res.write(chunk({ content: `the last caller used ${other}` }, null)), 20);
      setTimeout(() => res.end(`${chunk({}, 'stop')}data: [DONE]\n\n`), 40);
      return true;
    });
    try {
      for (const [key, stream] of [['vk_pool', false], ['vk_pool', false], ['vk_pool', true], ['vk_pool', true], ['vk_fallback', false], ['vk_fallback', true]] as const) {
        refuseA = key === 'vk_fallback';
        const reply = await chat(gateway.url, key, { ...ask(), stream });
        assert.equal(reply.status, 200, reply.text);
        assert.match(reply.text, /the last caller used \[redacted\]/, `${key}, stream: ${stream}`);
        assert.ok(!reply.text.includes(KEY_A) && !reply.text.includes(KEY_B), reply.text);
        const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
        const logged = JSON.stringify(entry);
        assert.ok(!logged.includes(KEY_A) && !logged.includes(KEY_B), logged);
        assert.match(logged, /the last caller used \[redacted\]/);
      }
    } finally {
      openai.behave(null);
    }
  });

  // Each asks for 60 s: a retry that waited would wait past UPSTREAM_RETRY_MAX_DELAY_MS, so would
  // not be made, and the client would get the refusal.
  for (const [status, headers] of [
    [429, { 'retry-after': '60' }],
    [401, { 'retry-after': '60' }],
  ] as const) {
    it(`a ${status} from one key (even asking for 60 s) hands the request to the other at once`, async () => {
      openai.behave(({ req, res }) => {
        if (req.headers.authorization !== `Bearer ${KEY_A}`) return false;
        res.writeHead(status, { 'content-type': 'application/json', ...headers });
        res.end(JSON.stringify(openAIError('refused', 'requests')));
        return true;
      });
      try {
        const started = Date.now();
        for (let i = 0; i < 3; i++) {
          const reply = await chat(gateway.url, `vk_pool_${status}`, ask());
          assert.equal(reply.status, 200, reply.text);
        }
        assert.ok(Date.now() - started < 1500, 'no waiting (a wait would be UPSTREAM_RETRY_MAX_DELAY_MS, 3 s)');
      } finally {
        openai.behave(null);
      }
    });
  }

  it('backs off (honouring retry-after) when every key is cooling down', async () => {
    openai.behave(({ res }) => {
      res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '1' });
      res.end(JSON.stringify(openAIError('Rate limit reached', 'requests', 'rate_limit_exceeded')));
      return true;
    });
    try {
      const started = Date.now();
      const before = upstreamCalls();
      const reply = await chat(gateway.url, 'vk_pool', ask());
      assert.equal(reply.status, 429);
      assert.equal(upstreamCalls() - before, 3);
      assert.ok(Date.now() - started >= 1000, 'waited for the retry-after instead of hammering');
    } finally {
      openai.behave(null);
    }
  });
});

describe('a credential in a base URL\'s query', () => {
  it('is taken out of what the provider echoes (a 404 saying the path it was asked, an answer, a model list), as a real key is', async () => {
    const secret = 'AIzaSyQueryCredential0123456789';
    const gateway = await startGateway({ keys: { virtual_keys: { vk_query: { provider: 'openai', api_key: KEY_A, base_url: `${openai.baseUrl}?api-version=2024-10-21&key=${secret}` } } }, env: { LOG_CONSOLE: 'off', UPSTREAM_RETRIES: '0' } });
    let status = 404;
    openai.behave(({ req, res }) => {
      if (status === 404) {
        // As Express says it: the path and query it was asked.
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(JSON.stringify(openAIError(`Cannot ${req.method} ${req.url}`, 'invalid_request_error')));
      } else {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, message: { role: 'assistant', content: `you asked ${req.url}` }, finish_reason: 'stop' }], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } }));
      }
      return true;
    });
    try {
      for (const answer of [404, 200]) {
        status = answer;
        const reply = await chat(gateway.url, 'vk_query', ask());
        assert.equal(reply.status, answer, reply.text);
        assert.ok(!reply.text.includes(secret), reply.text);
        assert.match(reply.text, /api-version=2024-10-21&key=\[redacted\]/, 'the rest of the query stays');
        const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
        assert.ok(!JSON.stringify(entry).includes(secret), JSON.stringify(entry));
      }
      status = 404;
      const models = await request(gateway.url, '/v1/models?refresh=1', { method: 'GET', key: 'vk_query' });
      assert.ok(!models.text.includes(secret), models.text);
    } finally {
      openai.behave(null);
      await gateway.stop();
    }
  });
});

describe('retries that must not happen', () => {
  it('a connection reset after the request was sent is not retried (it may have been billed)', async () => {
    const gateway = await startGateway({ keys: { virtual_keys: { vk: { provider: 'openai', api_key: KEY_A, base_url: openai.baseUrl } } }, env: { LOG_CONSOLE: 'off' } });
    openai.behave(({ req }) => {
      req.socket.resetAndDestroy();
      return true;
    });
    try {
      const before = upstreamCalls();
      const reply = await chat(gateway.url, 'vk', ask());
      assert.equal(reply.status, 502);
      assert.equal(upstreamCalls() - before, 1, 'one delivery only (a fresh connection: no stale-socket resend either)');
    } finally {
      openai.behave(null);
      await gateway.stop();
    }
  });

  it('a client leaving during a backoff stops the retries; the entry keeps the attempt', async () => {
    const gateway = await startGateway({ keys: { virtual_keys: { vk: { provider: 'openai', api_key: KEY_A, base_url: openai.baseUrl } } }, env: { LOG_CONSOLE: 'off' } });
    openai.behave(({ res }) => {
      res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '2' });
      res.end(JSON.stringify(openAIError('busy', 'server_error')));
      return true;
    });
    try {
      const before = upstreamCalls();
      const { default: http } = await import('node:http');
      const req = http.request(`${gateway.url}/v1/chat/completions`, { method: 'POST', agent: false, headers: { authorization: 'Bearer vk', 'content-type': 'application/json' } });
      req.on('error', () => {});
      req.end(JSON.stringify(ask()));
      await new Promise((resolve) => setTimeout(resolve, 400));
      req.destroy();
      await new Promise((resolve) => setTimeout(resolve, 2500));
      assert.equal(upstreamCalls() - before, 1, 'no retry for a client that left');
      const { readLogFile } = await import('./support/gateway.js');
      const entry = readLogFile(gateway.logFile).at(-1);
      assert.equal(entry?.status, 499);
      assert.equal(entry?.upstream.attempts[0].status, 503);
    } finally {
      openai.behave(null);
      await gateway.stop();
    }
  });
});

describe('CORS', () => {
  it('never exposes /metrics or /healthz to browsers, even with CORS_ORIGINS=*', async () => {
    const gateway = await startGateway({ keys: { virtual_keys: { vk: { provider: 'mock' } } }, env: { LOG_CONSOLE: 'off', CORS_ORIGINS: '*' } });
    try {
      for (const path of ['/metrics', '/healthz']) {
        const reply = await request(gateway.url, path, { method: 'GET', headers: { origin: 'https://evil.example' } });
        assert.equal(reply.headers['access-control-allow-origin'], undefined, path);
        const preflight = await request(gateway.url, path, { method: 'OPTIONS', headers: { origin: 'https://evil.example', 'access-control-request-method': 'GET' } });
        assert.notEqual(preflight.status, 204, path);
      }
      const chatReply = await request(gateway.url, '/v1/chat/completions', { key: 'vk', body: ask(), headers: { origin: 'https://any.example' } });
      assert.equal(chatReply.headers['access-control-allow-origin'], '*');
    } finally {
      await gateway.stop();
    }
  });

  it('is off by default: no CORS headers, a preflight gets 405', async () => {
    const gateway = await startGateway({ keys: { virtual_keys: { vk: { provider: 'mock' } } }, env: { LOG_CONSOLE: 'off' } });
    try {
      const preflight = await request(gateway.url, '/v1/chat/completions', { method: 'OPTIONS', headers: { origin: 'https://app.example.com', 'access-control-request-method': 'POST' } });
      assert.equal(preflight.status, 405);
      assert.equal(preflight.headers['access-control-allow-origin'], undefined);
      const reply = await request(gateway.url, '/v1/chat/completions', { key: 'vk', body: ask(), headers: { origin: 'https://app.example.com' } });
      assert.equal(reply.headers['access-control-allow-origin'], undefined);
    } finally {
      await gateway.stop();
    }
  });

  it('answers preflights and adds CORS headers for the listed origins only', async () => {
    const gateway = await startGateway({ keys: { virtual_keys: { vk: { provider: 'mock' } } }, env: { LOG_CONSOLE: 'off', CORS_ORIGINS: 'https://app.example.com,http://localhost:3000' } });
    try {
      const preflight = await request(gateway.url, '/v1/chat/completions', {
        method: 'OPTIONS',
        headers: { origin: 'https://app.example.com', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
      });
      assert.equal(preflight.status, 204);
      assert.equal(preflight.headers['access-control-allow-origin'], 'https://app.example.com');
      assert.match(String(preflight.headers['access-control-allow-methods']), /POST/);
      assert.match(String(preflight.headers['access-control-allow-headers']), /authorization/);
      assert.equal(preflight.headers.vary, 'Origin, Access-Control-Request-Headers');
      assert.equal(preflight.headers['access-control-allow-methods'], 'POST, OPTIONS');
      const reply = await request(gateway.url, '/v1/chat/completions', { key: 'vk', body: ask(), headers: { origin: 'http://localhost:3000' } });
      assert.equal(reply.status, 200);
      assert.equal(reply.headers['access-control-allow-origin'], 'http://localhost:3000');
      assert.match(String(reply.headers['access-control-expose-headers']), /x-request-id/);
      const stranger = await request(gateway.url, '/v1/chat/completions', { key: 'vk', body: ask(), headers: { origin: 'https://evil.example' } });
      assert.equal(stranger.headers['access-control-allow-origin'], undefined);
      assert.equal(stranger.headers.vary, 'Origin', 'caches must not reuse it for a listed origin');
    } finally {
      await gateway.stop();
    }
  });

  it('allows on each stored-response route the methods it serves, DELETE included', async () => {
    const gateway = await startGateway({ keys: { virtual_keys: { vk: { provider: 'mock' } } }, env: { LOG_CONSOLE: 'off', CORS_ORIGINS: 'https://app.example.com' } });
    try {
      const expected: Array<[string, string, string]> = [
        ['/v1/responses/resp_123', 'DELETE', 'GET, DELETE, OPTIONS'],
        ['/responses/resp_123', 'DELETE', 'GET, DELETE, OPTIONS'],
        ['/v1/responses/resp_123/cancel', 'POST', 'POST, OPTIONS'],
        ['/v1/responses/resp_123/input_items', 'GET', 'GET, OPTIONS'],
        ['/v1/models', 'GET', 'GET, OPTIONS'],
        ['/v1/usage', 'GET', 'GET, OPTIONS'],
      ];
      for (const [path, method, allowed] of expected) {
        const preflight = await request(gateway.url, path, { method: 'OPTIONS', headers: { origin: 'https://app.example.com', 'access-control-request-method': method } });
        assert.equal(preflight.status, 204, path);
        assert.equal(preflight.headers['access-control-allow-origin'], 'https://app.example.com', path);
        assert.equal(preflight.headers['access-control-allow-methods'], allowed, path);
      }
    } finally {
      await gateway.stop();
    }
  });
});
