import { SlotList } from "./_slot_list.ts";

/**
 * One interval timer for many sockets: keepalive and idle checks of every
 * socket run on a shared tick instead of a timer each, so idle sockets cost
 * no timers. The interval runs only while something is registered and never
 * keeps the process alive on its own.
 *
 * @example One interval for many callbacks
 * ```ts
 * import { Ticker } from "./ticker.ts";
 * import assert from "node:assert/strict";
 *
 * // A server's sockets run their keepalive and idle checks on one of these.
 * const ticker = new Ticker(20);
 * const ticks: number[] = [];
 * const remove = ticker.add((now) => ticks.push(now)); // now: performance.now()
 * // The ticker keeps no process alive by itself: a timer of ours waits here.
 * await new Promise((resolve) => setTimeout(resolve, 100));
 * remove(); // the last callback gone, the interval stops
 * assert.ok(ticks.length > 0);
 * ```
 */
export class Ticker {
  readonly #period: number;
  // Not a Set: see SlotList.
  readonly #callbacks = new SlotList<(now: number) => void>();
  #timer: ReturnType<typeof setInterval> | undefined;

  /**
   * Creates a ticker.
   *
   * @param period Milliseconds between ticks.
   */
  constructor(period: number) {
    this.#period = period;
  }

  /** Milliseconds between ticks. */
  get period(): number {
    return this.#period;
  }

  /**
   * The clock the ticks are measured on (`performance.now()`), for times
   * taken between ticks and compared on them.
   *
   * @returns The current time in milliseconds.
   */
  now(): number {
    return performance.now();
  }

  /**
   * Calls `callback` with the current time on every tick until the
   * returned function is called.
   *
   * @param callback Runs on every tick.
   * @returns Unregisters the callback.
   */
  add(callback: (now: number) => void): () => void {
    const slot = this.#callbacks.add(callback);
    if (this.#timer === undefined) {
      const timer = setInterval(() => {
        const now = performance.now();
        this.#callbacks.forEach((tick) => tick(now));
      }, this.#period);
      Deno.unrefTimer(timer);
      this.#timer = timer;
    }
    return () => {
      this.#callbacks.remove(slot);
      if (this.#callbacks.size === 0 && this.#timer !== undefined) {
        clearInterval(this.#timer);
        this.#timer = undefined;
      }
    };
  }
}

/**
 * The tick period for a set of timeouts: a quarter of the shortest one, so
 * each fires within 25% of its value, between 20 ms and one second.
 *
 * @param timeouts Milliseconds; zero means disabled.
 * @returns The period in milliseconds.
 */
export function tickPeriod(...timeouts: number[]): number {
  const enabled = timeouts.filter((timeout) => timeout > 0);
  if (enabled.length === 0) return 1000;
  return Math.min(1000, Math.max(20, Math.floor(Math.min(...enabled) / 4)));
}
