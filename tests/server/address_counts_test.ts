import assert from "node:assert/strict";
import { AddressCounts, addressKey } from "../../src/server/_address_counts.ts";

Deno.test("addressKey keeps an IPv4 address as it is", () => {
  for (const address of ["127.0.0.1", "192.0.2.7", "0.0.0.0"]) {
    assert.equal(addressKey(address), address);
  }
});

Deno.test("addressKey counts an IPv4-mapped IPv6 address as its IPv4 address", () => {
  const cases: [string, string][] = [
    ["::ffff:1.2.3.4", "1.2.3.4"],
    ["::FFFF:192.0.2.255", "192.0.2.255"],
    ["0:0:0:0:0:ffff:1.2.3.4", "1.2.3.4"],
    ["0000:0000:0000:0000:0000:FFFF:10.0.0.1", "10.0.0.1"],
  ];
  for (const [hostname, key] of cases) {
    assert.equal(addressKey(hostname), key, hostname);
  }
});

Deno.test("addressKey groups other IPv6 addresses by their /64 prefix, whichever way they are written", () => {
  const cases: [string, string][] = [
    ["2001:db8::1", "2001:db8:0:0::/64"],
    ["2001:db8::", "2001:db8:0:0::/64"],
    ["2001:0DB8:0000:0000:0000:0000:0000:0001", "2001:db8:0:0::/64"],
    ["2001:db8:0:0:ffff:1:2:3", "2001:db8:0:0::/64"],
    ["2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"],
    ["2001:db8:1:2::", "2001:db8:1:2::/64"],
    ["2001:db8:1::2:3", "2001:db8:1:0::/64"],
    ["1:2:3:4:5::", "1:2:3:4::/64"],
    ["::2:3:4:5:6:7:8", "0:2:3:4::/64"],
    ["::", "0:0:0:0::/64"],
    ["::1", "0:0:0:0::/64"],
    ["fe80::1%eth0", "fe80:0:0:0::/64"],
    // NAT64 (RFC 6052): the IPv4 address sits in the host half.
    ["64:ff9b::192.0.2.1", "64:ff9b:0:0::/64"],
    ["1:2::4:5:6:192.0.2.1", "1:2:0:4::/64"],
  ];
  for (const [hostname, key] of cases) {
    assert.equal(addressKey(hostname), key, hostname);
  }
  // One host's addresses share a key; the next /64 does not.
  assert.equal(addressKey("2001:db8::a"), addressKey("2001:db8::b"));
  assert.notEqual(addressKey("2001:db8::a"), addressKey("2001:db8:0:1::a"));
});

Deno.test("AddressCounts counts up to the limit per address and refuses beyond it without counting", () => {
  const counts = new AddressCounts(2);
  const a = counts.acquire("127.0.0.1");
  const b = counts.acquire("::ffff:127.0.0.1");
  assert.equal(a, "127.0.0.1");
  assert.equal(b, "127.0.0.1");
  assert.equal(counts.acquire("127.0.0.1"), undefined);
  assert.equal(counts.count("127.0.0.1"), 2);
  // Another address has its own count.
  assert.equal(counts.acquire("127.0.0.2"), "127.0.0.2");
  // One host's IPv6 addresses share one.
  assert.ok(counts.acquire("2001:db8::1") !== undefined);
  assert.ok(counts.acquire("2001:db8::2") !== undefined);
  assert.equal(counts.acquire("2001:db8::3"), undefined);
  counts.release(a!);
  assert.equal(counts.acquire("127.0.0.1"), "127.0.0.1");
});

Deno.test("AddressCounts forgets an address when its last connection ends", () => {
  const counts = new AddressCounts(3);
  for (let i = 0; i < 100; i++) {
    const key = counts.acquire(`10.0.0.${i}`)!;
    assert.equal(counts.size, 1);
    counts.release(key);
    assert.equal(counts.size, 0);
  }
  const keys = [counts.acquire("::1")!, counts.acquire("::2")!];
  counts.release(keys[0]);
  assert.equal(counts.size, 1);
  assert.equal(counts.count("::1"), 1);
  counts.release(keys[1]);
  assert.equal(counts.size, 0);
  // A release too many does not go below zero or bring the key back.
  counts.release(keys[1]);
  assert.equal(counts.size, 0);
});
