/**
 * The pieces of one message received with `streamMessages`, waiting for the
 * handler to read them from {@linkcode PieceQueue.prototype.readable}.
 *
 * They wait here rather than in the stream's own queue, so that the socket
 * can count every byte waiting for its handler, in every message not read
 * yet, against one limit (`receiveHighWaterMark`), and so that the tiny
 * pieces a peer trickling bytes produces merge into larger ones: a piece's
 * cost counts a fixed overhead besides its bytes.
 *
 * @example
 * ```ts
 * import { PieceQueue } from "./_piece_queue.ts";
 * import assert from "node:assert/strict";
 *
 * let waiting = 0;
 * const queue = new PieceQueue<string>((cost) => waiting += cost);
 * queue.push("Hel");
 * queue.push("lo");
 * queue.end();
 * assert.ok(waiting > 5);
 * assert.deepEqual(await Array.fromAsync(queue.readable), ["Hello"]);
 * assert.equal(waiting, 0);
 * ```
 */
export class PieceQueue<T extends string | Uint8Array> {
  /** The message's pieces, for the handler. */
  readonly readable: ReadableStream<T>;
  readonly #onCost: (change: number) => void;
  #pieces: (string | Uint8Array)[] = [];
  #costs: number[] = [];
  #head = 0;
  // The last piece, while it is merged into: a buffer with room to spare.
  #tail: Uint8Array | null = null;
  #tailLength = 0;
  #controller!: ReadableStreamDefaultController<T>;
  #pulling = false;
  #ended = false;
  #canceled = false;
  #released = false;

