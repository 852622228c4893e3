/**
 * Starts the gateway exactly as it ships (`node dist/main.js`) in a child process, with its own
 * keys file and log file in a temporary folder, on an ephemeral port.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { endWithFile } from './children.js';

export const ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
export const MAIN = join(ROOT, 'dist', 'main.js');

export interface GatewayProcess {
  readonly url: string;
  readonly port: number;
  readonly dir: string;
  readonly logFile: string;
  readonly keysFile: string;
  readonly child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Sends a signal and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  exited: Promise<number | null>;
}

export interface StartOptions {
  keys: unknown;
  env?: Record<string, string>;
  /** Keep LOG_FILE unset (default) or set it; the default puts it in the temp folder. */
  logFile?: string;
  /** The largest file the process may write, in KiB (RLIMIT_FSIZE): a disk that fills up. */
  fileSizeLimitKiB?: number;
  /** The most files the process may hold open (RLIMIT_NOFILE): a gateway out of file descriptors. */
  openFilesLimit?: number;
  /** False: nobody reads the gateway's stdout pipe once it is full (a log collector that stalled); stdout() stays empty. */
  readStdout?: boolean;
}

/** Whether process `pid` holds a TCP connection to 127.0.0.1:`port` (from /proc: which worker took a request). */
export function connectedTo(pid: number, port: number): boolean {
  const sockets = new Set<string>();
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
        if (target.startsWith('socket:[')) sockets.add(target.slice(8, -1));
      } catch {
        // closed while we looked
      }
    }
  } catch {
    return false; // the process ended
  }
  const remote = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  return readFileSync('/proc/net/tcp', 'utf8')
    .split('\n')
    .slice(1)
    .some((line) => {
      const fields = line.trim().split(/\s+/);
      return fields[2] === remote && fields[3] === '01' && sockets.has(fields[9] as string);
    });
}

/** Child process ids of `pid`, read from /proc (Linux): a cluster primary's workers. */
export function children(pid: number): number[] {
  const found: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const parent = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (parent === pid) found.push(Number(name));
    } catch {
      // the process ended while we looked
    }
  }
  return found;
}

export function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'llm-gateway-test-'));
}

export function startGateway(options: StartOptions): Promise<GatewayProcess> {
  const dir = tempDir();
  const keysFile = join(dir, 'keys.json');
  writeFileSync(keysFile, typeof options.keys === 'string' ? options.keys : JSON.stringify(options.keys, null, 2));
  const logFile = options.logFile ?? join(dir, 'logs', 'llm_interactions.json');
  // Through bash's ulimit when the file size (Node ignores SIGXFSZ, so writes past it fail with
  // EFBIG) or the open files are limited.
  const limits = [
    ...(options.fileSizeLimitKiB === undefined ? [] : [`ulimit -S -f ${options.fileSizeLimitKiB}`]),
    ...(options.openFilesLimit === undefined ? [] : [`ulimit -n ${options.openFilesLimit}`]),
  ];
  const [command, args] = limits.length === 0 ? [process.execPath, [MAIN]] : ['bash', ['-c', `${limits.join(' && ')} && exec "$0" "$@"`, process.execPath, MAIN]];
  const child = endWithFile(spawn(command, args, {
    cwd: dir,
    env: {
      PATH: process.env.PATH ?? '',
      KEYS_FILE: keysFile,
      GATEWAY_PORT: '0',
      GATEWAY_HOST: '127.0.0.1',
      LOG_FILE: logFile,
      ...options.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  }));
  let out = '';
  let err = '';
  if (options.readStdout !== false) child.stdout?.setEncoding('utf8').on('data', (text: string) => (out += text));
  child.stderr?.setEncoding('utf8').on('data', (text: string) => (err += text));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`gateway did not start in time; stderr:\n${err}`));
    }, 10_000);
    const onData = (): void => {
      const match = /listening on http:\/\/(?:\[[^\]]+\]|[^:\s]+):(\d+)/.exec(err);
      if (match === null) return;
      clearTimeout(timer);
      child.stderr?.off('data', onData);
      const port = Number(match[1]);
      resolve({
        url: `http://127.0.0.1:${port}`,
        port,
        dir,
        logFile,
        keysFile,
        child,
        stdout: () => out,
        stderr: () => err,
        exited,
        stop(signal: NodeJS.Signals = 'SIGTERM') {
          if (child.exitCode === null && child.signalCode === null) child.kill(signal);
          return exited;
        },
      });
    };
    child.stderr?.on('data', onData);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`gateway exited with ${code} before listening; stderr:\n${err}`));
    });
  });
}

/** Runs the gateway until it exits (for start-up failures). */
export function runGatewayUntilExit(env: Record<string, string>, cwd?: string): Promise<{ code: number | null; stderr: string; stdout: string }> {
  return new Promise((resolve) => {
    const child = endWithFile(spawn(process.execPath, [MAIN], {
      cwd: cwd ?? tempDir(),
      env: { PATH: process.env.PATH ?? '', GATEWAY_PORT: '0', GATEWAY_HOST: '127.0.0.1', LOG_FILE: 'off', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    }));
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (text: string) => (stdout += text));
    child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr, stdout });
    });
  });
}

/** Splits a stream of concatenated (pretty-printed) JSON values. */
export function parseJsonStream(text: string): unknown[] {
  const values: unknown[] = [];
  let depth = 0;
  let start = -1;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') inString = true;
    else if (c === '{' || c === '[') {
      if (depth === 0) start = i;
      depth++;
    } else if (c === '}' || c === ']') {
      depth--;
      if (depth === 0) values.push(JSON.parse(text.slice(start, i + 1)));
    }
  }
  return values;
}

// Tests read entries field by field; `any` keeps those reads short and stays inside test code.
export type Entry = Record<string, any>;

export function readLogFile(file: string): Entry[] {
  if (!existsSync(file)) return [];
  return parseJsonStream(readFileSync(file, 'utf8')) as Entry[];
}

/** Log writes are asynchronous: wait until the file holds an entry for `requestId`. */
export async function waitForEntry(file: string, requestId: string, timeoutMs = 5000): Promise<Entry> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const entry = readLogFile(file).find((candidate) => candidate.request_id === requestId);
    if (entry !== undefined) return entry;
    if (Date.now() > deadline) throw new Error(`no log entry for ${requestId} in ${file}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

export async function waitFor(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
