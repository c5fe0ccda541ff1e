/**
 * Byte helpers shared by the protocol core and the server.
 *
 * @module
 */

/**
 * Joins chunks into one new buffer (always a copy, so the result owns its
 * memory).
 */
export function concat(chunks: Uint8Array[]): Uint8Array<ArrayBuffer> {
  let size = 0;
  for (const chunk of chunks) size += chunk.length;
  const joined = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    joined.set(chunk, offset);
    offset += chunk.length;
  }
  return joined;
}

/** The index just past the first CRLFCRLF in `buffer[from, to)`, or -1. */
export function findHeadEnd(
  buffer: Uint8Array,
  from: number,
  to: number,
): number {
  for (let i = from; i + 3 < to; i++) {
    if (
      buffer[i] === 13 && buffer[i + 1] === 10 && buffer[i + 2] === 13 &&
      buffer[i + 3] === 10
    ) return i + 4;
  }
  return -1;
}

const ascii = new TextDecoder();

/** Decodes an HTTP head as ISO-8859-1: one character per byte. */
export function decodeLatin1(bytes: Uint8Array): string {
  // Heads are nearly always ASCII, which the native decoder reads fastest.
  let high = 0;
  for (let i = 0; i < bytes.length; i++) high |= bytes[i];
  if (high < 0x80) return ascii.decode(bytes);
  let text = "";
  for (let i = 0; i < bytes.length; i += 4096) {
    text += String.fromCharCode(...bytes.subarray(i, i + 4096));
  }
  return text;
}

/**
 * Encodes an HTTP head as ISO-8859-1: one byte per character. Field values
 * may hold bytes 0x80-0xFF (obs-text), which `Headers` keeps as the
 * characters U+0080-U+00FF; UTF-8 would send each as two bytes. Callers
 * have checked that no character is above U+00FF.
 */
export function encodeLatin1(text: string): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

/**
 * Frees `buffer`'s memory now rather than at the next garbage collection, by
 * detaching it: every view of it becomes empty. Only for buffers nothing
 * else can still see.
 */
export function free(buffer: ArrayBuffer): void {
  buffer.transfer(0);
}

/**
 * `bytes`, unless its buffer was detached (transferred, to a worker say):
 * then a `TypeError` that begins with `context`. A detached view reads as
 * empty, and copying one throws an error that names neither the call nor
 * the cause.
 */
export function attached<T extends Uint8Array | ArrayBuffer>(
  bytes: T,
  context: string,
): T {
  // Only an empty view can be detached; asking a small view for its buffer
  // would move its bytes off the V8 heap.
  if (
    bytes instanceof ArrayBuffer
      ? bytes.detached
      : bytes.length === 0 && (bytes.buffer as ArrayBuffer).detached
  ) {
    throw new TypeError(
      `${context}: its ArrayBuffer is detached (transferred elsewhere, to a worker say); send a copy made before the transfer`,
    );
  }
  return bytes;
}
