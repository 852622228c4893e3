import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Turns } from '../src/turns.js';

/** Holds the thread for `ms`, as a large parse or translation does. */
function busy(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until);
}

describe('turns of the event loop', () => {
  it('hands a turn to an awaiting reader in arrival order, with a timer due meanwhile in between', async () => {
    const turns = new Turns();
    const order: string[] = [];
    const reader = async (name: string): Promise<void> => {
      await turns.take();
      order.push(name);
      // Due before this job ends, however loaded the machine: it runs before the next job's turn.
      if (name === 'first') setTimeout(() => order.push('timer'), 0);
      busy(25);
    };
    await Promise.all([reader('first'), reader('second'), reader('third')]);
    assert.deepEqual(order, ['first', 'timer', 'second', 'third']);
  });

  it('is idle between bursts: a job after the queue emptied still gets its turn', async () => {
    const turns = new Turns();
    await turns.take();
    await turns.take();
    await Promise.all([turns.take(), turns.take()]);
    let ran = false;
    await turns.take().then(() => (ran = true));
    assert.equal(ran, true);
  });
});
