/**
 * REDIS_URL: `redis://[user:password@]host[:port][/db]`, or `rediss://…` for TLS. The password
 * is a secret: it is never printed; `describeRedis` names the server without it.
 */
export interface RedisAddress {
  readonly tls: boolean;
  readonly host: string;
  readonly port: number;
  /** ACL user (Redis 6+); null: the default user. */
  readonly user: string | null;
  readonly password: string | null;
  readonly db: number;
}

/** The address, or a problem in words (never quoting the password). */
export function parseRedisUrl(text: string): RedisAddress | string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return 'must be a URL like redis://host:6379/0 or rediss://user:password@host:6380/0';
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') return `must start with redis:// or rediss:// (TLS), not ${url.protocol}//`;
  if (url.hostname === '') return 'needs a host: redis://host:6379/0';
  const path = url.pathname.replace(/^\//, '');
  if (path !== '' && !/^\d{1,2}$/.test(path)) return 'has a path that is not a database number (0 to 99): redis://host:6379/0';
  if (url.search !== '' || url.hash !== '') return 'takes no query string or fragment';
  const decode = (value: string): string | null => (value === '' ? null : decodeURIComponent(value));
  try {
    decode(url.username);
    decode(url.password);
  } catch {
    return 'has a malformed %-escape in its user or password';
  }
  // AUTH takes a user only with its password: a user alone would be dropped, connecting as the default user.
  if (url.username !== '' && url.password === '') return 'names a user without a password: give both (redis://user:password@host:6379/0), or neither for the default user';
  return {
    tls: url.protocol === 'rediss:',
    host: url.hostname.replace(/^\[|\]$/g, ''),
    port: url.port === '' ? 6379 : Number(url.port),
    user: decode(url.username),
    password: decode(url.password),
    db: path === '' ? 0 : Number(path),
  };
}

/** The server, for messages: scheme, host, port, db, the user but never the password. */
export function describeRedis(address: RedisAddress): string {
  const user = address.user === null ? '' : `${address.user}@`;
  return `${address.tls ? 'rediss' : 'redis'}://${user}${address.host.includes(':') ? `[${address.host}]` : address.host}:${address.port}/${address.db}`;
}

/** Where the start-up line says a key's limits are counted: shared through Redis, or by this instance alone. */
export function limitsShown(address: RedisAddress | null): string {
  return address === null ? 'counted by this instance alone (no REDIS_URL)' : `shared in Redis at ${describeRedis(address)}`;
}
