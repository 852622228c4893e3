import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { clearDeadline, setDeadline } from '../src/upstream/deadlines.js';
import { SlotList } from '../src/slot-list.js';

const member = (name: string) => ({ name, slot: -1 });
const names = (list: SlotList<{ name: string; slot: number }>) => list.snapshot().map((each) => each.name).sort().join(',');

describe('slot list (things in flight)', () => {
  it('adds once, deletes from any slot, and keeps every slot pointing at its member', () => {
    const list = new SlotList<{ name: string; slot: number }>();
    const [a, b, c, d] = ['a', 'b', 'c', 'd'].map(member) as [ReturnType<typeof member>, ReturnType<typeof member>, ReturnType<typeof member>, ReturnType<typeof member>];
    for (const each of [a, b, c, d, b]) list.add(each);
    assert.equal(list.size, 4, 'adding a member twice keeps one');
    list.delete(b); // the middle: d moves into its slot
    assert.equal(names(list), 'a,c,d');
    assert.equal(b.slot, -1);
    for (const each of list.snapshot()) assert.equal(list.snapshot()[each.slot], each, `${each.name} knows its slot`);
    list.delete(b); // twice: nothing happens
    list.delete(d);
    list.delete(a);
    assert.equal(names(list), 'c');
    list.delete(c);
    assert.equal(list.size, 0);
    list.add(a);
    assert.equal(names(list), 'a', 'a deleted member can come back');
  });

  it('does not delete a member of another list that happens to share the slot number', () => {
    const one = new SlotList<{ name: string; slot: number }>();
    const other = new SlotList<{ name: string; slot: number }>();
    const mine = member('mine');
    const theirs = member('theirs');
    one.add(mine);
    other.add(theirs);
    one.delete(theirs);
    assert.equal(names(one), 'mine');
  });

  it('lets callbacks change the list while a snapshot is iterated', () => {
    const list = new SlotList<{ name: string; slot: number }>();
    const members = ['a', 'b', 'c'].map(member);
    for (const each of members) list.add(each);
    const seen: string[] = [];
    for (const each of list.snapshot()) {
      seen.push(each.name);
      list.delete(members[2] as ReturnType<typeof member>);
      list.add(member(`after-${each.name}`));
    }
    assert.deepEqual(seen, ['a', 'b', 'c'], 'the snapshot is what was there when it was taken');
    assert.equal(names(list), 'a,after-a,after-b,after-c,b');
  });
});

describe('deadlines', () => {
  it('run once when due; not when cleared or pushed back, even by an expiry in the same sweep', async () => {
    const fired: string[] = [];
    const later = setDeadline(1, () => fired.push('later'));
    let second: ReturnType<typeof setDeadline> | null = null;
    setDeadline(1, () => {
      fired.push('first');
      if (second !== null) clearDeadline(second);
    });
    second = setDeadline(1, () => fired.push('second'));
    const cleared = setDeadline(1, () => fired.push('cleared'));
    clearDeadline(cleared);
    // All four are due before any sweep can run.
    for (const start = performance.now(); performance.now() - start < 5; );
    later.at = performance.now() + 60_000;
    await new Promise((resolve) => setTimeout(resolve, 250));
    assert.deepEqual(fired, ['first']);
    clearDeadline(later);
  });

  it('sweep at the usual pace again once the short deadline they started for is past, though others stay', async () => {
    await new Promise((resolve) => setTimeout(resolve, 150)); // the earlier test's sweeper stops once none is left
    const paces: number[] = [];
    const setInterval = globalThis.setInterval;
    globalThis.setInterval = ((run: () => void, ms: number) => {
      paces.push(ms);
      return setInterval(run, ms);
    }) as typeof globalThis.setInterval;
    try {
      let expired = 0;
      setDeadline(2, () => expired++); // a retry with 2 ms of its total timeout left
      const long = setDeadline(60_000, () => assert.fail('not due'));
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.equal(expired, 1);
      assert.deepEqual(paces, [2, 100], 'every 2 ms only until the short one expired');
      clearDeadline(long);
    } finally {
      globalThis.setInterval = setInterval;
    }
  });
});
