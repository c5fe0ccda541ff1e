/**
 * Where the examples listen: `--hostname`, checked, and the URL to print.
 *
 * There is no HOSTNAME environment variable beside PORT: containers and some
 * shells export HOSTNAME as the machine's name, which would quietly move the
 * server off 0.0.0.0.
 *
 * @module
 */

/** Says what is wrong and exits with 2. */
function fail(message: string): never {
  console.error(message);
  Deno.exit(2);
}

/**
 * The port: `--port`'s value (`flag`), else the PORT environment variable,
 * else 8765, an integer from 0 to 65535; a bad one is reported by the name
 * it came from.
 *
 * @param flag The value of `--port`, if given.
 * @param usage Reports a bad value; by default printed, then exit code 2.
 */
export function portFrom(
  flag: string | undefined,
  usage: (message: string) => never = fail,
): number {
  const env = flag === undefined ? Deno.env.get("PORT") : undefined;
  const text = flag ?? env ?? "8765";
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65535) {
    usage(
      `${
        env === undefined ? "--port" : "PORT"
      } must be an integer from 0 to 65535, got ${JSON.stringify(text)}`,
    );
  }
  return Number(text);
}

/**
 * Checks the value of `--hostname` (`undefined`: given without one).
 *
 * @param text The value given.
 * @param usage Reports a bad value; by default printed, then exit code 2.
 * @returns The hostname, an IP address or host name.
 */
export function checkHostname(
  text: string | undefined,
  usage: (message: string) => never = fail,
): string {
  if (
    text === undefined || !/^[\w.:-]+$/.test(text) ||
    URL.parse(`ws://${host(text)}/`) === null
  ) {
    usage(
      `--hostname must be an IP address or host name, such as 127.0.0.1 or ::, got ${
        JSON.stringify(text)
      }`,
    );
  }
  return text;
}

/**
 * Calls `start`, which starts a server: one that cannot listen (its port in
 * use, a host name that does not resolve) is a message and exit code 1, not
 * a stack trace.
 */
export function listenOrExit<T>(start: () => T): T {
  try {
    return start();
  } catch (error) {
    const hint = error instanceof Deno.errors.AddrInUse
      ? ": stop what uses it, or pick another --port"
      : "";
    console.error(`${(error as Error).message}${hint}`);
    Deno.exit(1);
  }
}

/**
 * The URL of a server listening at `addr`, to print: `localhost` and
 * "(all interfaces)" when it listens on every interface.
 */
export function listeningAt(
  scheme: string,
  { hostname, port }: Deno.NetAddr,
  path = "",
): string {
  return hostname === "0.0.0.0" || hostname === "::"
    ? `${scheme}://localhost:${port}${path} (all interfaces)`
    : `${scheme}://${host(hostname)}:${port}${path}`;
}

/** The host part of a URL: an IPv6 address goes in brackets. */
function host(hostname: string): string {
  return hostname.includes(":") ? `[${hostname}]` : hostname;
}
