/**
 * HTTP-date parsing (RFC 9110 §5.6.7), strict where `Date.parse` guesses.
 *
 * @module
 */

const MONTHS = "Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec";
const TIME = "(\\d{2}):(\\d{2}):(\\d{2})";
// Sun, 06 Nov 1994 08:49:37 GMT
const IMF_FIXDATE = new RegExp(
  `^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\\d{2}) (${MONTHS}) (\\d{4}) ${TIME} GMT$`,
);
// Sunday, 06-Nov-94 08:49:37 GMT
const RFC850_DATE = new RegExp(
  `^(?:Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day, (\\d{2})-(${MONTHS})-(\\d{2}) ${TIME} GMT$`,
);
// Sun Nov  6 08:49:37 1994
const ASCTIME_DATE = new RegExp(
  `^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (${MONTHS}) ([ \\d]\\d) ${TIME} (\\d{4})$`,
);

/**
 * The time an HTTP-date stands for, in milliseconds since the epoch, or
 * `null` when `value` is not one. All three formats are accepted, as
 * RFC 9110 §5.6.7 requires of recipients; a two-digit year is taken in the
 * century that puts the date within 50 years of `now` (more than 50 years
 * ahead means the past century, as §5.6.7 says).
 *
 * @param value A field value such as `If-Modified-Since`'s.
 * @param now The current time, for two-digit years.
 * @returns The time, or `null`.
 */
export function parseHttpDate(
  value: string,
  now: number = Date.now(),
): number | null {
  let day: string, month: string, year: number;
  let time: string[];
  let match = IMF_FIXDATE.exec(value);
  if (match !== null) {
    [, day, month] = match;
    year = Number(match[3]);
    time = match.slice(4);
  } else if ((match = RFC850_DATE.exec(value)) !== null) {
    [, day, month] = match;
    // The century that puts the date within 50 years of now, either way.
    year = Math.floor(new Date(now).getUTCFullYear() / 100) * 100 +
      Number(match[3]);
    time = match.slice(4);
    const date = toTime(year, month, day, time);
    if (date === null) return null;
    const fifty = Date.UTC(2050, 0, 1) - Date.UTC(2000, 0, 1);
    if (date > now + fifty) year -= 100;
    else if (date <= now - fifty) year += 100;
  } else if ((match = ASCTIME_DATE.exec(value)) !== null) {
    [, month, day] = match;
    year = Number(match[6]);
    time = match.slice(3, 6);
  } else return null;
  return toTime(year, month, day, time);
}

function toTime(
  year: number,
  month: string,
  day: string,
  time: string[],
): number | null {
  const [hours, minutes, seconds] = time.map(Number);
  if (hours > 23 || minutes > 59 || seconds > 60) return null;
  const date = new Date(0);
  date.setUTCFullYear(year, MONTHS.indexOf(month) / 4, Number(day));
  // 31 Feb and the like roll over into the next month: not a date.
  if (date.getUTCDate() !== Number(day)) return null;
  return date.setUTCHours(hours, minutes, seconds);
}
