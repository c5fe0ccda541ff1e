/**
 * The key a client address is counted under for `maxConnectionsPerAddress`:
 * an IPv4 address as it is; an IPv4-mapped IPv6 address (`::ffff:1.2.3.4`)
 * as its IPv4 address; another IPv6 address as its /64 prefix, written
 * `a:b:c:d::/64` (lower-case hex, no leading zeros), since one host usually
 * gets a whole /64. A zone (`%eth0`) is ignored. Text that is not an IP
 * address is its own key.
 *
 * It scans the text once, with no intermediate arrays or substrings.
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
  return parseIpv6(hostname) ? ipv6Key() : hostname;
}

// The groups of the last address parsed (module scratch: no allocation).
const groups = new Uint16Array(8);

/** Parses `text` into `groups`; `false` when it is not an IPv6 address. */
function parseIpv6(text: string): boolean {
  let end = text.indexOf("%");
  if (end === -1) end = text.length;
  groups.fill(0);
  let count = 0; // groups written
  let gap = -1; // where "::" stood, in groups
  let i = 0;
  if (text.startsWith("::")) {
    gap = 0;
    i = 2;
    if (i === end) return true; // "::"
  }
  while (i < end) {
    // One group: up to 4 hex digits, or a dotted IPv4 address at the end.
    const start = i;
    let value = 0;
    while (i < end && i - start < 5) {
      const digit = hexDigit(text.charCodeAt(i));
      if (digit === -1) break;
      value = value * 16 + digit;
      i++;
    }
    if (i < end && text.charCodeAt(i) === 0x2e /* . */) {
      if (count > 6) return false;
      const v4 = parseIpv4(text, start, end);
      if (v4 === -1) return false;
      groups[count++] = v4 >>> 16;
      groups[count++] = v4 & 0xffff;
      i = end;
      break;
    }
    if (i === start || i - start > 4 || count === 8) return false;
    groups[count++] = value;
    if (i === end) break;
    if (text.charCodeAt(i) !== 0x3a /* : */) return false;
    i++;
    if (i < end && text.charCodeAt(i) === 0x3a) {
      if (gap !== -1) return false;
      gap = count;
      i++;
    } else if (i === end) return false; // a trailing single ":"
  }
  if (gap === -1) return count === 8;
  if (count === 8) return false; // "::" must stand for at least one group
  // Move the groups after "::" to the end.
  const tail = count - gap;
  for (let k = tail - 1; k >= 0; k--) {
    groups[8 - tail + k] = groups[gap + k];
    groups[gap + k] = 0;
  }
  return true;
}

/** The key of the address in `groups`. */
function ipv6Key(): string {
  if (
    groups[0] === 0 && groups[1] === 0 && groups[2] === 0 &&
    groups[3] === 0 && groups[4] === 0 && groups[5] === 0xffff
  ) {
    return `${groups[6] >>> 8}.${groups[6] & 0xff}.${groups[7] >>> 8}.${
      groups[7] & 0xff
    }`;
  }
  return `${groups[0].toString(16)}:${groups[1].toString(16)}:${
    groups[2].toString(16)
  }:${groups[3].toString(16)}::/64`;
}

/** A dotted IPv4 address in `text[start, end)` as a number, or -1. */
function parseIpv4(text: string, start: number, end: number): number {
  let result = 0;
  let parts = 0;
  let i = start;
  while (parts < 4) {
    const first = i;
    let octet = 0;
    while (i < end && i - first < 3) {
      const code = text.charCodeAt(i);
      if (code < 0x30 || code > 0x39) break;
      octet = octet * 10 + code - 0x30;
      i++;
    }
    if (i === first || octet > 255) return -1;
    // No leading zeros ("01" could be read as octal elsewhere).
    if (i - first > 1 && text.charCodeAt(first) === 0x30) return -1;
    result = result * 256 + octet;
    parts++;
    if (parts < 4) {
      if (i === end || text.charCodeAt(i) !== 0x2e) return -1;
      i++;
    }
  }
  return i === end ? result : -1;
}

function hexDigit(code: number): number {
  if (code >= 0x30 && code <= 0x39) return code - 0x30;
  const lower = code | 0x20;
  if (lower >= 0x61 && lower <= 0x66) return lower - 0x61 + 10;
  return -1;
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
