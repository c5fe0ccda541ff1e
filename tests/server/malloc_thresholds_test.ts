import assert from "node:assert/strict";

// A fresh copy of the module each time: its once-per-process flag is what
// these tests look at, and other tests in this process may have set it.
async function freshModule(tag: string) {
  return await import(`../../src/_malloc_thresholds.ts?${tag}`);
}

Deno.test("raiseMallocThresholds frees one buffer of just under 32 MiB, once per process", async () => {
  const { raiseMallocThresholds } = await freshModule("once");
  const sizes: number[] = [];
  let freed: ArrayBuffer | undefined;
  const allocate = (size: number) => {
    sizes.push(size);
    return freed = new ArrayBuffer(size);
  };
  assert.equal(raiseMallocThresholds(allocate), true);
  assert.equal(raiseMallocThresholds(allocate), false);
  assert.equal(sizes.length, 1);
  // glibc moves its thresholds for a mapped chunk of at most 32 MiB, header
  // and page rounding included.
  assert.ok(sizes[0] > 31 * 2 ** 20 && sizes[0] <= 32 * 2 ** 20 - 8192);
  assert.equal(freed?.detached, true);
});

Deno.test("raiseMallocThresholds changes nothing and does not throw when the memory is not there", async () => {
  const { raiseMallocThresholds } = await freshModule("out-of-memory");
  assert.equal(
    raiseMallocThresholds(() => {
      throw new RangeError("Array buffer allocation failed");
    }),
    true,
  );
  assert.equal(raiseMallocThresholds(), false);
});
