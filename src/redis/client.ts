/**
 * A Redis connection: RESP2 over `node:net` or `node:tls`, commands pipelined (written as they
 * come, replies matched in order), AUTH and SELECT on every (re)connection, reconnection with
 * exponential backoff. It never makes a caller wait for a connection: a command sent while it is
 * down fails at once (`RedisUnavailable`), and the caller decides what to do. A connection whose
 * oldest reply is overdue is dropped and made again (a server that hangs, a network that black-
 * holes). A subscriber connection (`subscribe`) hands every pushed message to its listener.
 */
import net from 'node:net';
import tls from 'node:tls';
import { encodeCommand, RedisReplyError, RespParser, type RespValue } from './resp.js';
import { describeRedis, type RedisAddress } from './url.js';
import { Queue } from '../queue.js';

/** A connection up at least this long that the server closes while idle is made again quietly (less: the usual backoff, so a server that closes every connection at once is not hammered). */
const IDLE_CLOSE_MIN_UP_MS = 1000;

/**
 * Redis could not be asked. `sent`: the command was written before the connection dropped (it
 * may have run); false: it never left (not connected), so sending it again cannot repeat it.
 */
export class RedisUnavailable extends Error {
  constructor(
    message: string,
    readonly sent = false,
  ) {
    super(message);
    this.name = 'RedisUnavailable';
  }
}

/** Redis refused the connection's AUTH or SELECT: REDIS_URL is wrong, or Redis's ACL changed. */
class RedisRefusal extends RedisUnavailable {}

export interface RedisClientOptions {
  readonly address: RedisAddress;
  /** A connection (and its AUTH/SELECT) must be up within this. */
  readonly connectTimeoutMs: number;
  /** A reply overdue by this long drops the connection. */
  readonly staleMs: number;
  /** Called when the connection comes up (null) or goes down (why). */
  readonly onState?: (error: Error | null) => void;
  /** A subscriber: the channels to subscribe to on every connection, where their messages go, and a refusal (NOPERM). */
  readonly subscribe?: { readonly channels: readonly string[]; readonly onMessage: (channel: string, message: string) => void; readonly onRefused: (error: RedisReplyError) => void };
}

interface Pending {
  readonly resolve: (value: RespValue) => void;
  readonly reject: (error: Error) => void;
  readonly sentAt: number;
}

/** What a connection writes, just after a node refused writes, to show it takes them (within the ACL's `llmgw:*`). */
const WRITE_PROBE_KEY = 'llmgw:writable';

const MIN_BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 5000;

export class RedisClient {
  private socket: net.Socket | null = null;
  private ready = false;
  /** When the connection last became ready (performance.now()). */
  private readyAt = 0;
  /** The connection is being made again at once, after the server closed it while idle. */
  private remaking = false;
  private closed = false;
  private readonly pending = new Queue<Pending>();
  private attempts = 0;
  /** Connections that found a node taking no writes (READONLY) within a minute of each other, for the backoff. */
  private demotions = 0;
  private lastDemotion = -Infinity;
  /** This connection found a demoted node: it takes no more commands, and closes once their replies are in. */
  private draining = false;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private staleTimer: NodeJS.Timeout | null = null;
  /** The last reason it went down, kept until it is up again (for /healthz). */
  private lastError: Error | null = new RedisUnavailable('not connected yet');

  constructor(private readonly options: RedisClientOptions) {}

  get isReady(): boolean {
    return this.ready;
  }

  /** Why it is not ready (null when it is). */
  get problem(): string | null {
    return this.ready ? null : (this.lastError?.message ?? 'not connected');
  }

  /** Being made again at once after the server closed it while idle: not an outage (yet). */
  get remakingIdle(): boolean {
    return this.remaking && !this.ready;
  }

  get name(): string {
    return describeRedis(this.options.address);
  }

