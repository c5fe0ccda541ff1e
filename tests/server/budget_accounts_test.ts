// The server's memory budget (maxBufferedBytes) as bookkeeping: accounts
// report what they hold, and the largest are evicted once the total is over.
import assert from "node:assert/strict";
import { BufferBudget } from "../../src/_buffer_budget.ts";

/** A budget over holders whose holdings the test sets by name. */
function setUp(limit: number, names: string[]) {
  const held: Record<string, number> = {};
  const evicted: string[] = [];
  const logged: [string, number][] = [];
  const budget = new BufferBudget<string>(
    limit,
    (owner, bytes) => logged.push([owner, bytes]),
  );
  const accounts = Object.fromEntries(names.map((name) => {
    held[name] = 0;
    return [
      name,
      budget.open(name, () => held[name], () => {
        evicted.push(name);
        held[name] = 0;
      }),
    ];
  }));
  return { budget, held, accounts, evicted, logged };
}

Deno.test("BufferBudget adds what each account reports to one total, and takes it off when the account closes", () => {
  const { budget, held, accounts } = setUp(1_000_000, ["a", "b"]);
  held.a = 100;
  accounts.a.report();
  held.b = 50;
  accounts.b.report();
  assert.equal(budget.total, 150);
  held.a = 30;
  accounts.a.report();
  assert.equal(budget.total, 80);
  accounts.a.close();
  accounts.a.close(); // twice is once
  assert.equal(budget.total, 50);
  held.a = 1000;
  accounts.a.report(); // a closed account reports nothing
  assert.equal(budget.total, 50);
  accounts.b.close();
  assert.equal(budget.total, 0);
});

Deno.test("BufferBudget without a limit keeps no running total (reports cost nothing), yet recount() measures every account", () => {
  const { budget, held, accounts } = setUp(Infinity, ["a", "b"]);
  held.a = 100;
  held.b = 50;
  accounts.a.report();
  accounts.b.report();
  assert.equal(budget.total, 0);
  assert.equal(budget.recount(), 150);
  accounts.a.close();
  assert.equal(budget.recount(), 50);
});

Deno.test("BufferBudget evicts the accounts holding the most, largest first, until the total is under its limit", () => {
  const { budget, held, accounts, evicted, logged } = setUp(100, [
    "a",
    "b",
    "c",
    "d",
  ]);
  for (const [name, bytes] of [["a", 10], ["b", 40], ["c", 30], ["d", 20]]) {
    held[name] = bytes as number;
    accounts[name as string].report();
  }
  assert.deepEqual(evicted, []);
  held.a = 50; // 140 in all: a (50) goes, leaving 90
  accounts.a.report();
  assert.deepEqual(evicted, ["a"], "a now holds the most (50)");
  assert.deepEqual(logged, [["a", 50]]);
  assert.equal(budget.total, 90);
  held.b = 100; // 190: b (100) alone brings it under
  accounts.b.report();
  assert.deepEqual(evicted, ["a", "b"]);
  assert.equal(budget.total, 50);
  held.c = 200; // 220: c (200) goes, then 20 is under
  accounts.c.report();
  assert.deepEqual(evicted, ["a", "b", "c"]);
  assert.equal(budget.total, 20);
});

Deno.test("BufferBudget evicts several accounts when one is not enough: growth not reported yet shows when it counts again", () => {
  const { budget, held, accounts, evicted } = setUp(100, ["a", "b", "c"]);
  held.a = 50; // not reported
  held.b = 60; // not reported
  held.c = 101;
  accounts.c.report(); // 211 in fact: c (101), then b (60) go
  assert.deepEqual(evicted, ["c", "b"]);
  assert.equal(budget.total, 50);
});

Deno.test("BufferBudget counts again before evicting: a total that ran high from shrinks not reported yet evicts nobody", () => {
  const { budget, held, accounts, evicted } = setUp(100, ["a", "b"]);
  held.a = 90;
  accounts.a.report();
  held.a = 0; // not reported
  held.b = 20;
  accounts.b.report(); // 110 as reported, 20 in fact
  assert.deepEqual(evicted, []);
  assert.equal(budget.total, 20);
});

Deno.test("BufferBudget does not evict on a shrink, and an account that reports while being evicted starts no second round", () => {
  const held = { a: 0, b: 0 };
  const evicted: string[] = [];
  const budget = new BufferBudget<string>(100);
  const accounts: Record<string, { report(): void }> = {};
  for (const name of ["a", "b"] as const) {
    accounts[name] = budget.open(name, () => held[name], () => {
      evicted.push(name);
      held[name] = 0;
      // A socket letting go reports, and may make others report.
      accounts.a.report();
      accounts.b.report();
    });
  }
  held.a = 80;
  accounts.a.report();
  held.b = 30;
  accounts.b.report();
  assert.deepEqual(evicted, ["a"]);
  assert.equal(budget.total, 30);
  held.b = 10;
  accounts.b.report();
  assert.deepEqual(evicted, ["a"]);
  assert.equal(budget.recount(), 10);
});
