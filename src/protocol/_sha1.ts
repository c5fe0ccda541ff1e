/**
 * SHA-1 (FIPS 180-4 §6.1) for the handshake's accept key.
 *
 * `crypto.subtle.digest` hands the work to a thread pool and settles a
 * promise on a later turn of the event loop: 25-38 µs of the server's main
 * thread per handshake under connection churn, for hashing 60 bytes that
 * take about 1 µs here. The accept key is a proof that the server read the
 * request (RFC 6455 §1.3), not a security measure; the tests check this
 * function against `crypto.subtle` on random inputs.
 *
 * @module
 */

const words = new Int32Array(80);
// The chaining state h0-h4, between compress() and its caller.
const state = new Int32Array(5);
// For sha1Base64: its input padded (at most two blocks), and the digest.
const scratch = new Uint8Array(128);
const scratchView = new DataView(scratch.buffer);
const scratchView64 = new DataView(scratch.buffer, 0, 64);
const scratchDigest = new Uint8Array(20);
const scratchDigestView = new DataView(scratchDigest.buffer);
const utf8 = new TextEncoder();

/**
 * The SHA-1 digest of `data`.
 *
 * @param data The bytes to hash.
 * @returns The 20-byte digest.
 *
 * @example The FIPS 180 sample "abc"
 * ```ts
 * import { sha1 } from "./_sha1.ts";
 * import assert from "node:assert/strict";
 *
 * const digest = sha1(new TextEncoder().encode("abc"));
 * assert.equal(digest.toHex(), "a9993e364706816aba3e25717850c26c9cd0d89d");
 * ```
 */
export function sha1(data: Uint8Array): Uint8Array<ArrayBuffer> {
  const length = data.length;
  const padded = new Uint8Array((Math.floor((length + 8) / 64) + 1) * 64);
  padded.set(data);
  const view = new DataView(padded.buffer);
  pad(padded, view, length);
  compress(view, padded.length);
  const digest = new Uint8Array(20);
  writeDigest(new DataView(digest.buffer));
  return digest;
}

/**
 * The SHA-1 digest of `text`'s UTF-8, in base64. A short ASCII text (the
 * accept key's 60 characters) is hashed in buffers kept for it: no
 * allocation, which in Deno costs more than the hashing.
 *
 * @param text The text to hash.
 * @returns The digest, base64-encoded.
 *
 * @example The accept key of RFC 6455 §1.3
 * ```ts
 * import { sha1Base64 } from "./_sha1.ts";
 * import assert from "node:assert/strict";
 *
 * const key = "dGhlIHNhbXBsZSBub25jZQ==258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
 * assert.equal(sha1Base64(key), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
 * ```
 */
export function sha1Base64(text: string): string {
  const length = text.length;
  // Two blocks hold 119 bytes with the padding's 9.
  if (length > 119) return sha1(utf8.encode(text)).toBase64();
  for (let i = 0; i < length; i++) {
    const code = text.charCodeAt(i);
    if (code > 0x7f) return sha1(utf8.encode(text)).toBase64();
    scratch[i] = code;
  }
  const blocks = length + 9 <= 64 ? 64 : 128;
  scratch.fill(0, length, blocks);
  const view = blocks === 128 ? scratchView : scratchView64;
  pad(scratch, view, length);
  compress(view, blocks);
  writeDigest(scratchDigestView);
  return scratchDigest.toBase64();
}

/**
 * Appends SHA-1's padding to the `length` bytes of message at the start of
 * `view` (zeros after them up to its end): a 1 bit, and the length in bits
 * as 64 bits at the end.
 */
function pad(padded: Uint8Array, view: DataView, length: number): void {
  const end = view.byteLength;
  padded[length] = 0x80;
  view.setUint32(end - 8, Math.floor(length / 0x20000000));
  view.setUint32(end - 4, (length * 8) >>> 0);
}

/** Hashes the first `byteLength` bytes of `view` (whole blocks) into `state`. */
function compress(view: DataView, byteLength: number): void {
  let h0 = 0x67452301, h1 = 0xefcdab89 | 0, h2 = 0x98badcfe | 0;
  let h3 = 0x10325476, h4 = 0xc3d2e1f0 | 0;
  for (let block = 0; block < byteLength; block += 64) {
    for (let i = 0; i < 16; i++) words[i] = view.getInt32(block + i * 4);
    for (let i = 16; i < 80; i++) {
      const x = words[i - 3] ^ words[i - 8] ^ words[i - 14] ^ words[i - 16];
      words[i] = (x << 1) | (x >>> 31);
    }
    let a = h0, b = h1, c = h2, d = h3, e = h4;
    for (let i = 0; i < 80; i++) {
      let f: number, k: number;
      if (i < 20) {
        f = (b & c) | (~b & d);
        k = 0x5a827999;
      } else if (i < 40) {
        f = b ^ c ^ d;
        k = 0x6ed9eba1;
      } else if (i < 60) {
        f = (b & c) | (b & d) | (c & d);
        k = 0x8f1bbcdc | 0;
      } else {
        f = b ^ c ^ d;
        k = 0xca62c1d6 | 0;
      }
      const t = (((a << 5) | (a >>> 27)) + f + e + k + words[i]) | 0;
      e = d;
      d = c;
      c = (b << 30) | (b >>> 2);
      b = a;
      a = t;
    }
    h0 = (h0 + a) | 0;
    h1 = (h1 + b) | 0;
    h2 = (h2 + c) | 0;
    h3 = (h3 + d) | 0;
    h4 = (h4 + e) | 0;
  }
  state[0] = h0;
  state[1] = h1;
  state[2] = h2;
  state[3] = h3;
  state[4] = h4;
}

function writeDigest(out: DataView): void {
  for (let i = 0; i < 5; i++) out.setInt32(i * 4, state[i]);
}