  connect(): void {
    if (this.closed || this.socket !== null) return;
    const { address, connectTimeoutMs } = this.options;
    const socket = address.tls
      ? tls.connect({ host: address.host, port: address.port, servername: net.isIP(address.host) === 0 ? address.host : undefined })
      : net.connect({ host: address.host, port: address.port });
    this.socket = socket;
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 10_000);
    const parser = new RespParser();
    const timer = setTimeout(() => socket.destroy(new RedisUnavailable(`no connection within ${connectTimeoutMs} ms`)), connectTimeoutMs);
    timer.unref();
    socket.once(address.tls ? 'secureConnect' : 'connect', () => {
      void this.handshake().then(
        () => {
          clearTimeout(timer);
          if (this.socket !== socket) return;
          this.ready = true;
          this.readyAt = performance.now();
          this.attempts = 0;
          this.lastError = null;
          this.options.onState?.(null);
        },
        (err: Error) => socket.destroy(err),
      );
    });
    socket.on('data', (chunk: Buffer) => {
      let values: RespValue[];
      try {
        values = parser.push(chunk);
      } catch (err) {
        socket.destroy(err as Error);
        return;
      }
      for (const value of values) this.reply(value);
    });
    socket.on('error', (err) => {
      this.lastError = err;
    });
    socket.on('close', () => {
      clearTimeout(timer);
      this.down(socket);
    });
  }

  /**
   * AUTH and SELECT, written before anything else, then a PING: a server that accepts the
   * connection but does not answer (stopped, overloaded) is not ready. A subscriber subscribes.
   */
  private async handshake(): Promise<void> {
    const { address, subscribe } = this.options;
    const first: Array<Promise<RespValue>> = [];
    if (address.password !== null) first.push(this.write(address.user === null ? ['AUTH', address.password] : ['AUTH', address.user, address.password]));
    if (address.db !== 0 && subscribe === undefined) first.push(this.write(['SELECT', address.db]));
    first.push(this.write(['PING']));
    const replies = await Promise.all(first.map((sent) => sent.catch((err: unknown) => err)));
    for (const [i, reply] of replies.entries()) {
      if (!(reply instanceof Error)) continue;
      // A refused AUTH or SELECT (all but the last, PING), or a PING refused for want of a
      // password: what an operator must fix, not an outage.
      if (reply instanceof RedisReplyError && !reply.passing && (i < replies.length - 1 || reply.kind === 'NOAUTH')) {
        throw new RedisRefusal(`${this.name} refused the gateway's login or database (${reply.message}): check the user, password and database number in REDIS_URL`);
      }
      throw reply;
    }
    // Just after a node refused writes, a replica answers PING as a primary does: this one must
    // take a write (an expiring key of the gateway's own) before it counts as up. A refusal for
    // anything but its state (an ACL without SET) proves nothing either way: it is taken as up.
    if (this.recentDemotions() > 0 && subscribe === undefined) {
      const refusal = await this.write(['SET', WRITE_PROBE_KEY, '1', 'PX', 10_000]).then(
        () => null,
        (err: Error) => err,
      );
      if (refusal instanceof RedisReplyError && refusal.demoted) {
        this.countDemotion();
        throw refusal;
      }
      if (refusal !== null && !(refusal instanceof RedisReplyError)) throw refusal;
      // It takes writes: the failover is over, and a later drop waits as any other.
      this.demotions = 0;
      this.lastDemotion = -Infinity;
    }
    if (subscribe !== undefined && subscribe.channels.length > 0) {
      // Its confirmations come as pushes, read by reply(); nothing waits on them.
      this.socket?.write(encodeCommand(['SUBSCRIBE', ...subscribe.channels]));
    }
  }

  private reply(value: RespValue): void {
    const subscribe = this.options.subscribe;
    if (subscribe !== undefined && this.ready) {
      if (Array.isArray(value) && value[0] === 'message' && typeof value[1] === 'string' && typeof value[2] === 'string') subscribe.onMessage(value[1], value[2]);
      else if (value instanceof RedisReplyError) subscribe.onRefused(value);
      return;
    }
    const waiting = this.pending.shift();
    if (waiting === undefined) return;
    if (value instanceof RedisReplyError) {
      waiting.reject(value);
      // A failover that keeps old connections open leaves them on the demoted node: connecting
      // again (resolving the name again) is how a client reaches the new primary. The commands
      // already sent get their own replies first (refused as this one was: safe to send again).
      if (value.demoted && !this.draining && this.ready) this.demoted(value);
    } else {
      waiting.resolve(value);
    }
    if (this.draining && this.pending.length === 0) this.socket?.destroy(new RedisUnavailable(`${this.name} takes no writes: connecting again`));
  }

  private demoted(refusal: RedisReplyError): void {
    this.draining = true;
    this.ready = false;
    this.lastError = new RedisUnavailable(`${this.name} answered ${refusal.kind}`);
    this.countDemotion();
  }

  /** Each time, within a minute, that it finds a node taking no writes, the next try waits longer. */
  private countDemotion(): void {
    this.demotions = this.recentDemotions() + 1;
    this.lastDemotion = performance.now();
  }

  /** Demotions found within a minute of each other, the last of them within the last minute (0: none). */
  private recentDemotions(): number {
    return performance.now() - this.lastDemotion > 60_000 ? 0 : Math.min(this.demotions, 16);
  }

  private write(args: readonly (string | number)[]): Promise<RespValue> {
    const socket = this.socket;
    if (socket === null || socket.destroyed) return Promise.reject(new RedisUnavailable(this.problem ?? 'not connected'));
    return new Promise((resolve, reject) => {
      this.pending.push({ resolve, reject, sentAt: performance.now() });
      socket.write(encodeCommand(args));
      this.watchStale();
    });
  }

  /**
   * Sends a command; its reply, or an error: RedisReplyError (the server refused it),
   * RedisUnavailable (not connected: nothing was sent; or the connection dropped with it in flight).
   */
  send(args: readonly (string | number)[]): Promise<RespValue> {
    if (!this.ready) return Promise.reject(new RedisUnavailable(this.problem ?? 'not connected'));
    return this.write(args);
  }

  /** A write that shows the server takes them now (an outage's end: a PING answers even while writes are refused). */
  sendWriteProbe(): Promise<RespValue> {
    return this.send(['SET', WRITE_PROBE_KEY, '1', 'PX', 10_000]);
  }

  /** One timer while replies are awaited: a connection whose oldest reply is overdue is dropped. */
  private watchStale(): void {
    if (this.staleTimer !== null) return;
    const { staleMs } = this.options;
    this.staleTimer = setInterval(
      () => {
        const oldest = this.pending.peek();
        if (oldest === undefined) {
          if (this.staleTimer !== null) clearInterval(this.staleTimer);
          this.staleTimer = null;
        } else if (performance.now() - oldest.sentAt > staleMs) {
          // After the loop's I/O: come out of a stall of its own, the process runs its timers
          // before it reads the reply already waiting on the socket.
          const socket = this.socket;
          setImmediate(() => {
            if (this.socket === socket && this.pending.peek() === oldest) socket?.destroy(new RedisUnavailable(`no reply within ${staleMs} ms`));
          });
        }
      },
      Math.max(10, Math.min(250, staleMs / 4)),
    );
    this.staleTimer.unref();
  }

  private down(socket: net.Socket): void {
    if (this.socket !== socket) return;
    this.socket = null;
    const wasReady = this.ready || this.draining;
    // Closed cleanly while nothing was asked, after a while up: Redis's `timeout` for idle clients
    // (or a proxy's) did it, not an outage. Made again at once, and said only if that fails.
    const idleClose = this.ready && this.lastError === null && this.pending.peek() === undefined && performance.now() - this.readyAt > IDLE_CLOSE_MIN_UP_MS;
    this.draining = false;
    this.ready = false;
    if (this.staleTimer !== null) clearInterval(this.staleTimer);
    this.staleTimer = null;
    // Made again at once after a close while idle, and failed: the connection was lost, as far as anyone should know.
    const lost = wasReady || this.remaking;
    this.remaking = false;
    const error = this.lastError instanceof RedisRefusal ? this.lastError : new RedisUnavailable(`connection to ${this.name} ${lost ? 'lost' : 'could not be made'}${this.lastError === null ? '' : ` (${this.lastError.message})`}`, true);
    this.lastError = error;
    for (const waiting of this.pending.drain()) waiting.reject(error);
    if (this.closed) return;
    if (idleClose) {
      this.attempts = 0; // a failure to connect again is said, as a first one is
      this.remaking = true;
      this.connect();
      return;
    }
    if (wasReady || this.attempts === 0) this.options.onState?.(error);
    // Exponential backoff with jitter, so instances that lost Redis together do not return together.
    const delay = Math.min(MAX_BACKOFF_MS, MIN_BACKOFF_MS * 2 ** Math.max(this.attempts, this.recentDemotions())) * (0.5 + Math.random() / 2);
    this.attempts = Math.min(this.attempts + 1, 16);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.connect();
    }, delay);
    this.reconnectTimer.unref();
  }

  close(): void {
    this.closed = true;
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer);
    this.socket?.destroy();
  }
}
