// The server's memory budget (maxBufferedBytes) as bookkeeping: accounts
// report what they hold, and the largest are evicted once the total is over.
import assert from "node:assert/strict";
import { type BudgetAccount, BufferBudget } from "../../src/_buffer_budget.ts";
import { sharedFramesIn } from "../../src/protocol/_shared_copies.ts";

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
        return true;
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
      return true;
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

/**
 * A holder whose output is a socket's in miniature: chunks queued, some of
 * them frames shared with other holders (a published message), taken as a
 * whole, then written in order. Its measure counts what is queued and what
 * is taken and not written, as `bufferedAmount` does.
 */
class Output {
  readonly account: BudgetAccount;
  queued: Uint8Array[] = [];
  inFlight = 0;

  constructor(budget: BufferBudget<string>, name: string, evicted: string[]) {
    this.account = budget.open(name, () => this.measure(), () => {
      evicted.push(name);
      this.queued = [];
      this.inFlight = 0;
      return true;
    });
  }

  measure(): number {
    return this.queued.reduce((sum, chunk) => sum + chunk.length, 0) +
      this.inFlight;
  }

  /** Queues its own bytes (a copy no other holder has). */
  send(length: number): void {
    this.queued.push(new Uint8Array(length));
    this.account.report();
  }

  /** Queues a frame other holders may queue too. */
  publish(frame: Uint8Array): void {
    this.#shared.add(frame);
    this.queued.push(frame);
    this.account.share(frame);
    this.account.report();
  }

  /**
   * Takes the output; `join` copies it into runs, as FrameWriter.take()
   * does, each holding at most `sharedPerRun` of the shared frames.
   */
  take(join = false, sharedPerRun = Infinity): void {
    const size = this.measure() - this.inFlight;
    const chunks = join ? this.#runs(sharedPerRun) : this.queued;
    this.queued = [];
    this.inFlight += size;
    this.account.taken(chunks);
  }

  #runs(sharedPerRun: number): Uint8Array[] {
    const runs: Uint8Array[] = [];
    let size = 0;
    let shared = 0;
    const close = () => {
      const run = new Uint8Array(size);
      if (shared > 0) sharedFramesIn.set(run, shared);
      runs.push(run);
      size = shared = 0;
    };
    for (const chunk of this.queued) {
      const isShared = this.#shared.has(chunk);
      if (isShared && shared === sharedPerRun) close();
      size += chunk.length;
      if (isShared) shared++;
    }
    if (size > 0) close();
    return runs;
  }

  readonly #shared = new WeakSet<Uint8Array>();

  write(bytes = this.inFlight): void {
    this.inFlight -= bytes;
    this.account.written(bytes);
    this.account.report();
  }
}

/** A budget over {@linkcode Output}s. */
function outputs(limit: number, names: string[]) {
  const evicted: string[] = [];
  const logged: [string, number, number][] = [];
  const budget = new BufferBudget<string>(
    limit,
    (owner, held, total) => logged.push([owner, held, total]),
  );
  const all = Object.fromEntries(
    names.map((name) => [name, new Output(budget, name, evicted)]),
  );
  return { budget, evicted, logged, outputs: all };
}

Deno.test("BufferBudget counts a frame shared by several accounts once, until the last has written it", () => {
  const { budget, outputs: { a, b, c } } = outputs(10_000, ["a", "b", "c"]);
  const frame = new Uint8Array(1000);
  for (const output of [a, b, c]) output.publish(frame);
  assert.equal(budget.total, 1000);
  assert.equal(budget.recount(), 1000);
  a.send(10); // its own bytes count as before
  assert.equal(budget.total, 1010);
  a.take();
  assert.equal(budget.recount(), 1010, "taken, not written: still held");
  a.write();
  assert.equal(budget.total, 1000, "b and c still hold it");
  assert.equal(budget.recount(), 1000);
  b.take();
  b.write();
  c.take();
  assert.equal(budget.recount(), 1000);
  c.write();
  assert.equal(budget.total, 0);
  assert.equal(budget.recount(), 0);
});

Deno.test("BufferBudget counts a shared frame that was copied into a chunk when the output was taken (a run of small frames for one write) once, as shared, until the chunks are written", () => {
  const { budget, evicted, outputs: { a, b } } = outputs(200, ["a", "b"]);
  const frame = new Uint8Array(100);
  a.publish(frame);
  a.send(50);
  b.publish(frame);
  assert.equal(budget.total, 150);
  a.take(true); // one chunk: a copy of the frame and its own 50 bytes
  assert.equal(budget.total, 150, "the frame once, and a's own bytes");
  assert.equal(budget.recount(), 150);
  b.take(true); // counted as their own, the copies would make 250
  assert.equal(budget.recount(), 150);
  assert.deepEqual(evicted, []);
  b.write();
  assert.equal(budget.recount(), 150, "a's copy is not written yet");
  a.write();
  assert.equal(budget.recount(), 0);
});

