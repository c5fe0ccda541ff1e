/**
 * A `Headers` holding `pairs` (already-validated name/value pairs), in order.
 * Appending one by one costs about half of `new Headers(pairs)`, which
 * converts the nested arrays through WebIDL sequences first.
 */
export function headersOf(pairs: readonly [string, string][]): Headers {
  const headers = new Headers();
  for (const [name, value] of pairs) headers.append(name, value);
  return headers;
}

/**
 * `text` without the spaces and tabs at its ends (a field value without its
 * optional whitespace, RFC 9110 §5.5), in one pass: a regular expression
 * such as `/^[ \t]+|[ \t]+$/g` retries its second branch at every space of
 * an inner run, a cost that grows as the square of the run (a 16 KiB head
 * of spaces took half a second).
 */
export function trimOws(text: string): string {
  let start = 0;
  let end = text.length;
  while (start < end && isOws(text.charCodeAt(start))) start++;
  while (end > start && isOws(text.charCodeAt(end - 1))) end--;
  return start === 0 && end === text.length ? text : text.slice(start, end);
}

function isOws(code: number): boolean {
  return code === 0x20 || code === 0x09;
}
