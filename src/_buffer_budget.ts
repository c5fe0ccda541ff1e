/**
 * One holder of bytes under a {@linkcode BufferBudget}: a socket reports
 * what it holds with {@linkcode BudgetAccount.prototype.report} where that
 * grows or shrinks, and {@linkcode BudgetAccount.prototype.close}s its
 * account when it ends.
 */
export interface BudgetAccount {
  /**
   * Measures what the holder holds now and adds the change since its last
   * report to the budget's total; when that goes over the limit, the budget
   * closes the largest holders (perhaps this one) until it is under. Does
   * nothing once the account is closed.
   */
  report(): void;
  /** Takes what the holder last reported off the total, for good. */
  close(): void;
}

// What the accounts of one budget share.
interface BudgetState<Owner> {
  readonly limit: number;
  readonly holders: Set<Holder<Owner>>;
  total: number;
  enforce(): void;
}

// A class, not closures: a server keeps one per socket, idle ones included.
class Holder<Owner> implements BudgetAccount {
  held = 0;
  open = true;

  constructor(
    readonly state: BudgetState<Owner>,
    readonly owner: Owner,
    readonly measure: () => number,
    readonly evict: () => void,
  ) {}

  // Runs on every read and send: no more than a subtraction, and nothing
  // without a limit (recount() measures when asked).
  report(): void {
    const state = this.state;
    if (!this.open || state.limit === Infinity) return;
    const held = this.measure();
    const change = held - this.held;
    if (change === 0) return;
    this.held = held;
    state.total += change;
    if (change > 0 && state.total > state.limit) state.enforce();
  }

  close(): void {
    if (!this.open) return;
    this.open = false;
    this.state.holders.delete(this);
    this.state.total -= this.held;
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
 * const a = budget.open("small", () => small, () => small = 0);
 * const b = budget.open("large", () => large, () => large = 0);
 * a.report();
 * large = 80; // over: 110 bytes
 * b.report();
 * assert.deepEqual(evicted, ["large"]);
 * assert.equal(budget.recount(), 30);
 * a.close();
 * assert.equal(budget.total, 0);
 * ```
 */
export class BufferBudget<Owner> {
  /** The most bytes all accounts may hold together; `Infinity`: no limit. */
  readonly limit: number;
  readonly #onEvict: (owner: Owner, held: number) => void;
  readonly #state: BudgetState<Owner>;
  #enforcing = false;

  /**
   * Creates an empty budget.
   *
   * @param limit The most bytes all accounts may hold together.
   * @param onEvict Called for each account evicted, after its own `evict`,
   * with what it held (to log it, count it).
   */
  constructor(
    limit: number,
    onEvict: (owner: Owner, held: number) => void = () => {},
  ) {
    this.limit = limit;
    this.#onEvict = onEvict;
    this.#state = {
      limit,
      holders: new Set(),
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
   * @param measure What the owner holds now, in bytes: cheap, and exact.
   * @param evict Lets everything the owner holds go, at once: called when
   * the budget is over and this account holds the most.
   * @returns The account, to report to and close.
   */
  open(owner: Owner, measure: () => number, evict: () => void): BudgetAccount {
    const holder = new Holder(this.#state, owner, measure, evict);
    this.#state.holders.add(holder);
    return holder;
  }

  /**
   * Measures every account again.
   *
   * @returns The exact total, which {@linkcode BufferBudget.prototype.total}
   * is now.
   */
  recount(): number {
    let total = 0;
    for (const holder of this.#state.holders) {
      holder.held = holder.measure();
      total += holder.held;
    }
    return this.#state.total = total;
  }

  /** Over the limit: counts again, and evicts the largest until under. */
  #enforce(): void {
    // An eviction that reports again (its socket letting go) must not
    // start another round inside this one.
    if (this.#enforcing) return;
    this.#enforcing = true;
    try {
      if (this.recount() <= this.limit) return;
      const largestFirst = [...this.#state.holders].sort((a, b) =>
        b.held - a.held
      );
      for (const holder of largestFirst) {
        if (this.#state.total <= this.limit || holder.held === 0) break;
        const held = holder.held;
        holder.close();
        holder.evict();
        this.#onEvict(holder.owner, held);
      }
    } finally {
      this.#enforcing = false;
    }
  }
}
