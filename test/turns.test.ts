import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ServerResponse } from 'node:http';
import { Turns } from '../src/turns.js';
import { admit } from '../src/surfaces/surface.js';
import { parseKeyFile, type VirtualKey } from '../src/policy/keys.js';
import { NO_CHARGE, type Admission, type Limiter } from '../src/policy/limits.js';
import { registry as providers } from '../src/providers/index.js';

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

  it("takes a large translation's turn again after an admission from elsewhere (Redis, a cluster's primary): answers read together are not translated back to back", async () => {
    const [key] = parseKeyFile(JSON.stringify({ virtual_keys: { vk: { provider: 'openai', api_key: 'sk-1', rate_limit: { requests_per_minute: 100 } } } }), 'keys.json', providers);
    // Both answers come in one read, as a Redis connection's replies do.
    let answer = (): void => {};
    const answered = new Promise<void>((resolve) => (answer = resolve));
    const elsewhere: Limiter = {
      admit: async (): Promise<Admission> => {
        await answered;
        return { error: null, headers: {} };
      },
      record: () => {},
      report: () => Promise.reject(new Error('not asked')),
    };
    const res = { setHeader: () => res } as unknown as ServerResponse;
    const turns = new Turns();
    const order: string[] = [];
    const request = async (name: string): Promise<void> => {
      await admit(elsewhere, key as VirtualKey, NO_CHARGE, name, res, turns);
      order.push(name);
      if (name === 'first') setTimeout(() => order.push('timer'), 0);
      busy(25); // its translation
    };
    const both = Promise.all([request('first'), request('second')]);
    answer();
    await both;
    assert.deepEqual(order, ['first', 'timer', 'second']);
  });
});
