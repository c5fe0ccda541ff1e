import { createSimdXor, SIMD_BLOCK, type SimdXor } from "./_simd_xor.ts";

// Below this size the JavaScript loop is as fast as copying into the
// WebAssembly kernel and back (measured).
const SIMD_MIN = 1024;
// Instantiated with the first payload that needs it: WebAssembly costs a
// process 1-2.5 MB of RSS from its first module on (measured), which a
// server of small messages (or the CLI) need not pay.
let simdXor: SimdXor | null | undefined;

/** The kernel, made on first use; `null` (tried once) where unavailable. */
function simdKernel(): SimdXor | null {
  if (simdXor === undefined) simdXor = createSimdXor();
  return simdXor;
}

/**
 * XORs `data` in place with the 4-byte masking key (RFC 6455 §5.3), starting
 * at position `offset` of the key stream. Masking and unmasking are the same
 * operation. Works 64 bytes at a time with WebAssembly SIMD for payloads of
 * 1 KiB and more, else a 32-bit word at a time when `data` is word-aligned.
 *
 * @param data The bytes to mask or unmask; modified in place.
 * @param key The 4-byte masking key.
 * @param offset How many payload bytes came before `data` (for payloads
 * handled in pieces).
 *
 * @example Masking and unmasking
 * ```ts
 * import { applyMask } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const key = new Uint8Array([0x37, 0xfa, 0x21, 0x3d]);
 * const data = new TextEncoder().encode("Hello");
 * applyMask(data, key);
 * assert.deepEqual(data, new Uint8Array([0x7f, 0x9f, 0x4d, 0x51, 0x58]));
 * applyMask(data, key);
 * assert.equal(new TextDecoder().decode(data), "Hello");
 * ```
 */
export function applyMask(
  data: Uint8Array,
  key: Uint8Array,
  offset = 0,
): void {
  const length = data.length;
  let i = 0;
  const simd = length >= SIMD_MIN ? simdKernel() : null;
  if (simd !== null) {
    // WebAssembly memory is little-endian whatever the platform.
    const word = key[offset & 3] | (key[(offset + 1) & 3] << 8) |
      (key[(offset + 2) & 3] << 16) | (key[(offset + 3) & 3] << 24);
    const whole = length - (length & 63);
    for (; i < whole; i += SIMD_BLOCK) {
      simd(data.subarray(i, Math.min(whole, i + SIMD_BLOCK)), word);
    }
    for (i = whole; i < length; i++) data[i] ^= key[(offset + i) & 3];
    return;
  }
  // Unaligned head, so the body can be read as 32-bit words.
  const head = Math.min(length, (4 - (data.byteOffset & 3)) & 3);
  for (; i < head; i++) data[i] ^= key[(offset + i) & 3];
  // Short payloads: a word view would cost more than it saves (and leave
  // garbage behind for every small message).
  if (length - i >= 64) {
    // Rotate the key so word i of the body starts at the right key byte.
    const r = (offset + i) & 3;
    const b0 = key[r], b1 = key[(r + 1) & 3];
    const b2 = key[(r + 2) & 3], b3 = key[(r + 3) & 3];
    const word = new Uint32Array(
      data.buffer,
      data.byteOffset + i,
      (length - i) >>> 2,
    );
    // Words are read in platform byte order; build the key word the same way.
    const keyWord = LITTLE_ENDIAN
      ? (b0 | (b1 << 8) | (b2 << 16) | (b3 << 24))
      : ((b0 << 24) | (b1 << 16) | (b2 << 8) | b3);
    const words = word.length;
    for (let w = 0; w < words; w++) word[w] ^= keyWord;
    i += words << 2;
  }
  for (; i < length; i++) data[i] ^= key[(offset + i) & 3];
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
