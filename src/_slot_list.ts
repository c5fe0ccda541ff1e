/**
 * Where an item sits in a {@linkcode SlotList}: what `add()` returns, and
 * what `remove()` takes.
 *
 * @example Keeping the slot to remove the item later
 * ```ts
 * import { type Slot, SlotList } from "./_slot_list.ts";
 * import assert from "node:assert/strict";
 *
 * const connections = new SlotList<string>();
 * const slots = new Map<string, Slot<string>>();
 * for (const id of ["a", "b", "c"]) slots.set(id, connections.add(id));
 * connections.remove(slots.get("b")!); // O(1), no search
 * assert.equal(slots.get("a")!.item, "a");
 * assert.deepEqual(connections.toArray().sort(), ["a", "c"]);
 * ```
 */
export interface Slot<T> {
  /** The item. */
  readonly item: T;
}

class Entry<T> implements Slot<T> {
  constructor(public item: T, public index: number) {}
}

// What a removed entry holds instead of its item, which it no longer keeps
// alive.
const GONE = undefined as never;

/**
 * An unordered collection whose items each know their place in it: adding,
 * removing and counting cost O(1), and no hash table is involved.
 *
 * For collections that live as long as a server while connections join and
 * leave them. A `Set` or `Map` used so is what V8's young-generation
 * collector handles worst: each time its hash table is rebuilt (as entries
 * are added and deleted), the old table keeps the entries it had and points
 * to the new one, and once a table of the chain has reached the old
 * generation, every table after it, and every connection they list, survives
 * each scavenge until the next full collection. Measured on connect+close at
 * 50 concurrent: 21% of the young generation survived each scavenge (a
 * handshake's sockets, streams and buffers), scavenges took 7-9 ms instead of
 * 1, and handshakes ran 25% slower, with twice the p99. Here a removed item's
 * slot is filled with the last one, and nothing points from old storage to
 * newer.
 *
 * Removing an item while {@linkcode SlotList.prototype.forEach} runs is
 * allowed: it is not visited afterwards. Items added meanwhile are not
 * visited.
 *
 * @typeParam T The items.
 *
 * @example
 * ```ts
 * import { SlotList } from "./_slot_list.ts";
 * import assert from "node:assert/strict";
 *
 * const list = new SlotList<string>();
 * const a = list.add("a");
 * list.add("b");
 * list.remove(a);
 * assert.equal(list.size, 1);
 * assert.deepEqual(list.toArray(), ["b"]);
 * ```
 */
export class SlotList<T> {
  #entries: Entry<T>[] = [];
  // Removals while forEach() runs leave holes, filled once it ends.
  #iterating = 0;
  #holes = 0;

  /** How many items are in the list. */
  get size(): number {
    return this.#entries.length - this.#holes;
  }

  /**
   * Adds `item` (again, if it is there already: each `add()` is a slot).
   *
   * @param item The item.
   * @returns Its slot, to remove it with.
   */
  add(item: T): Slot<T> {
    const entry = new Entry(item, this.#entries.length);
    this.#entries.push(entry);
    return entry;
  }

  /**
   * Removes the item in `slot`; nothing if it was removed already.
   *
   * @param slot What {@linkcode SlotList.prototype.add} returned.
   * @returns Whether it was in the list.
   */
  remove(slot: Slot<T>): boolean {
    const entry = slot as Entry<T>;
    const entries = this.#entries;
    const index = entry.index;
    if (index < 0 || entries[index] !== entry) return false;
    entry.index = -1;
    entry.item = GONE;
    if (this.#iterating > 0) {
      this.#holes++;
      return true;
    }
    const last = entries.pop()!;
    if (last !== entry) {
      entries[index] = last;
      last.index = index;
    }
    return true;
  }

  /**
   * Calls `callback` with each item.
   *
   * @param callback Called once per item in the list as it starts.
   */
  forEach(callback: (item: T) => void): void {
    const entries = this.#entries;
    const length = entries.length;
    this.#iterating++;
    try {
      for (let i = 0; i < length; i++) {
        const entry = entries[i];
        if (entry.index >= 0) callback(entry.item);
      }
    } finally {
      if (--this.#iterating === 0 && this.#holes > 0) this.#fillHoles();
    }
  }

  /** @returns The items, in no particular order. */
  toArray(): T[] {
    const items: T[] = [];
    this.forEach((item) => items.push(item));
    return items;
  }

  #fillHoles(): void {
    const entries = this.#entries;
    let kept = 0;
    for (let i = 0; i < entries.length; i++) {
      const entry = entries[i];
      if (entry.index < 0) continue;
      entry.index = kept;
      entries[kept++] = entry;
    }
    entries.length = kept;
    this.#holes = 0;
  }
}
