/**
 * Providers' model lists as the gateway keeps them: a list a minute, a refusal a few seconds, then
 * asked again (a 429 kept for ever would answer that key's `/v1/models` with it until a restart).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GatewayError } from '../src/errors.js';
import type { ModelList } from '../src/formats/chat/models.js';
import type { Target } from '../src/policy/target.js';
import { ModelLists } from '../src/surfaces/models.js';
import { Cancellation } from '../src/upstream/cancel.js';

describe('model lists kept per target', () => {
  it('keep a list a minute and a refusal five seconds, then ask again', async () => {
    const lists = new ModelLists();
    const target = {} as Target;
    const waiting = new Cancellation();
    let clock = 1_000;
    const now = (): number => clock;
    let asks = 0;
    let refuse = false;
    const ask = (): Promise<ModelList> => {
      asks++;
      return refuse ? Promise.reject(new GatewayError(429, 'slow down')) : Promise.resolve({ object: 'list', data: [] });
    };
    await lists.list(target, ask, waiting, now);
    clock += 59_000;
    await lists.list(target, ask, waiting, now);
    assert.equal(asks, 1, 'kept within the minute');
    clock += 2_000;
    refuse = true;
    await assert.rejects(lists.list(target, ask, waiting, now), { status: 429 });
    assert.equal(asks, 2, 'asked again after the minute');
    clock += 4_000;
    await assert.rejects(lists.list(target, ask, waiting, now), { status: 429 });
    assert.equal(asks, 2, 'the refusal kept a few seconds');
    clock += 2_000;
    refuse = false;
    await lists.list(target, ask, waiting, now);
    assert.equal(asks, 3, 'asked again once the refusal is old');
  });
});
