import assert from "node:assert/strict";
import { parseHttpDate } from "../../src/server/_http_date.ts";

const NOV_6_1994 = Date.UTC(1994, 10, 6, 8, 49, 37);

Deno.test("parseHttpDate reads the three formats RFC 9110 §5.6.7 requires recipients to accept", () => {
  assert.equal(parseHttpDate("Sun, 06 Nov 1994 08:49:37 GMT"), NOV_6_1994);
  assert.equal(parseHttpDate("Sunday, 06-Nov-94 08:49:37 GMT"), NOV_6_1994);
  assert.equal(parseHttpDate("Sun Nov  6 08:49:37 1994"), NOV_6_1994);
  assert.equal(
    parseHttpDate("Thu, 29 Feb 2024 23:59:59 GMT"),
    Date.UTC(2024, 1, 29, 23, 59, 59),
  );
});

Deno.test("parseHttpDate puts a two-digit year more than 50 years ahead in the past century", () => {
  const now = Date.UTC(2026, 11, 5);
  assert.equal(
    parseHttpDate("Monday, 01-Jan-76 00:00:00 GMT", now),
    Date.UTC(2076, 0, 1),
  );
  assert.equal(
    parseHttpDate("Thursday, 01-Jan-77 00:00:00 GMT", now),
    Date.UTC(1977, 0, 1),
  );
  // By the date, not the year: 31 Dec 2076 is more than 50 years ahead.
  assert.equal(
    parseHttpDate("Friday, 31-Dec-76 00:00:00 GMT", now),
    Date.UTC(1976, 11, 31),
  );
  // Near a century's end, a small year is the next century's.
  assert.equal(
    parseHttpDate("Saturday, 01-Jan-01 00:00:00 GMT", Date.UTC(2099, 5, 1)),
    Date.UTC(2101, 0, 1),
  );
});

Deno.test("parseHttpDate refuses what Date.parse would guess at", () => {
  for (
    const value of [
      "2026",
      "2026-12-05",
      "2026-12-05T10:00:00Z",
      "Sat, 05 Dec 2026 10:00:00 +0000",
      "Sat, 05 Dec 2026 10:00:00 UTC",
      "Sat, 5 Dec 2026 10:00:00 GMT",
      "sat, 05 dec 2026 10:00:00 GMT",
      " Sat, 05 Dec 2026 10:00:00 GMT",
      "Sat, 05 Dec 2026 10:00:00 GMT, Sun, 06 Dec 2026 10:00:00 GMT",
      "Sat, 31 Feb 2026 10:00:00 GMT",
      "Sat, 00 Dec 2026 10:00:00 GMT",
      "Sat, 05 Dec 2026 24:00:00 GMT",
      "Sat, 05 Dec 2026 10:60:00 GMT",
      "Saturday, 05-Dec-2026 10:00:00 GMT",
      "Sat Dec 5 10:00:00 2026",
      "not a date",
      "",
    ]
  ) {
    assert.equal(parseHttpDate(value), null, value);
  }
});