Deno.test("BufferBudget counts shared frames copied past the first run of a take (a backlog taken at once) as the holder's own, and its total never drops below what is held", () => {
  const { budget, evicted, outputs: { a, b } } = outputs(1_000_000, ["a", "b"]);
  const frames = Array.from({ length: 10 }, () => new Uint8Array(100));
  for (const frame of frames) a.publish(frame); // a holds them all, untaken
  for (const frame of frames) b.publish(frame);
  assert.equal(budget.recount(), 1000);
  // Five runs of two frames: the first run's copies count as shared, the
  // other 800 bytes are b's own copies, held as surely as a's frames.
  b.take(true, 2);
  assert.equal(budget.total, 1800, "counted as the output is taken");
  assert.equal(budget.recount(), 1800);
  for (const total of [1800, 1600, 1400, 1200, 1000]) {
    b.write(200);
    assert.equal(budget.total, total);
    assert.equal(budget.recount(), total);
  }
  a.take();
  a.write();
  assert.equal(budget.recount(), 0);
  assert.deepEqual(evicted, []);
});

Deno.test("BufferBudget closes the account of a holder already letting go (its evict returns false) without counting it as evicted", () => {
  const logged: string[] = [];
  const budget = new BufferBudget<string>(100, (owner) => logged.push(owner));
  const closing = 90;
  let other = 0;
  const leaving = budget.open("closing", () => closing, () => false);
  const staying = budget.open("other", () => other, () => {
    other = 0;
    return true;
  });
  leaving.report();
  other = 30;
  staying.report(); // 120: over
  assert.deepEqual(logged, [], "not evicted: it was closing already");
  assert.equal(budget.total, 30, "its bytes go as it finishes");
  assert.equal(other, 30, "the other holder was left alone");
});

Deno.test("BufferBudget counts a shared frame written in parts whole until its last byte is written", () => {
  const { budget, outputs: { a, b } } = outputs(1_000_000, ["a", "b"]);
  const own = 300;
  const frame = new Uint8Array(1000);
  a.send(own);
  a.publish(frame);
  a.take();
  b.publish(frame);
  for (const [bytes, total] of [[200, 1100], [400, 1000], [700, 1000]]) {
    a.write(bytes);
    assert.equal(budget.total, total);
    assert.equal(budget.recount(), total);
  }
  b.take();
  b.write();
  assert.equal(budget.recount(), 0);
});

Deno.test("BufferBudget lets go of the shared frames an account queued or took when it closes, and of each as often as it was queued", () => {
  const { budget, outputs: { a, b } } = outputs(1_000_000, ["a", "b"]);
  const first = new Uint8Array(1000);
  const second = new Uint8Array(500);
  a.publish(first);
  a.publish(first); // the same frame twice
  a.take();
  a.publish(second);
  b.publish(second);
  assert.equal(budget.recount(), 1500);
  a.write(1000); // the first copy of `first` is written, the other is not
  assert.equal(budget.recount(), 1500);
  a.account.close();
  assert.equal(budget.total, 500, "b still holds the second");
  assert.equal(budget.recount(), 500);
  a.account.written(1000); // a closed account is told nothing more
  a.account.share(first);
  assert.equal(budget.recount(), 500);
  b.account.close();
  assert.equal(budget.total, 0);
  assert.equal(budget.recount(), 0);
});

Deno.test("BufferBudget evicts the account that stopped writing while frames are shared: it alone holds most of them, and the others keep theirs", () => {
  const { budget, evicted, logged, outputs: { reader, other, stalled } } =
    outputs(3000, ["reader", "other", "stalled"]);
  let published = 0;
  while (evicted.length === 0 && published < 100) {
    const frame = new Uint8Array(1000);
    for (const output of [reader, other, stalled]) output.publish(frame);
    for (const output of [reader, other]) {
      output.take();
      output.write();
    }
    published++;
  }
  // The fourth frame takes it over 3000: the stalled account holds three
  // alone, and the reader holds the fourth too.
  assert.equal(published, 4);
  assert.deepEqual(evicted, ["stalled"]);
  assert.deepEqual(logged, [["stalled", 3000, 4000]]);
  assert.equal(budget.total, 0, "the readers wrote the fourth");
  assert.equal(budget.recount(), 0);
});

Deno.test("BufferBudget evicts the next largest when the largest shares what it holds: the total is counted anew after each", () => {
  const { budget, evicted, logged, outputs: { first, second, small } } =
    outputs(3000, ["first", "second", "small"]);
  const frames = [1, 2, 3].map(() => new Uint8Array(1000));
  for (const frame of frames) {
    first.publish(frame);
    second.publish(frame);
  }
  assert.deepEqual(evicted, []);
  // 3500: each of the two holds 3000, but closing one frees nothing.
  small.send(500);
  assert.deepEqual(evicted, ["first", "second"]);
  assert.deepEqual(logged, [["first", 3000, 3500], ["second", 3000, 3500]]);
  assert.equal(budget.total, 500);
  assert.equal(budget.recount(), 500);
});
