import assert from "node:assert/strict";
import { SlotList } from "../../src/_slot_list.ts";

Deno.test("SlotList adds, removes and counts, the last item filling a removed one's place", () => {
  const list = new SlotList<string>();
  const slots = ["a", "b", "c", "d"].map((item) => list.add(item));
  assert.equal(list.size, 4);
  assert.equal(list.remove(slots[1]), true);
  assert.equal(list.size, 3);
  assert.deepEqual(list.toArray(), ["a", "d", "c"]);
  // The moved item's slot still removes it.
  list.remove(slots[3]);
  assert.deepEqual(list.toArray(), ["a", "c"]);
  // Removing twice, or a slot of another list, changes nothing.
  assert.equal(list.remove(slots[1]), false);
  assert.equal(list.remove(new SlotList<string>().add("a")), false);
  assert.deepEqual(list.toArray(), ["a", "c"]);
  list.remove(slots[0]);
  list.remove(slots[2]);
  assert.equal(list.size, 0);
  assert.deepEqual(list.toArray(), []);
});

Deno.test("SlotList keeps an item added twice twice, each with its own slot", () => {
  const list = new SlotList<string>();
  const first = list.add("x");
  list.add("x");
  list.remove(first);
  assert.deepEqual(list.toArray(), ["x"]);
});

Deno.test("SlotList lets go of a removed item: its slot no longer holds it", () => {
  const list = new SlotList<object>();
  const slot = list.add({});
  list.remove(slot);
  assert.equal(slot.item, undefined);
});

Deno.test("SlotList.forEach: items removed meanwhile are not visited, items added meanwhile neither, and the list is whole after", () => {
  const list = new SlotList<number>();
  const slots = [0, 1, 2, 3, 4, 5].map((item) => list.add(item));
  const visited: number[] = [];
  list.forEach((item) => {
    visited.push(item);
    if (item === 1) {
      list.remove(slots[1]); // itself
      list.remove(slots[4]); // one ahead
      list.remove(slots[0]); // one behind
      list.add(6);
    }
  });
  assert.deepEqual(visited, [0, 1, 2, 3, 5]);
  assert.equal(list.size, 4);
  assert.deepEqual(list.toArray().sort(), [2, 3, 5, 6]);
  // Slots still work after the holes were filled.
  list.remove(slots[5]);
  assert.deepEqual(list.toArray().sort(), [2, 3, 6]);
});

Deno.test("SlotList.forEach fills its holes even when a callback throws, and nested calls see the same items", () => {
  const list = new SlotList<number>();
  const slots = [0, 1, 2].map((item) => list.add(item));
  assert.throws(() =>
    list.forEach((item) => {
      list.remove(slots[item]);
      let inner = 0;
      list.forEach(() => inner++);
      assert.equal(inner, 2 - item);
      if (item === 1) throw new Error("stop");
    })
  );
  assert.deepEqual(list.toArray(), [2]);
  assert.equal(list.size, 1);
});
