/**
 * Runs at most `limit` async tasks at once; the rest wait their turn in
 * order. Bounds concurrent compressions across all sockets.
 */
export class Limiter {
  readonly #limit: number;
  #running = 0;
  readonly #waiting: (() => void)[] = [];

  /**
   * Creates a limiter.
   *
   * @param limit The most tasks running at once.
   */
  constructor(limit: number) {
    this.#limit = limit;
  }

  /**
   * Runs `task` when a slot is free.
   *
   * @param task The work.
   * @returns What `task` returns.
   */
  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.#running >= this.#limit) {
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    }
    this.#running++;
    try {
      return await task();
    } finally {
      this.#running--;
      this.#waiting.shift()?.();
    }
  }
}
