import assert from "node:assert/strict";
import { applyMask } from "./_core.ts";
import {
  assertBytes,
  MASK_KEY,
  naiveMask,
  pattern,
  prng,
  utf8,
} from "./_helpers.ts";
import { createSimdXor, SIMD_BLOCK } from "../../src/protocol/_simd_xor.ts";

Deno.test('applyMask masks the RFC 6455 §5.7 "Hello" with key 37 fa 21 3d (RFC 6455 §5.3)', () => {
  const data = utf8("Hello");
  applyMask(data, MASK_KEY);
  assert.deepEqual(data, Uint8Array.of(0x7f, 0x9f, 0x4d, 0x51, 0x58));
  applyMask(data, MASK_KEY);
  assert.deepEqual(data, utf8("Hello"));
});

Deno.test("applyMask equals a naive XOR at every length, alignment and key offset (RFC 6455 §5.3)", () => {
  const random = prng(42);
  const key = Uint8Array.of(0x9a, 0x01, 0xf3, 0x5c);
  const backing = new Uint8Array(256 + 16);
  for (let length = 0; length <= 70; length++) {
    for (let align = 0; align < 8; align++) {
      for (let offset = 0; offset < 8; offset++) {
        for (let i = 0; i < backing.length; i++) {
          backing[i] = Math.floor(random() * 256);
        }
        const before = backing.slice();
        const data = backing.subarray(align, align + length);
        const expected = naiveMask(data, key, offset);
        applyMask(data, key, offset);
        assert.deepEqual(data, expected, `${length} ${align} ${offset}`);
        // Bytes around the view are untouched.
        assert.deepEqual(
          backing.subarray(0, align),
          before.subarray(0, align),
        );
        assert.deepEqual(
          backing.subarray(align + length),
          before.subarray(align + length),
        );
      }
    }
  }
});

Deno.test("applyMask equals a naive XOR on large unaligned buffers (RFC 6455 §5.3)", () => {
  for (
    const [length, align, offset] of [[65537, 1, 3], [100_003, 3, 2], [
      4096,
      2,
      1,
    ]]
  ) {
    const backing = pattern(length + align, 5);
    const data = backing.subarray(align);
    const expected = naiveMask(data, MASK_KEY, offset);
    applyMask(data, MASK_KEY, offset);
    assertBytes(data, expected, `${length} ${align} ${offset}`);
  }
});

Deno.test("applyMask over consecutive pieces equals masking the whole payload (RFC 6455 §5.3)", () => {
  const payload = pattern(203, 77);
  const expected = naiveMask(payload, MASK_KEY);
  for (const cuts of [[1, 2, 3], [5, 64, 65, 130], [7], [0, 0, 203]]) {
    const data = payload.slice();
    let from = 0;
    for (const to of [...cuts, data.length]) {
      applyMask(data.subarray(from, to), MASK_KEY, from);
      from = to;
    }
    assert.deepEqual(data, expected, cuts.join());
  }
});

Deno.test("applyMask keeps the key phase for offsets beyond 2^32 (RFC 6455 §5.3)", () => {
  for (const offset of [2 ** 32, 2 ** 32 + 1, 2 ** 40 + 3, 2 ** 50 + 2]) {
    const data = pattern(40);
    applyMask(data, MASK_KEY, offset);
    assert.deepEqual(data, naiveMask(pattern(40), MASK_KEY, offset % 4));
  }
});

Deno.test("applyMask leaves a zero key's data unchanged and works on empty data (RFC 6455 §5.3)", () => {
  const data = pattern(33);
  applyMask(data, new Uint8Array(4));
  assert.deepEqual(data, pattern(33));
  const empty = new Uint8Array(0);
  applyMask(empty, MASK_KEY, 3);
  assert.equal(empty.length, 0);
});

Deno.test("applyMask equals a naive XOR around the SIMD threshold and block edges, leaving neighbours alone (RFC 6455 §5.3)", () => {
  const lengths = [
    1023,
    1024,
    1025,
    1087,
    1088,
    4095,
    65535,
    65536,
    65600,
    131072 + 67,
  ];
  for (const length of lengths) {
    for (const [align, offset] of [[0, 0], [1, 1], [2, 3], [3, 2], [5, 7]]) {
      const backing = randomBytes(length + align + 8, length + offset);
      const before = backing.slice();
      const data = backing.subarray(align, align + length);
      const expected = naiveMask(data, MASK_KEY, offset);
      applyMask(data, MASK_KEY, offset);
      assertBytes(data, expected, `${length} ${align} ${offset}`);
      assertBytes(backing.subarray(0, align), before.subarray(0, align));
      assertBytes(
        backing.subarray(align + length),
        before.subarray(align + length),
      );
    }
  }
});

Deno.test("the WebAssembly SIMD kernel loads here and XORs 64-byte blocks with a little-endian word", () => {
  const xor = createSimdXor();
  assert.ok(
    xor,
    "WebAssembly SIMD should be available on Deno's x86-64 and arm64 builds",
  );
  const block = randomBytes(SIMD_BLOCK, 9);
  const expected = naiveMask(block, Uint8Array.of(0x78, 0x56, 0x34, 0x12));
  xor(block, 0x12345678);
  assertBytes(block, expected);
  const small = pattern(64, 3);
  xor(small, 0);
  assert.deepEqual(small, pattern(64, 3));
});

function randomBytes(length: number, seed: number): Uint8Array<ArrayBuffer> {
  const random = prng(seed);
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = Math.floor(random() * 256);
  return out;
}
