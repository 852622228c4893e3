/**
 * The queue taken by index: first in, first out across its compactions, peek and drain.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Queue } from '../src/queue.js';

describe('queue', () => {
  it('gives items back in the order they came, across compactions and refills', () => {
    const queue = new Queue<number>();
    const expected: number[] = [];
    let next = 0;
    let taken = 0;
    // Uneven runs of pushes and shifts: past the compaction threshold many times, emptied now and then.
    for (let round = 0; round < 60; round++) {
      const pushes = (round * 7919) % 5000;
      for (let i = 0; i < pushes; i++) {
        queue.push(next);
        expected.push(next++);
      }
      const shifts = round % 5 === 4 ? queue.length : (round * 104_729) % (queue.length + 1);
      for (let i = 0; i < shifts; i++) {
        assert.equal(queue.peek(), expected[taken]);
        assert.equal(queue.last, expected[next - 1]);
        assert.equal(queue.shift(), expected[taken++]);
      }
      assert.equal(queue.length, next - taken);
    }
    assert.deepEqual(queue.drain(), expected.slice(taken));
    assert.equal(queue.length, 0);
    assert.equal(queue.shift(), undefined);
    assert.equal(queue.peek(), undefined);
    assert.equal(queue.last, undefined);
  });

  it('takes 200,000 items from the front, one at a time', () => {
    const queue = new Queue<{ n: number }>();
    for (let i = 0; i < 200_000; i++) queue.push({ n: i });
    for (let i = 0; i < 200_000; i++) assert.equal(queue.shift()?.n, i);
    assert.equal(queue.length, 0);
  });
});
