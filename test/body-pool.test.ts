/**
 * The pool of large bodies' memory: size classes, the rule that memory goes back only when its
 * last holder lets go, the bound on what it keeps idle; and reading a request body into it.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { BodyPool, POOLED_MAX_BYTES, POOLED_MIN_BYTES, sizeClass } from '../src/server/body-pool.js';
import { readBody, type ReadBody } from '../src/server/http.js';
import { Cancellation } from '../src/upstream/cancel.js';
import { GatewayError } from '../src/errors.js';

describe('body pool', () => {
  it('gives each size at most a quarter more than it needs, sizes of one class the same memory', () => {
    for (const length of [65_537, 100_000, 137_000, 138_693, 262_144, 262_145, 1_000_000, 1_001_322, 4_194_304]) {
      const size = sizeClass(length);
      assert.ok(size >= length && size <= length * 1.25, `${length} → ${size}`);
    }
    assert.equal(sizeClass(138_693), sizeClass(140_068), 'the three APIs\' 137 KB bodies share a class');
    assert.equal(sizeClass(1_001_322), sizeClass(1_011_698));
  });

  it('serves only large bodies, up to its maximum', () => {
    const pool = new BodyPool();
    assert.equal(pool.take(POOLED_MIN_BYTES - 1), null);
    assert.equal(pool.take(POOLED_MAX_BYTES + 1), null);
    assert.ok(pool.take(POOLED_MIN_BYTES) !== null);
    assert.ok(pool.take(POOLED_MAX_BYTES) !== null);
  });

  it('takes memory back only when the last holder lets go, and gives it out again', () => {
    const pool = new BodyPool();
    const body = pool.take(137_000);
    assert.ok(body !== null);
    body.hold(); // a write of it
    body.release(); // the request is done
    assert.equal(pool.idle, 0, 'still written');
    assert.notEqual(pool.take(137_000)?.memory, body.memory, 'never given out while held');
    body.release(); // the write is done
    assert.equal(pool.idle, body.memory.length);
    body.release(); // a second release by a confused holder changes nothing
    assert.equal(pool.idle, body.memory.length);
    assert.throws(() => body.hold(), /held after its release/);
    const again = pool.take(139_000);
    assert.equal(again?.memory, body.memory, 'the same class reuses it');
    assert.equal(pool.idle, 0);
    assert.equal(pool.take(139_000)?.memory === body.memory, false, 'given to one body at a time');
  });

  it('keeps at most its idle maximum, the rest left to the garbage collector', () => {
    const pool = new BodyPool(3 * sizeClass(1_000_000));
    const bodies = Array.from({ length: 5 }, () => pool.take(1_000_000));
    for (const body of bodies) body?.release();
    assert.equal(pool.idle, 3 * sizeClass(1_000_000));
  });
});

/** A server whose handler reads each body into `pool`, as the API routes do; resolves with what it read (or its error). */
async function reading(pool: BodyPool, limit: number, seen: Array<ReadBody | GatewayError>): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const cancel = new Cancellation();
    req.on('close', () => {
      if (!req.complete) cancel.cancel(new GatewayError(499, 'The client closed the request.'));
    });
    readBody(req, limit, cancel, pool).then(
      (read) => {
        seen.push(read);
        res.end('ok');
      },
      (err: GatewayError) => {
        seen.push(err);
        res.statusCode = err.status;
        res.setHeader('connection', 'close');
        res.end();
      },
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

function post(url: string, body: Buffer, cut = false): Promise<number> {
  return new Promise((resolve) => {
    const req = http.request(url, { method: 'POST', headers: { 'content-length': body.length } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', () => resolve(0));
    if (!cut) return void req.end(body);
    // Half the body, then gone.
    req.write(body.subarray(0, body.length >> 1), () => setTimeout(() => req.destroy(), 50));
  });
}

describe('reading a body into the pool', () => {
  it('reads a large body into pooled memory, exactly, and a small one as it came', async () => {
    const pool = new BodyPool();
    const seen: Array<ReadBody | GatewayError> = [];
    const server = await reading(pool, 8 * 1024 * 1024, seen);
    try {
      const large = Buffer.from(JSON.stringify({ messages: 'x'.repeat(300_000) }));
      assert.equal(await post(server.url, large), 200);
      const read = seen[0] as ReadBody;
      assert.ok(read.pooled !== null);
      assert.ok(read.bytes.equals(large));
      assert.equal(read.bytes.buffer, read.pooled.memory.buffer, 'in the pooled memory');
      read.pooled.release();
      assert.equal(await post(server.url, Buffer.from('{"a":1}')), 200);
      assert.equal((seen[1] as ReadBody).pooled, null);
    } finally {
      await server.close();
    }
  });

  it('gives the memory back when its client leaves halfway; takes none for a body of unknown length', async () => {
    const pool = new BodyPool();
    const seen: Array<ReadBody | GatewayError> = [];
    const server = await reading(pool, 1024 * 1024, seen);
    try {
      const body = Buffer.alloc(900_000, 0x61);
      assert.equal(await post(server.url, body, true), 0);
      const deadline = Date.now() + 5000;
      while (seen.length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
      assert.equal((seen[0] as GatewayError).status, 499);
      assert.equal(pool.idle, sizeClass(900_000), 'a client that left');
      // Without a declared length (chunked), a body is kept as it comes, never in pooled memory:
      // refused here as too large, with nothing taken. (A declared length over the limit is refused
      // before anything is read, and Node's parser holds a declared length to its bytes.)
      const over = await new Promise<number>((resolve) => {
        const req = http.request(server.url, { method: 'POST' }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('error', () => resolve(0));
        req.end(Buffer.alloc(2 * 1024 * 1024, 0x62));
      });
      assert.equal(over, 413);
      assert.equal(pool.idle, sizeClass(900_000), 'nothing taken for a body of unknown length');
    } finally {
      await server.close();
    }
  });
});