  /**
   * Creates the queue of one message.
   *
   * @param onCost Called with the cost of each piece queued (positive) and
   * taken or dropped (negative); `onCost` also tells the socket the handler
   * made progress.
   * @param onCancel Called when the handler cancels the stream.
   */
  constructor(
    onCost: (change: number) => void,
    onCancel: () => void = () => {},
  ) {
    this.#onCost = onCost;
    this.readable = new ReadableStream<T>({
      start: (controller) => {
        this.#controller = controller;
      },
      pull: () => {
        if (!this.#deliver()) this.#pulling = true;
      },
      cancel: () => {
        this.#canceled = true;
        this.#drop();
        onCancel();
      },
    }, { highWaterMark: 0 });
  }

  /** Whether the handler canceled the stream: the rest is not wanted. */
  get canceled(): boolean {
    return this.#canceled;
  }

  /**
   * Queues a piece; a small one is merged into the last piece if that is
   * still waiting.
   *
   * @param piece The next bytes or text of the message.
   */
  push(piece: string | Uint8Array): void {
    if (this.#canceled || this.#ended) return;
    const last = this.#pieces.length - 1;
    if (last >= this.#head && piece.length < MERGE_LIMIT) {
      const tail = this.#pieces[last];
      if (
        typeof piece === "string" && typeof tail === "string" &&
        tail.length + piece.length <= MERGE_LIMIT
      ) {
        // V8 keeps `tail + piece` as a pair (a cons string) until it is
        // read: each merge costs that object too.
        this.#pieces[last] = tail + piece;
        this.#addCost(last, piece.length + TEXT_MERGE_OVERHEAD);
        this.#deliverIfPulling();
        return;
      }
      if (
        piece instanceof Uint8Array && tail instanceof Uint8Array &&
        this.#appendBytes(tail, piece)
      ) {
        this.#addCost(last, piece.length);
        this.#deliverIfPulling();
        return;
      }
    }
    this.#tail = null;
    const cost = piece.length + PIECE_OVERHEAD;
    this.#pieces.push(piece);
    this.#costs.push(cost);
    if (!this.#released) this.#onCost(cost);
    this.#deliverIfPulling();
  }

  /** Whether the whole message has arrived. */
  get ended(): boolean {
    return this.#ended;
  }

  /** Whether the whole message has arrived and been read (or dropped). */
  get done(): boolean {
    return (this.#ended || this.#canceled) &&
      (this.#released || this.#head === this.#pieces.length);
  }

  /**
   * Stops counting: the pieces still waiting no longer cost anything to
   * the socket (the handler moved on to later messages; they are its to
   * read or drop).
   */
  release(): void {
    this.#drop(false);
    this.#released = true;
  }

  /** Ends the message: the stream closes once its pieces are read. */
  end(): void {
    this.#ended = true;
    if (this.#tail !== null) {
      // No spare room kept with a message that will not grow.
      const last = this.#pieces.length - 1;
      this.#pieces[last] = this.#tail.slice(0, this.#tailLength);
      this.#tail = null;
    }
    if (this.#pulling && this.#head === this.#pieces.length) {
      this.#pulling = false;
      this.#controller.close();
    }
  }

  /**
   * Fails the stream (the connection ended mid-message); pieces still
   * waiting are dropped.
   *
   * @param error What the handler's read rejects with.
   */
  error(error: unknown): void {
    if (this.#canceled || this.#ended) return;
    this.#canceled = true;
    this.#drop();
    this.#controller.error(error);
  }

  // Merges `piece` into the last piece, in a buffer that doubles as it
  // fills, up to MERGE_LIMIT; false when it does not fit.
  #appendBytes(tail: Uint8Array, piece: Uint8Array): boolean {
    const last = this.#pieces.length - 1;
    const before = this.#tail === null ? tail.length : this.#tailLength;
    const length = before + piece.length;
    if (length > MERGE_LIMIT) return false;
    if (this.#tail === null || this.#tail.length < length) {
      const grown = new Uint8Array(
        Math.min(MERGE_LIMIT, Math.max(64, 2 * length)),
      );
      grown.set(
        this.#tail === null ? tail : this.#tail.subarray(0, before),
      );
      this.#tail = grown;
    }
    this.#tail.set(piece, before);
    this.#tailLength = length;
    this.#pieces[last] = this.#tail.subarray(0, length);
    return true;
  }

  #addCost(index: number, cost: number): void {
    this.#costs[index] += cost;
    if (!this.#released) this.#onCost(cost);
  }

  #deliverIfPulling(): void {
    if (this.#pulling && this.#deliver()) this.#pulling = false;
  }

  // Hands the next piece to the stream; false when none is waiting.
  #deliver(): boolean {
    if (this.#head === this.#pieces.length) {
      if (!this.#ended) return false;
      this.#controller.close();
      return true;
    }
    const index = this.#head++;
    let piece = this.#pieces[index];
    if (index === this.#pieces.length - 1 && this.#tail !== null) {
      // Not a view of the merge buffer: a copy of what it holds.
      piece = (piece as Uint8Array).slice();
      this.#tail = null;
    }
    const cost = this.#costs[index];
    this.#pieces[index] = EMPTY;
    if (this.#head === this.#pieces.length) {
      this.#pieces = [];
      this.#costs = [];
      this.#head = 0;
    }
    if (!this.#released) this.#onCost(-cost);
    this.#controller.enqueue(piece as T);
    return true;
  }

  // Gives back the cost of the pieces waiting; drops them too unless told
  // to keep them (a released queue still holds them for the handler).
  #drop(discard = true): void {
    let cost = 0;
    for (let i = this.#head; i < this.#costs.length; i++) {
      cost += this.#costs[i];
    }
    if (discard) {
      this.#pieces = [];
      this.#costs = [];
      this.#head = 0;
      this.#tail = null;
    }
    if (cost > 0 && !this.#released) this.#onCost(-cost);
  }
}

// Pieces smaller than this merge while they wait; a piece costs its length
// plus this (the objects that carry it), so that a million one-byte pieces
// cannot hide behind a byte limit.
const MERGE_LIMIT = 16 * 1024;
const PIECE_OVERHEAD = 128;
const TEXT_MERGE_OVERHEAD = 48;
const EMPTY = new Uint8Array(0);
