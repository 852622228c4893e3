import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, isLoopback, loadConfig } from '../src/config.js';
import { usableCores } from '../src/cores.js';

describe('loadConfig', () => {
  it('has the documented defaults', () => {
    assert.deepEqual(loadConfig({}), {
      keysFile: 'keys.json',
      port: 8080,
      host: undefined,
      logFile: 'logs/llm_interactions.json',
      logConsole: 'pretty',
      logBodyMaxBytes: null,
      maxBodyBytes: 20 * 1024 * 1024,
      maxBodiesBytes: 1024 * 1024 * 1024,
      anthropicDefaultMaxTokens: 4096,
      shutdownTimeoutMs: 30_000,
      upstream: { timeoutMs: 600_000, idleTimeoutMs: 300_000, retries: 2, retryMaxDelayMs: 20_000, totalTimeoutMs: 600_000 },
      metricsToken: null,
      headersTimeoutMs: 66000,
      workers: 1,
      keysWatch: true,
      stateFile: 'logs/gateway_state.json',
      pricesFile: null,
      redis: null,
      corsOrigins: [],
      misspelt: [],
    });
  });

  it('reads every variable', () => {
    const config = loadConfig({
      KEYS_FILE: 'k.json',
      GATEWAY_PORT: '9000',
      GATEWAY_HOST: '127.0.0.1',
      LOG_FILE: 'off',
      LOG_CONSOLE: 'json',
      LOG_BODY_MAX_BYTES: '65536',
      GATEWAY_MAX_BODY_BYTES: '1024',
      GATEWAY_MAX_BODIES_BYTES: '4096',
      ANTHROPIC_DEFAULT_MAX_TOKENS: '1000',
      GATEWAY_SHUTDOWN_TIMEOUT_MS: '500',
      UPSTREAM_TIMEOUT_MS: '2000',
      UPSTREAM_IDLE_TIMEOUT_MS: '300',
      METRICS_TOKEN: 'scrape-me',
      GATEWAY_HEADERS_TIMEOUT_MS: '5000',
      GATEWAY_WORKERS: '3',
      KEYS_WATCH: 'off',
      UPSTREAM_RETRIES: '0',
      UPSTREAM_RETRY_MAX_DELAY_MS: '5000',
      UPSTREAM_TOTAL_TIMEOUT_MS: '9000',
      STATE_FILE: 'off',
      PRICES_FILE: 'prices.json',
      CORS_ORIGINS: 'https://app.example.com, http://localhost:3000/',
    });
    assert.deepEqual(config, {
      keysFile: 'k.json',
      port: 9000,
      host: '127.0.0.1',
      logFile: null,
      logConsole: 'json',
      logBodyMaxBytes: 65536,
      maxBodyBytes: 1024,
      maxBodiesBytes: 4096,
      anthropicDefaultMaxTokens: 1000,
      shutdownTimeoutMs: 500,
      upstream: { timeoutMs: 2000, idleTimeoutMs: 300, retries: 0, retryMaxDelayMs: 5000, totalTimeoutMs: 9000 },
      metricsToken: 'scrape-me',
      headersTimeoutMs: 5000,
      workers: 3,
      keysWatch: false,
      stateFile: null,
      pricesFile: 'prices.json',
      redis: null,
      corsOrigins: ['https://app.example.com', 'http://localhost:3000'],
      misspelt: [],
    });
    assert.equal(loadConfig({ GATEWAY_WORKERS: 'auto' }).workers, usableCores());
  });

  it('takes CORS_ORIGINS as browsers send Origin: scheme and host in lower case, no default port', () => {
    assert.deepEqual(loadConfig({ CORS_ORIGINS: 'HTTPS://App.Example.com, https://b.com:443, http://c.com:80/, http://d.com:8080, *' }).corsOrigins, [
      'https://app.example.com',
      'https://b.com',
      'http://c.com',
      'http://d.com:8080',
      '*',
    ]);
    for (const notOrigin of ['https://a.com:99999', 'https://a.com@evil.com', 'https://user:pw@a.com', 'https://a.com?x', 'https://a.com#f', 'https://a.com\\b']) {
      assert.throws(() => loadConfig({ CORS_ORIGINS: notOrigin }), /CORS_ORIGINS must list origins/, notOrigin);
    }
  });

  it('names a variable set that is a typo of a setting (ignored otherwise without a word), and no other', () => {
    const config = loadConfig({ GATEWAY_WORKER: '2', UPSTREAM_TIMEOUT: '5000', LOG_BODY_MAX_BYTE: '1000', gateway_port: '9000', KEYS_PATH: 'keys.json', UPSTREAM_RETRY: '3', GATEWAY_HOSTNAME: '0.0.0.0', LOG_LEVEL: 'debug', PATH: '/usr/bin', HOSTNAME: 'box', REDIS_HOST: 'redis', NODE_ENV: 'production' });
    assert.deepEqual(config.misspelt, [
      'GATEWAY_WORKER is not a setting of this gateway and is ignored: did you mean GATEWAY_WORKERS?',
      'UPSTREAM_TIMEOUT is not a setting of this gateway and is ignored: did you mean UPSTREAM_TIMEOUT_MS?',
      'LOG_BODY_MAX_BYTE is not a setting of this gateway and is ignored: did you mean LOG_BODY_MAX_BYTES?',
      'gateway_port is not a setting of this gateway and is ignored: did you mean GATEWAY_PORT?',
      'KEYS_PATH is not a setting of this gateway and is ignored: did you mean KEYS_FILE?',
      'UPSTREAM_RETRY is not a setting of this gateway and is ignored: did you mean UPSTREAM_RETRIES?',
      'GATEWAY_HOSTNAME is not a setting of this gateway and is ignored: did you mean GATEWAY_HOST?',
    ]);
    assert.equal(config.workers, 1);
  });

  it('holds a request\'s reservation in Redis 2 minutes unless renewed (REDIS_HOLD_MS), from 1 s to an hour', () => {
    assert.equal(loadConfig({ REDIS_URL: 'redis://127.0.0.1:6379' }).redis?.holdMs, 120_000);
    assert.equal(loadConfig({ REDIS_URL: 'redis://127.0.0.1:6379', REDIS_HOLD_MS: '30000' }).redis?.holdMs, 30_000);
    assert.throws(() => loadConfig({ REDIS_URL: 'redis://127.0.0.1:6379', REDIS_HOLD_MS: '500' }), /REDIS_HOLD_MS must be an integer from 1000 to 3600000, got "500"/);
  });

  it('reads enumerated values in any case, and quotes a bad one as written', () => {
    const config = loadConfig({ LOG_CONSOLE: 'JSON', KEYS_WATCH: 'OFF', REDIS_URL: 'redis://127.0.0.1:6379', REDIS_FAILURE: 'Closed', GATEWAY_WORKERS: 'AUTO' });
    assert.equal(config.logConsole, 'json');
    assert.equal(config.keysWatch, false);
    assert.equal(config.redis?.failure, 'closed');
    assert.equal(config.workers, usableCores());
    assert.equal(loadConfig({ LOG_CONSOLE: 'Off', KEYS_WATCH: 'On' }).logConsole, 'off');
    assert.throws(
      () => loadConfig({ LOG_CONSOLE: 'Loud', KEYS_WATCH: 'No', REDIS_FAILURE: 'Maybe' }),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.deepEqual(err.problems, [
          'KEYS_WATCH must be "on" or "off", got "No"',
          'REDIS_FAILURE must be "open" or "closed", got "Maybe"',
          'LOG_CONSOLE must be "pretty", "json" or "off", got "Loud"',
        ]);
        return true;
      },
    );
  });

  it('reports every bad value at once', () => {
    assert.throws(
      () => loadConfig({ GATEWAY_PORT: '80a', LOG_CONSOLE: 'loud', GATEWAY_MAX_BODY_BYTES: '0', GATEWAY_WORKERS: 'many' }),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.equal(err.problems.length, 4);
        assert.match(err.message, /GATEWAY_WORKERS must be an integer from 1 to 1024 or "auto", got "many"/);
        assert.match(err.message, /GATEWAY_PORT must be an integer from 0 to 65535, got "80a"/);
        assert.match(err.message, /LOG_CONSOLE must be "pretty", "json" or "off", got "loud"/);
        assert.match(err.message, /GATEWAY_MAX_BODY_BYTES must be an integer/);
        return true;
      },
    );
  });
});

describe('isLoopback', () => {
  it('tells loopback listen addresses (where /metrics may go without a token) from the rest', () => {
    for (const host of ['127.0.0.1', '127.1.2.3', 'localhost', '::1', '[::1]', '::ffff:127.0.0.1']) assert.equal(isLoopback(host), true, host);
    for (const host of [undefined, '0.0.0.0', '::', '10.0.0.5', '192.168.1.1', 'gateway.internal', '::ffff:10.0.0.1']) assert.equal(isLoopback(host), false, String(host));
  });
});
