/**
 * A fixed-size latency histogram for the load generator: log-linear buckets
 * of microseconds (exact below 256 µs, then 128 buckets per power of two,
 * under 1% error), so a run of any length uses the same 25 KiB.
 *
 * @module
 */

const EXACT = 256;
const SUB_BUCKETS = 128;
const SUB_BITS = 7;
// Up to 2^31 µs (about 36 minutes); longer values land in the last bucket.
const MAX_EXPONENT = 30;
const BUCKETS = EXACT + (MAX_EXPONENT - SUB_BITS - 1 + 1) * SUB_BUCKETS;

function bucketOf(micros: number): number {
  if (micros < EXACT) return micros;
  const exponent = Math.min(MAX_EXPONENT, 31 - Math.clz32(micros));
  const sub = (micros >>> (exponent - SUB_BITS)) & (SUB_BUCKETS - 1);
  return Math.min(
    BUCKETS - 1,
    EXACT + (exponent - SUB_BITS - 1) * SUB_BUCKETS + sub,
  );
}

/** The middle of a bucket, in microseconds. */
function valueOf(bucket: number): number {
  if (bucket < EXACT) return bucket;
  const exponent = SUB_BITS + 1 + Math.floor((bucket - EXACT) / SUB_BUCKETS);
  const sub = (bucket - EXACT) % SUB_BUCKETS;
  const width = 2 ** (exponent - SUB_BITS);
  return (SUB_BUCKETS + sub) * width + width / 2;
}

/** Latencies in milliseconds; percentiles within 1%, max and mean exact. */
export class LatencyHistogram {
  readonly #counts = new Float64Array(BUCKETS);
  #count = 0;
  #sum = 0;
  #max = 0;

  /** Records one latency, in milliseconds. */
  record(ms: number): void {
    const micros = Math.min(2 ** 31 - 1, Math.max(0, Math.round(ms * 1000)));
    this.#counts[bucketOf(micros)]++;
    this.#count++;
    this.#sum += ms;
    if (ms > this.#max) this.#max = ms;
  }

  /** How many latencies were recorded. */
  get count(): number {
    return this.#count;
  }

  /** The largest latency, in milliseconds (0 when none). */
  get max(): number {
    return this.#max;
  }

  /** The mean latency, in milliseconds (0 when none). */
  get mean(): number {
    return this.#count === 0 ? 0 : this.#sum / this.#count;
  }

  /** The latency at or below which `p` percent of them fall (0 when none). */
  percentile(p: number): number {
    if (this.#count === 0) return 0;
    const target = Math.max(1, Math.ceil((p / 100) * this.#count));
    let seen = 0;
    for (let bucket = 0; bucket < BUCKETS; bucket++) {
      seen += this.#counts[bucket];
      if (seen >= target) return Math.min(this.#max, valueOf(bucket) / 1000);
    }
    return this.#max;
  }
}
