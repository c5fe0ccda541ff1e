/**
 * Waits that one event can cut short, such as a close while a stream waits
 * for its next piece.
 *
 * `Promise.race([next(), stopped])` in a loop leaks: each race adds a
 * reaction to the long-lived `stopped` that holds the race's own promise,
 * and so its result, until `stopped` settles — every piece of a long stream
 * stays in memory. A wait here leaves nothing behind once it is over.
 *
 * @example
 * ```ts
 * import { Interruptible } from "./_interruptible.ts";
 * import assert from "node:assert/strict";
 *
 * const stop = new Interruptible<"stopped">();
 * assert.equal(await stop.wait(Promise.resolve(1)), 1);
 * const never = stop.wait(new Promise<number>(() => {}));
 * stop.interrupt("stopped");
 * assert.equal(await never, "stopped");
 * assert.equal(await stop.wait(Promise.resolve(2)), "stopped");
 * ```
 */
export class Interruptible<T> {
  #interruption: { value: T } | null = null;
  #wake: ((value: T) => void) | null = null;

  /** Whether {@linkcode Interruptible.prototype.interrupt} was called. */
  get interrupted(): boolean {
    return this.#interruption !== null;
  }

  /**
   * Ends the wait under way, and every later one, with `value`. Only the
   * first call counts.
   */
  interrupt(value: T): void {
    if (this.#interruption !== null) return;
    this.#interruption = { value };
    this.#wake?.(value);
    this.#wake = null;
  }

  /**
   * Settles like `value` (a promise, or a value as it is), or with the
   * interruption's value if it comes first (or came before).
   */
  wait<R>(value: R | PromiseLike<R>): Promise<R | T> {
    if (this.#interruption !== null) {
      // Nothing waits for `value` now: its failure must not go unhandled.
      Promise.resolve(value).catch(() => {});
      return Promise.resolve(this.#interruption.value);
    }
    return new Promise<R | T>((resolve, reject) => {
      const settle = (result: R | T) => {
        // Nothing of a finished wait is kept.
        if (this.#wake === settle) this.#wake = null;
        resolve(result);
      };
      this.#wake = settle;
      Promise.resolve(value).then(settle, (error) => {
        if (this.#wake === settle) this.#wake = null;
        reject(error);
      });
    });
  }
}
