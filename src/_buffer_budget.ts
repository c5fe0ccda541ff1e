import { type Slot, SlotList } from "./_slot_list.ts";
import { sharedFramesIn } from "./protocol/_shared_copies.ts";

/**
 * One holder of bytes under a {@linkcode BufferBudget}: a socket reports
 * what it holds with {@linkcode BudgetAccount.prototype.report} where that
 * grows or shrinks, and {@linkcode BudgetAccount.prototype.close}s its
 * account when it ends.
 *
 * Output that references a frame other holders reference too (a published
 * message, framed once) counts once for all of them: the holder says so
 * with {@linkcode BudgetAccount.prototype.share} as it queues the frame,
 * then what its output was taken as ({@linkcode BudgetAccount.prototype.taken})
 * and how much of that was written ({@linkcode BudgetAccount.prototype.written}).
 * Only a budget with a limit needs to be told; without one, a holder calls
 * none of the three, and each holder counts what it references.
 *
 * @example A holder reporting what it holds
 * ```ts
 * import { type BudgetAccount, BufferBudget } from "./_buffer_budget.ts";
 * import assert from "node:assert/strict";
 *
 * let held = 0;
 * const budget = new BufferBudget<string>(1024);
 * const account: BudgetAccount = budget.open("socket 1", () => held, () => {
 *   held = 0;
 *   return true;
 * });
 * held = 300; // a message arrived
 * account.report();
 * assert.equal(budget.total, 300);
 * account.close(); // the socket ended
 * assert.equal(budget.total, 0);
 * ```
 */
export interface BudgetAccount {
  /**
   * Measures what the holder holds now and adds the change since its last
   * report to the budget's total; when that goes over the limit, the budget
   * closes the largest holders (perhaps this one) until it is under. Does
   * nothing once the account is closed.
   */
  report(): void;
  /**
   * The holder's output now references `frame` (queued, not copied), which
   * other holders may reference too: its bytes count once for all of them
   * until the last has written it or let it go. May close holders, as a
   * report does.
   *
   * @param frame Bytes that are never modified, known by identity.
   */
  share(frame: Uint8Array): void;
  /**
   * The output queued so far was taken as `chunks`, to be written in order
   * (what was taken before is written by now; the holder's measure counts
   * the chunks already): the shared frames among them count until they are
   * written. Those copied into the first run of small chunks (4 KiB at
   * most, see `FrameWriter.prototype.take()`) count as shared until that
   * run is written; those copied into later runs count as the holder's own
   * from now on.
   *
   * @param chunks The output, in the order it is written.
   */
  taken(chunks: readonly Uint8Array[]): void;
  /**
   * `bytes` more of the output taken were written (or never will be): the
   * shared frames they cover are let go.
   *
   * @param bytes How many, in order from the start of the output taken.
   */
  written(bytes: number): void;
  /** Takes what the holder holds off the total, for good. */
  close(): void;
}

// What the accounts of one budget share.
interface BudgetState<Owner> {
  readonly limit: number;
  // Not a Set: see SlotList.
  readonly holders: SlotList<Holder<Owner>>;
  // Each shared frame held, and how many times (by every holder together).
  readonly frames: Map<Uint8Array, number>;
  // Their bytes, each frame once.
  sharedBytes: number;
  // Holders' own bytes as last reported, and sharedBytes.
  total: number;
  enforce(): void;
}

function hold<Owner>(state: BudgetState<Owner>, frame: Uint8Array): void {
  const count = state.frames.get(frame) ?? 0;
  state.frames.set(frame, count + 1);
  if (count > 0) return;
  state.sharedBytes += frame.length;
  state.total += frame.length;
}

function release<Owner>(state: BudgetState<Owner>, frame: Uint8Array): void {
  const count = state.frames.get(frame)!;
  if (count > 1) {
    state.frames.set(frame, count - 1);
    return;
  }
  state.frames.delete(frame);
  state.sharedBytes -= frame.length;
  state.total -= frame.length;
}

// The shared frames one holder's output references, in output order: those
// queued, then those taken, each with where it ends in the output taken.
class SharedFrames {
  queued: Uint8Array[] = [];
  taken: Uint8Array[] = [];
  ends: number[] = [];
  // The first of `taken` not yet written.
  next = 0;
  // How much of the output taken was written.
  written = 0;
  // The bytes of the frames queued and of those taken and not written.
  bytes = 0;

  // What the holder's measure counts of them: all but what was written of
  // the one being written.
  unwritten(): number {
    if (this.next === this.taken.length) return this.bytes;
    const start = this.ends[this.next] - this.taken[this.next].length;
    return this.bytes - Math.max(0, this.written - start);
  }
}

// A class, not closures: a server keeps one per socket, idle ones included.
class Holder<Owner> implements BudgetAccount {
  // What the holder holds but the shared frames, as last measured.
  held = 0;
  open = true;
  // Allocated with the first shared frame.
  shared: SharedFrames | null = null;
  // Its place among the budget's holders.
  slot: Slot<Holder<Owner>> | null = null;

