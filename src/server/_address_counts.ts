/**
 * The key a client address is counted under for `maxConnectionsPerAddress`:
 * an IPv4 address as it is; an IPv4-mapped IPv6 address (`::ffff:1.2.3.4`)
 * as its IPv4 address; another IPv6 address as its /64 prefix, written
 * `a:b:c:d::/64` (lower-case hex, no leading zeros), since one host usually
 * gets a whole /64. A zone (`%eth0`) is ignored. It takes addresses as
 * `remoteAddr.hostname` gives them (valid, in any of the usual spellings).
 *
 * @param hostname `remoteAddr.hostname` of a TCP connection.
 * @returns The key.
 *
 * @example Usage
 * ```ts
 * import { addressKey } from "./_address_counts.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(addressKey("192.0.2.7"), "192.0.2.7");
 * assert.equal(addressKey("::ffff:192.0.2.7"), "192.0.2.7");
 * assert.equal(addressKey("2001:db8::1"), "2001:db8:0:0::/64");
 * assert.equal(addressKey("2001:db8:0:0:ffff::2"), "2001:db8:0:0::/64");
 * ```
 */
export function addressKey(hostname: string): string {
  if (!hostname.includes(":")) return hostname;
  const address = hostname.split("%")[0].toLowerCase();
  const mapped = MAPPED.exec(address);
  if (mapped !== null) return mapped[1];
  const [head, tail] = address.split("::");
  const front = head === "" ? [] : head.split(":");
  const back = tail === undefined || tail === "" ? [] : tail.split(":");
  // "::" stands for the zero groups missing; a dotted IPv4 part is two.
  const missing = tail === undefined ? 0 : 8 - width(front) - width(back);
  const groups = [...front, ...Array(missing).fill("0"), ...back];
  return `${groups.slice(0, 4).map(hexGroup).join(":")}::/64`;
}

// ::ffff:a.b.c.d, also written out in full with zero groups.
const MAPPED = /^(?:(?:0{1,4}:){5}|::(?:0{1,4}:)?)ffff:(\d+\.\d+\.\d+\.\d+)$/;

function width(groups: string[]): number {
  return groups.length + (groups.at(-1)?.includes(".") ? 1 : 0);
}

function hexGroup(group: string): string {
  return Number.parseInt(group, 16).toString(16);
}

/**
 * Counts transport connections per client address ({@linkcode addressKey})
 * against a limit. An address with no connection left is forgotten, so the
 * map holds only the addresses connected now.
 *
 * @example Usage
 * ```ts
 * import { AddressCounts } from "./_address_counts.ts";
 * import assert from "node:assert/strict";
 *
 * const counts = new AddressCounts(1);
 * const key = counts.acquire("192.0.2.7");
 * assert.equal(key, "192.0.2.7");
 * assert.equal(counts.acquire("::ffff:192.0.2.7"), undefined); // at its limit
 * counts.release(key!);
 * assert.equal(counts.size, 0);
 * ```
 */
export class AddressCounts {
  readonly #limit: number;
  readonly #counts = new Map<string, number>();

  /**
   * Creates an empty count.
   *
   * @param limit The most connections per address.
   */
  constructor(limit: number) {
    this.#limit = limit;
  }

  /** How many addresses have connections now. */
  get size(): number {
    return this.#counts.size;
  }

  /**
   * Counts one more connection from `hostname`, unless its address is at
   * the limit.
   *
   * @param hostname `remoteAddr.hostname` of the connection.
   * @returns The key to {@linkcode AddressCounts.prototype.release} when
   * the connection ends, or `undefined` when the address is at its limit
   * (nothing was counted).
   */
  acquire(hostname: string): string | undefined {
    const key = addressKey(hostname);
    const count = this.#counts.get(key) ?? 0;
    if (count >= this.#limit) return undefined;
    this.#counts.set(key, count + 1);
    return key;
  }

  /**
   * Counts one connection fewer for `key`; call it once per
   * {@linkcode AddressCounts.prototype.acquire} that returned a key.
   *
   * @param key What `acquire()` returned.
   */
  release(key: string): void {
    const count = this.#counts.get(key);
    if (count === undefined) return;
    if (count <= 1) this.#counts.delete(key);
    else this.#counts.set(key, count - 1);
  }

  /**
   * How many connections `hostname`'s address has now.
   *
   * @param hostname An address, in any form `acquire()` takes.
   * @returns The count.
   */
  count(hostname: string): number {
    return this.#counts.get(addressKey(hostname)) ?? 0;
  }
}
