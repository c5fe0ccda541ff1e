/**
 * Watches the byte buffers code allocates, so tests and the fuzzer can check
 * that hostile input never makes the protocol core allocate more than its
 * limits allow.
 *
 * While {@linkcode trackAllocations} runs its callback, the global
 * `Uint8Array` and `ArrayBuffer` constructors are replaced by proxies that
 * record the size of every buffer they create, and `slice()` on both is
 * wrapped the same way. Module code looks the globals up at each call, so the
 * core is observed without any change to it. Buffers made by subclasses
 * (node's `Buffer`) or by native code (`TextEncoder.encode`) are not seen;
 * the core uses neither on its input path.
 *
 * @module
 */

/** One buffer created while tracking. */
export interface Allocation {
  /** Its size in bytes. */
  size: number;
  /** The caller's mark when it was made (see {@linkcode AllocationLog.mark}). */
  mark: number;
  /** The stack, captured only for buffers above the `stackAbove` threshold. */
  stack?: string;
}

/** What {@linkcode trackAllocations} recorded. */
export interface AllocationLog {
  /** Every buffer created, in order. */
  readonly allocations: Allocation[];
  /** The largest size seen, or 0. */
  readonly largest: number;
  /**
   * A number the callback may set (the bytes fed so far, say); each
   * allocation remembers the value current when it happened.
   */
  mark: number;
}

/** Options of {@linkcode trackAllocations}. */
export interface TrackOptions {
  /**
   * Capture a stack for buffers larger than this many bytes (stacks are
   * slow; keep it above the sizes every call makes).
   * @default {Infinity}
   */
  stackAbove?: number;
}

const OriginalUint8Array = globalThis.Uint8Array;
const OriginalArrayBuffer = globalThis.ArrayBuffer;
let active: { log: AllocationLog; stackAbove: number } | null = null;

function record(size: number): void {
  const current = active;
  if (current === null || !Number.isFinite(size)) return;
  const log = current.log as { largest: number } & AllocationLog;
  const allocation: Allocation = { size, mark: log.mark };
  if (size > current.stackAbove) allocation.stack = new Error().stack;
  log.allocations.push(allocation);
  if (size > log.largest) log.largest = size;
}

/** The byte size `new Uint8Array(...args)` allocates; 0 for a view. */
function constructedSize(args: unknown[]): number {
  const first = args[0];
  if (first === undefined) return 0;
  if (typeof first === "number") return first;
  if (
    first instanceof OriginalArrayBuffer ||
    (typeof SharedArrayBuffer !== "undefined" &&
      first instanceof SharedArrayBuffer)
  ) return 0;
  const length = (first as { length?: unknown }).length;
  return typeof length === "number" ? length : 0;
}

/**
 * Runs `fn` with every `Uint8Array` / `ArrayBuffer` allocation recorded.
 * Not reentrant; the globals are restored even when `fn` throws.
 *
 * @param fn The code to watch; it receives the log, to set `mark`.
 * @param options When to capture stacks.
 * @returns What `fn` returned, and the log.
 */
export function trackAllocations<T>(
  fn: (log: AllocationLog) => T,
  options: TrackOptions = {},
): { result: T; log: AllocationLog } {
  if (active !== null) {
    throw new TypeError("Cannot track allocations: already tracking");
  }
  const log: AllocationLog = { allocations: [], largest: 0, mark: 0 };
  const u8Proto = OriginalUint8Array.prototype;
  const abProto = OriginalArrayBuffer.prototype;
  const u8Slice = u8Proto.slice;
  const abSlice = abProto.slice;
  const u8Proxy: Uint8ArrayConstructor = new Proxy(OriginalUint8Array, {
    construct(target, args, newTarget): object {
      record(constructedSize(args));
      return Reflect.construct(
        target,
        args,
        newTarget === u8Proxy ? target : newTarget,
      );
    },
  });
  const abProxy: ArrayBufferConstructor = new Proxy(OriginalArrayBuffer, {
    construct(target, args, newTarget): object {
      record(typeof args[0] === "number" ? args[0] : 0);
      return Reflect.construct(
        target,
        args,
        newTarget === abProxy ? target : newTarget,
      );
    },
  });
  Object.defineProperty(u8Proto, "slice", {
    value: function (this: Uint8Array, start?: number, end?: number) {
      const copy = u8Slice.call(this, start, end);
      record(copy.byteLength);
      return copy;
    },
    writable: true,
    configurable: true,
  });
  Object.defineProperty(abProto, "slice", {
    value: function (this: ArrayBuffer, start?: number, end?: number) {
      const copy = abSlice.call(this, start, end);
      record(copy.byteLength);
      return copy;
    },
    writable: true,
    configurable: true,
  });
  globalThis.Uint8Array = u8Proxy;
  globalThis.ArrayBuffer = abProxy;
  active = { log, stackAbove: options.stackAbove ?? Infinity };
  try {
    return { result: fn(log), log };
  } finally {
    active = null;
    globalThis.Uint8Array = OriginalUint8Array;
    globalThis.ArrayBuffer = OriginalArrayBuffer;
    // Uint8Array.prototype.slice is inherited from %TypedArray%; the
    // wrapper was an own property, so deleting it restores the original.
    delete (u8Proto as { slice?: unknown }).slice;
    Object.defineProperty(abProto, "slice", {
      value: abSlice,
      writable: true,
      configurable: true,
    });
  }
}

/**
 * Whether an allocation is the frame writer's shared output arena: a fixed
 * 64 KiB block for the small frames of every connection (pongs, close
 * frames), allocated when the previous one fills up, whatever the input.
 *
 * @param allocation An allocation with its stack.
 * @returns `true` for the arena.
 */
export function isOutputArena(allocation: Allocation): boolean {
  return allocation.size === 64 * 1024 &&
    allocation.stack !== undefined &&
    /frame_writer\.ts/.test(allocation.stack);
}
