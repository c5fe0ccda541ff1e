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