  constructor(
    readonly state: BudgetState<Owner>,
    readonly owner: Owner,
    readonly measure: () => number,
    readonly evict: () => boolean,
  ) {}

  // Runs on every read and send: no more than a subtraction, and nothing
  // without a limit (recount() measures when asked).
  report(): void {
    const state = this.state;
    if (!this.open || state.limit === Infinity) return;
    const held = this.own();
    const change = held - this.held;
    if (change === 0) return;
    this.held = held;
    state.total += change;
    if (change > 0 && state.total > state.limit) state.enforce();
  }

  /** What it holds now, less the shared frames. */
  own(): number {
    const shared = this.shared;
    return this.measure() - (shared === null ? 0 : shared.unwritten());
  }

  /** What closing it would let go: its own bytes and its shared frames. */
  keeps(): number {
    return this.held + (this.shared?.bytes ?? 0);
  }

  share(frame: Uint8Array): void {
    if (!this.open) return;
    const shared = this.shared ??= new SharedFrames();
    shared.queued.push(frame);
    shared.bytes += frame.length;
    const state = this.state;
    hold(state, frame);
    if (state.total > state.limit) state.enforce();
  }

  taken(chunks: readonly Uint8Array[]): void {
    const shared = this.shared;
    if (shared === null || !this.open) return;
    // One take per write: what was taken before is written by now.
    this.#letGo(shared, Infinity);
    shared.written = 0;
    if (shared.queued.length === 0) return;
    // The chunks hold the frames queued in their order: each as a chunk of
    // its own (referenced), or copied into a run of small chunks (see
    // FrameWriter.take()). The copies in the first such run (4 KiB at
    // most) count once, as shared, until that run is written: counted as
    // each holder's own, a burst of small messages published to thousands
    // of sockets would count thousands of times over and evict readers that
    // keep up. Copies in later runs (a backlog taken at once) are the
    // holder's own: its measure counts them, as it counts the run.
    const queued = shared.queued;
    shared.queued = [];
    let next = 0;
    let end = 0;
    let firstRun = true;
    let moved = 0;
    for (const chunk of chunks) {
      end += chunk.length;
      if (next === queued.length) continue;
      if (chunk === queued[next]) {
        shared.taken.push(chunk);
        shared.ends.push(end);
        next++;
        continue;
      }
      const copies = sharedFramesIn.get(chunk) ?? 0;
      for (let i = 0; i < copies; i++) {
        const frame = queued[next++];
        if (firstRun) {
          shared.taken.push(frame);
          shared.ends.push(end);
        } else {
          shared.bytes -= frame.length;
          moved += frame.length;
          release(this.state, frame);
        }
      }
      if (copies > 0) firstRun = false;
    }
    // (None is left unless a writer other than FrameWriter made the chunks:
    // those count until everything taken is written.)
    for (; next < queued.length; next++) {
      shared.taken.push(queued[next]);
      shared.ends.push(end);
    }
    // The copies let go of are the holder's own now: count them at once
    // (a holder whose write stalls may not report again for long).
    if (moved > 0) this.report();
  }

  written(bytes: number): void {
    const shared = this.shared;
    if (shared === null || !this.open) return;
    shared.written += bytes;
    this.#letGo(shared, shared.written);
  }

  /** Lets go of the frames taken that end by `offset`. */
  #letGo(shared: SharedFrames, offset: number): void {
    const { taken, ends } = shared;
    let next = shared.next;
    for (; next < taken.length && ends[next] <= offset; next++) {
      shared.bytes -= taken[next].length;
      release(this.state, taken[next]);
    }
    if (next > 0 && next === taken.length) {
      taken.length = 0;
      ends.length = 0;
      next = 0;
    }
    shared.next = next;
  }

  close(): void {
    if (!this.open) return;
    this.open = false;
    const state = this.state;
    state.holders.remove(this.slot!);
    state.total -= this.held;
    const shared = this.shared;
    if (shared === null) return;
    this.shared = null;
    for (const frame of shared.queued) release(state, frame);
    for (let i = shared.next; i < shared.taken.length; i++) {
      release(state, shared.taken[i]);
    }
  }
}

