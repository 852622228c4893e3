/**
 * The memory request bodies may take at once: what a request's share counts, what passes the cap,
 * and that a share gives back all it took.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BodyMemory } from '../src/server/body-memory.js';

describe('memory for request bodies', () => {
  it('counts what shares take, refuses what would pass the cap (a body alone always goes), and takes it back as they release', () => {
    const memory = new BodyMemory(1000);
    const first = memory.share();
    assert.equal(first.take(600), true);
    assert.equal(first.take(4400), true, 'alone: taken, whatever its size, piece after piece');
    const second = memory.share();
    assert.equal(second.take(1), false);
    assert.equal(memory.bytes, 5000, 'a refused take counts nothing');
    first.release();
    first.release(); // a second release gives back nothing more
    assert.equal(memory.bytes, 0);
    assert.equal(second.take(600), true);
    assert.equal(second.take(400), true, 'up to the cap');
    const third = memory.share();
    assert.equal(third.take(1), false);
    second.release();
    assert.equal(third.take(1000), true);
    third.release();
    assert.equal(memory.bytes, 0);
  });

  it('counts what may not be refused (a small body) even past the cap', () => {
    const memory = new BodyMemory(1000);
    const large = memory.share();
    assert.equal(large.take(1000), true);
    const small = memory.share();
    assert.equal(small.take(100, false), true);
    assert.equal(memory.bytes, 1100);
    assert.equal(memory.share().take(1), false);
    small.release();
    large.release();
    assert.equal(memory.bytes, 0);
  });
});
