/**
 * The set of things in flight (deadlines, requests), as an array whose members know their slot:
 * add, delete and size in O(1), iteration over a copy.
 *
 * Why not a Set: a Set that gains and loses a member per request rehashes its table every few
 * dozen changes, and V8 links each replaced table to its successor (for live iterators). Once
 * one table has lived long enough to reach the old generation, that chain keeps every later
 * table, and every request they held, alive through young-generation collections until the next
 * full one (measured in docs/performance.md).
 */
export interface Slotted {
  /** Where the member sits in its list; -1 when in none. */
  slot: number;
}

export class SlotList<T extends Slotted> {
  private readonly members: T[] = [];

  get size(): number {
    return this.members.length;
  }

  add(member: T): void {
    if (member.slot !== -1) return;
    member.slot = this.members.length;
    this.members.push(member);
  }

  delete(member: T): void {
    const at = member.slot;
    if (at === -1 || this.members[at] !== member) return;
    member.slot = -1;
    // The last member takes the freed slot; the array never keeps a reference past its length.
    const last = this.members.pop() as T;
    if (last !== member) {
      this.members[at] = last;
      last.slot = at;
    }
  }

  /** The members now, safe to iterate while callbacks add and delete. */
  snapshot(): T[] {
    return this.members.slice();
  }
}
