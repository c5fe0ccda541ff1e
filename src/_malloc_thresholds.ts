/**
 * Large messages (64 KiB and up) are buffers that the C allocator hands out
 * and takes back all the time. glibc returns freed memory at the top of its
 * heap to the system once more than `trim_threshold` is free there (128 KiB
 * at first), and maps anything above `mmap_threshold` afresh; the next
 * buffers then fault their pages in again, zero-filled by the kernel. Both
 * thresholds rise by themselves when a mapped buffer is freed, up to 32 MiB
 * and 64 MiB, but only as large buffers come and go. Freeing one mapped
 * buffer of just under 32 MiB sets them there at once: measured on 64 KiB
 * echo, twice the messages a second and half the system time per message
 * (bench/README.md). The cost is that at least 64 MiB of freed memory stays
 * in the process instead of going back to the system between bursts, and
 * more when many buffers of up to 32 MiB (now from the heap, not their own
 * mappings) are freed out of order: an audit with 60 peers each holding 12
 * MiB of a message kept 167-299 MiB of RSS after they all left (README,
 * "Backpressure and large messages").
 *
 * Elsewhere (musl, macOS, Windows), or when a glibc malloc tunable is set
 * (`GLIBC_TUNABLES=glibc.malloc.trim_threshold=131072` keeps the defaults:
 * any such setting turns the adaptive thresholds off), this is one
 * allocation of untouched memory, freed at once.
 *
 * @module
 */

// Above 31.9 MiB the chunk (with its header, rounded to a page) would pass
// glibc's 32 MiB ceiling, and the thresholds would not move.
const SIZE = 32 * 1024 * 1024 - 64 * 1024;

let raised = false;

/**
 * Raises the C allocator's thresholds, once per process (see the module
 * documentation). Never throws: where the memory is not available, nothing
 * changes.
 *
 * @param allocate Makes the buffer (a seam for tests).
 * @returns Whether this call did it (`false` after the first call).
 *
 * @example Usage
 * ```ts
 * import { raiseMallocThresholds } from "./_malloc_thresholds.ts";
 *
 * raiseMallocThresholds(); // the first call in the process does it
 * ```
 */
export function raiseMallocThresholds(
  allocate: (size: number) => ArrayBuffer = (size) => new ArrayBuffer(size),
): boolean {
  if (raised) return false;
  raised = true;
  try {
    allocate(SIZE).transfer(0);
  } catch {
    // Out of memory (a small container): the allocator keeps its defaults.
  }
  return true;
}
