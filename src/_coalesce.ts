import { concat } from "./protocol/_bytes.ts";

// Runs of chunks smaller than this are joined into one write.
const COALESCE_LIMIT = 16 * 1024;

/**
 * Joins runs of small chunks into one buffer so they leave in one write;
 * large chunks are written as they are rather than copied again.
 */
export function coalesce(chunks: Uint8Array[]): Uint8Array[] {
  if (chunks.length === 1) return chunks;
  const writes: Uint8Array[] = [];
  let run: Uint8Array[] = [];
  const endRun = () => {
    if (run.length === 1) writes.push(run[0]);
    else if (run.length > 1) writes.push(concat(run));
    run = [];
  };
  for (const chunk of chunks) {
    if (chunk.length >= COALESCE_LIMIT) {
      endRun();
      writes.push(chunk);
    } else {
      run.push(chunk);
    }
  }
  endRun();
  return writes;
}
