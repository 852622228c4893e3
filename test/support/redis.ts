/**
 * A real redis-server for tests, on a free port in a temporary folder: plain, with a password and
 * an ACL user, or TLS with a self-signed CA (made with openssl). Needs redis-server (.ci/run
 * installs Debian's); tests that need it are skipped, saying so, where there is none.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { endWithFile } from './children.js';
import { tempDir } from './gateway.js';
import { freePort, holdPort } from './ports.js';

export const REDIS_SERVER = ['/usr/bin/redis-server', '/usr/local/bin/redis-server'].find((path) => existsSync(path)) ?? (spawnSync('which', ['redis-server']).stdout?.toString().trim() || null);
export const NO_REDIS = REDIS_SERVER === null ? 'redis-server is not installed (.ci/run installs it)' : false;

export interface RedisOptions {
  /** `requirepass` for the default user. */
  readonly password?: string;
  /** An ACL user: [name, password, its rules (default: its keys and every command)]. */
  readonly user?: readonly [string, string, string?];
  /** TLS only (no plain port), with a certificate for localhost and 127.0.0.1 signed by a CA of its own. */
  readonly tls?: boolean;
}

export interface TestRedis {
  readonly port: number;
  readonly dir: string;
  /** The CA that signed its certificate (TLS). */
  readonly caFile: string;
  /** redis:// or rediss:// URL on localhost, with the given credentials. */
  url(credentials?: string, db?: number): string;
  /** Stops it (SIGKILL: as a crash would). */
  kill(): Promise<void>;
  /** Starts it again on the same port, empty. */
  restart(): Promise<void>;
  /** Sends it a signal (SIGSTOP: a server that accepts connections and answers nothing). */
  signal(signal: NodeJS.Signals): void;
  stop(): Promise<void>;
}

function makeCertificates(dir: string): void {
  const run = (args: string[]): void => {
    const result = spawnSync('openssl', args, { cwd: dir, stdio: 'pipe' });
    if (result.status !== 0) throw new Error(`openssl ${args[0]} failed: ${result.stderr.toString()}`);
  };
  run(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=llm-gateway test CA']);
  run(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost']);
  spawnSync('sh', ['-c', 'printf "subjectAltName=DNS:localhost,IP:127.0.0.1\\n" > ext.cnf'], { cwd: dir });
  run(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'ext.cnf']);
}

export async function startRedis(options: RedisOptions = {}): Promise<TestRedis> {
  if (REDIS_SERVER === null) throw new Error('redis-server is not installed');
  const dir = tempDir();
  const port = await freePort();
  if (options.tls === true) makeCertificates(dir);
  const args = ['--save', '', '--appendonly', 'no', '--dir', dir, '--bind', '127.0.0.1'];
  if (options.tls === true) args.push('--port', '0', '--tls-port', String(port), '--tls-cert-file', 'server.pem', '--tls-key-file', 'server.key', '--tls-ca-cert-file', 'ca.pem', '--tls-auth-clients', 'no');
  else args.push('--port', String(port));
  if (options.password !== undefined) args.push('--requirepass', options.password);
  if (options.user !== undefined) args.push('--user', options.user[0], 'on', `>${options.user[1]}`, ...(options.user[2] ?? '~llmgw:* &* +@all').split(' '));
  let child: ChildProcess | null = null;
  // Its port is held while it is down: let go of, the port could be given to another test file's
  // server, and the gateways here would talk to that one.
  let release: (() => void) | null = null;

  const start = (): Promise<void> => {
    release?.();
    release = null;
    return new Promise((resolve, reject) => {
      const started = endWithFile(spawn(REDIS_SERVER as string, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] }));
      child = started;
      let out = '';
      const timer = setTimeout(() => reject(new Error(`redis-server did not start:\n${out}`)), 10_000);
      started.stdout?.setEncoding('utf8').on('data', (text: string) => {
        out += text;
        if (/Ready to accept connections/.test(out)) {
          clearTimeout(timer);
          resolve();
        }
      });
      started.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`redis-server exited with ${code}:\n${out}`));
      });
    });
  };

  const kill = async (): Promise<void> => {
    const running = child;
    if (running === null || running.exitCode !== null || running.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      running.once('exit', () => resolve());
      running.kill('SIGKILL');
    });
    release = await holdPort(port);
  };

  await start();
  return {
    port,
    dir,
    caFile: join(dir, 'ca.pem'),
    url: (credentials, db = 0) => `${options.tls === true ? 'rediss' : 'redis'}://${credentials === undefined ? '' : `${credentials}@`}${options.tls === true ? 'localhost' : '127.0.0.1'}:${port}/${db}`,
    kill,
    signal: (signal) => void (child as ChildProcess | null)?.kill(signal),
    restart: async () => {
      await kill();
      await start();
    },
    stop: kill,
  };
}