/**
 * What all the sockets of a server hold together (messages still arriving,
 * messages and pieces the handlers have not taken, output not written),
 * against one limit (`maxBufferedBytes`).
 *
 * Cheap where it runs all the time: each account adds only the change
 * since its last report to one running total, so no work grows with the
 * number of sockets. That total may run a little high (a shrink between
 * reports counts at the next one); only when it goes over the limit is it
 * counted again exactly, over every account, and if it is really over, the
 * accounts holding the most are evicted, largest first, until it is under.
 * An evicted account's bytes no longer count: its holder is expected to let
 * them go at once.
 *
 * A frame several accounts share (see {@linkcode BudgetAccount}) counts
 * once, while any of them holds it. Who holds the most is reckoned by what
 * each would let go: its own bytes and every shared frame it holds, whole.
 * Evicting one takes off its own bytes and the frames no other holds; the
 * next largest goes if that is not enough. A peer that stopped reading while
 * messages are published is soon the only holder of most of them: it goes
 * first.
 *
 * @typeParam Owner What each account is for (a socket), for `onEvict`.
 *
 * @example Two holders under a budget of 100 bytes
 * ```ts
 * import { BufferBudget } from "./_buffer_budget.ts";
 * import assert from "node:assert/strict";
 *
 * const evicted: string[] = [];
 * const budget = new BufferBudget<string>(100, (owner) => evicted.push(owner));
 * let small = 30, large = 0;
 * const a = budget.open("small", () => small, () => (small = 0, true));
 * const b = budget.open("large", () => large, () => (large = 0, true));
 * a.report();
 * large = 80; // over: 110 bytes
 * b.report();
 * assert.deepEqual(evicted, ["large"]);
 * assert.equal(budget.recount(), 30);
 * a.close();
 * assert.equal(budget.total, 0);
 * ```
 *
 * @example A frame shared by two holders counts once
 * ```ts
 * import { BufferBudget } from "./_buffer_budget.ts";
 * import assert from "node:assert/strict";
 *
 * const budget = new BufferBudget<string>(1000);
 * const frame = new Uint8Array(600);
 * // Each measure counts the frame: it is in both outputs, unwritten.
 * const a = budget.open("a", () => frame.length, () => true);
 * const b = budget.open("b", () => frame.length, () => true);
 * a.share(frame);
 * b.share(frame);
 * assert.equal(budget.recount(), 600);
 * ```
 */
export class BufferBudget<Owner> {
  /** The most bytes all accounts may hold together; `Infinity`: no limit. */
  readonly limit: number;
  readonly #onEvict: (owner: Owner, held: number, total: number) => void;
  readonly #state: BudgetState<Owner>;
  #enforcing = false;

  /**
   * Creates an empty budget.
   *
   * @param limit The most bytes all accounts may hold together.
   * @param onEvict Called for each account evicted, after its own `evict`,
   * with what it held (its shared frames whole) and the total before (to
   * log it, count it).
   */
  constructor(
    limit: number,
    onEvict: (owner: Owner, held: number, total: number) => void = () => {},
  ) {
    this.limit = limit;
    this.#onEvict = onEvict;
    this.#state = {
      limit,
      holders: new SlotList(),
      frames: new Map(),
      sharedBytes: 0,
      total: 0,
      enforce: () => this.#enforce(),
    };
  }

  /**
   * The bytes held, as last reported (see {@linkcode BufferBudget}: it may
   * run a little high; {@linkcode BufferBudget.prototype.recount} is exact).
   */
  get total(): number {
    return this.#state.total;
  }

  /**
   * Opens an account holding nothing yet.
   *
   * @param owner What the account is for.
   * @param measure What the owner holds now, in bytes, the shared frames
   * its output still counts included: cheap, and exact.
   * @param evict Lets everything the owner holds go, at once: called when
   * the budget is over and this account holds the most. Returns `false`
   * when the owner was already letting go (closing for another reason):
   * its account is closed all the same, but it is not counted as evicted.
   * @returns The account, to report to and close.
   */
  open(
    owner: Owner,
    measure: () => number,
    evict: () => boolean,
  ): BudgetAccount {
    const holder = new Holder(this.#state, owner, measure, evict);
    holder.slot = this.#state.holders.add(holder);
    return holder;
  }

  /**
   * Measures every account again.
   *
   * @returns The exact total, which {@linkcode BufferBudget.prototype.total}
   * is now.
   */
  recount(): number {
    const state = this.#state;
    let total = state.sharedBytes;
    state.holders.forEach((holder) => {
      holder.held = holder.own();
      total += holder.held;
    });
    return state.total = total;
  }

  /** Over the limit: counts again, and evicts the largest until under. */
  #enforce(): void {
    // An eviction that reports again (its socket letting go) must not
    // start another round inside this one.
    if (this.#enforcing) return;
    this.#enforcing = true;
    try {
      if (this.recount() <= this.limit) return;
      const state = this.#state;
      const largestFirst = state.holders.toArray().sort((a, b) =>
        b.keeps() - a.keeps()
      );
      for (const holder of largestFirst) {
        const keeps = holder.keeps();
        if (state.total <= this.limit || keeps === 0) break;
        const total = state.total;
        // Takes off its own bytes and the frames no other holds: the total
        // stays exact.
        holder.close();
        if (holder.evict()) this.#onEvict(holder.owner, keeps, total);
      }
    } finally {
      this.#enforcing = false;
    }
  }
}
