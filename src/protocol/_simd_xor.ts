// A WebAssembly SIMD kernel that XORs bytes with a repeated 32-bit word,
// 64 bytes per loop turn. Measured on x86-64 (Deno 2.9.6): about 16 GB/s for
// 64 KiB and more, copies in and out of its memory included, against about
// 6-7 GB/s for the 32-bit JavaScript loop in mask.ts. The module is assembled
// here byte by byte (no toolchain, no dependency); it is 147 bytes.

/** Bytes handed to the kernel per call: one WebAssembly page, its memory. */
export const SIMD_BLOCK = 64 * 1024;

const LOCAL_GET = 0x20, LOCAL_SET = 0x21, I32_CONST = 0x41;
const I32_ADD = 0x6a, I32_GE_U = 0x4f;
const BLOCK = 0x02, LOOP = 0x03, BR = 0x0c, BR_IF = 0x0d, END = 0x0b;
const EMPTY = 0x40, I32 = 0x7f, V128 = 0x7b;
const SIMD = 0xfd, V128_LOAD = 0x00, V128_STORE = 0x0b;
const I32X4_SPLAT = 0x11, V128_XOR = 0x51;

// xor(ptr, len, word): for each 16-byte lane block in [ptr, ptr + len),
// block ^= splat(word). `len` must be a multiple of 64.
// Params: 0 ptr, 1 len, 2 word; locals: 3 end, 4 splatted word.
// One instruction per row.
const body = [
  [0x02, 0x01, I32, 0x01, V128], // locals: 1 × i32, 1 × v128
  [LOCAL_GET, 2],
  [SIMD, I32X4_SPLAT],
  [LOCAL_SET, 4], // splat = i32x4.splat(word)
  [LOCAL_GET, 0],
  [LOCAL_GET, 1],
  [I32_ADD],
  [LOCAL_SET, 3], // end = ptr + len
  [BLOCK, EMPTY],
  [LOOP, EMPTY],
  [LOCAL_GET, 0],
  [LOCAL_GET, 3],
  [I32_GE_U],
  [BR_IF, 1], // if ptr >= end: leave the block
  ...[0, 16, 32, 48].flatMap((offset) => [
    [LOCAL_GET, 0], // store address
    [LOCAL_GET, 0],
    [SIMD, V128_LOAD, 0, offset],
    [LOCAL_GET, 4],
    [SIMD, V128_XOR],
    [SIMD, V128_STORE, 0, offset], // [ptr + offset] ^= splat
  ]),
  [LOCAL_GET, 0],
  [I32_CONST, 0xc0, 0x00], // 64, signed LEB128
  [I32_ADD],
  [LOCAL_SET, 0], // ptr += 64
  [BR, 0], // next turn
  [END], // loop
  [END], // block
  [END], // function
].flat();

// Sizes below are single LEB128 bytes: the body must stay under 126 bytes
// (the kernel test fails if the module stops loading).
const MODULE = new Uint8Array([
  ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00], // "\0asm", version 1
  ...[0x01, 0x07, 0x01, 0x60, 0x03, I32, I32, I32, 0x00], // type (i32 i32 i32)
  ...[0x03, 0x02, 0x01, 0x00], // one function of that type
  ...[0x05, 0x03, 0x01, 0x00, 0x01], // memory: one page
  ...[0x07, 0x09, 0x02, 0x01, 0x6d, 0x02, 0x00, 0x01, 0x78, 0x00, 0x00], // "m", "x"
  ...[0x0a, body.length + 2, 0x01, body.length, ...body], // code
]);

/**
 * XORs `block` (at most {@linkcode SIMD_BLOCK} bytes, a multiple of 64) in
 * place with `word` repeated, the word's bytes in little-endian order.
 */
export type SimdXor = (block: Uint8Array, word: number) => void;

/**
 * Instantiates the kernel, or returns `null` where WebAssembly or its SIMD
 * extension is not available.
 *
 * @returns The kernel, or `null`.
 */
export function createSimdXor(): SimdXor | null {
  let exports: WebAssembly.Exports;
  try {
    exports = new WebAssembly.Instance(new WebAssembly.Module(MODULE))
      .exports;
  } catch {
    return null;
  }
  const memory = new Uint8Array((exports.m as WebAssembly.Memory).buffer);
  const xor = exports.x as (ptr: number, length: number, word: number) => void;
  return (block, word) => {
    memory.set(block);
    xor(0, block.length, word);
    block.set(memory.subarray(0, block.length));
  };
}
