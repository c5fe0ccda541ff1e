/**
 * The chunks `FrameWriter.prototype.take()` joined shared frames (queued with
 * `writeEncoded()`) into, each with how many it holds: a memory budget that
 * counts a shared frame once for all its holders finds them here, in output
 * order, to know when each copy is written.
 */
export const sharedFramesIn: WeakMap<Uint8Array, number> = new WeakMap();
