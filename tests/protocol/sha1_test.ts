import assert from "node:assert/strict";
import fc from "fast-check";
import { sha1, sha1Base64 } from "../../src/protocol/_sha1.ts";

const encode = (text: string) => new TextEncoder().encode(text);

Deno.test("sha1 gives the FIPS 180 sample digests", () => {
  assert.equal(
    sha1(encode("")).toHex(),
    "da39a3ee5e6b4b0d3255bfef95601890afd80709",
  );
  assert.equal(
    sha1(encode("abc")).toHex(),
    "a9993e364706816aba3e25717850c26c9cd0d89d",
  );
  assert.equal(
    sha1(encode("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))
      .toHex(),
    "84983e441c3bd26ebaae4aa1f95129e5e54670f1",
  );
  assert.equal(
    sha1(new Uint8Array(1_000_000).fill(0x61)).toHex(),
    "34aa973cd4c4daa4f61eeb2bdbad27316534016f",
  );
});

Deno.test("sha1 agrees with crypto.subtle around every block boundary", async () => {
  // 55 and 56 bytes: the length still fits the block, or needs another.
  for (let length = 0; length <= 200; length++) {
    const data = new Uint8Array(length).map((_, i) => (i * 37 + length) & 0xff);
    const expected = new Uint8Array(await crypto.subtle.digest("SHA-1", data));
    assert.equal(sha1(data).toHex(), expected.toHex(), `length ${length}`);
  }
});

Deno.test("sha1 agrees with crypto.subtle on random inputs (property)", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.uint8Array({ maxLength: 2000 }),
      async (data) => {
        const expected = new Uint8Array(
          await crypto.subtle.digest("SHA-1", data),
        );
        assert.equal(sha1(data).toHex(), expected.toHex());
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("sha1 does not modify its input and returns a fresh digest", () => {
  const data = encode("dGhlIHNhbXBsZSBub25jZQ==");
  const copy = data.slice();
  const first = sha1(data);
  const second = sha1(data);
  assert.deepEqual(data, copy);
  assert.notEqual(first, second);
  assert.deepEqual(first, second);
});

Deno.test("sha1Base64 agrees with crypto.subtle on texts of every length to 200, ASCII or not", async () => {
  // Up to 119 ASCII characters are hashed in kept buffers (one block to 55,
  // two beyond); longer or non-ASCII texts take the allocating path.
  for (let length = 0; length <= 200; length++) {
    const ascii = Array.from(
      { length },
      (_, i) => String.fromCharCode(0x21 + (i * 7 + length) % 94),
    ).join("");
    for (const text of [ascii, `é${ascii}`]) {
      const expected = new Uint8Array(
        await crypto.subtle.digest("SHA-1", encode(text)),
      );
      assert.equal(sha1Base64(text), expected.toBase64(), `length ${length}`);
    }
  }
});

Deno.test("sha1Base64 gives the same answer again: its kept buffers leave nothing behind", () => {
  const long = "x".repeat(119);
  const first = sha1Base64(long);
  assert.equal(sha1Base64("abc"), "qZk+NkcGgWq6PiVxeFDCbJzQ2J0=");
  assert.equal(sha1Base64(long), first);
  assert.equal(sha1Base64(""), "2jmj7l5rSw0yVb/vlWAYkK/YBwk=");
});
