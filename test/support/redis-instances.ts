/**
 * Gateway instances (separate processes) that share limits through a test Redis: how the Redis
 * e2e tests start them, ask them and wait for them to connect.
 */
import { RedisClient } from '../../src/redis/client.js';
import type { RedisAddress } from '../../src/redis/url.js';
import { startGateway, waitFor, type GatewayProcess } from './gateway.js';
import { request } from './http.js';

export const ask = { model: 'mock-echo', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] };
export const get = (gateway: GatewayProcess, path: string, key?: string) => request(gateway.url, path, { method: 'GET', ...(key === undefined ? {} : { key }) });

/** REDIS_TIMEOUT_MS 500: on a busy CI machine a reply can take over the default 100 ms, and a fallback would change what a test counts. */
export const REDIS_WAIT_MS = 500;

/** How many workers serve each instance (GATEWAY_WORKERS), where more than one. */
const workersOf = new WeakMap<GatewayProcess, number>();

export async function start(keys: unknown, redisUrl: string, env: Record<string, string> = {}): Promise<GatewayProcess> {
  const gateway = await startGateway({ keys, env: { LOG_CONSOLE: 'off', KEYS_WATCH: 'off', REDIS_URL: redisUrl, REDIS_TIMEOUT_MS: String(REDIS_WAIT_MS), ...env } });
  if (env.GATEWAY_WORKERS !== undefined) workersOf.set(gateway, Number(env.GATEWAY_WORKERS));
  return gateway;
}

export function workers(gateway: GatewayProcess): number {
  return workersOf.get(gateway) ?? 1;
}

/** Connected: every worker of it (/healthz answers for the one worker that takes it). */
export async function redisUp(gateway: GatewayProcess): Promise<void> {
  const count = workers(gateway);
  // The instance's gauge is the least of its workers': 1 once every one is connected.
  const up = count === 1 ? async () => (await get(gateway, '/healthz')).json?.redis === 'ok' : async () => /^llm_gateway_redis_up 1$/m.test((await get(gateway, '/metrics')).text);
  await waitFor(up, 'Redis connected', 10_000);
}

/** A client of our own to the test Redis, once connected. */
export function connect(address: RedisAddress): Promise<RedisClient> {
  return new Promise((resolve) => {
    const client: RedisClient = new RedisClient({ address, connectTimeoutMs: 2000, staleMs: 2000, onState: (error) => error === null && resolve(client) });
    client.connect();
  });
}
