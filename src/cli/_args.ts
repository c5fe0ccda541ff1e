/**
 * Argument parsing shared by the subcommands: `node:util` parseArgs with
 * errors that name the command and say what to do, and parsers for ports,
 * sizes, durations and headers.
 *
 * @module
 */
import { parseArgs, type ParseArgsOptionsConfig } from "node:util";

/** A mistake on the command line: exit code 2, with a message for stderr. */
export class UsageError extends Error {
  /** The subcommand, for the hint (`duplex send --help`). */
  readonly command: string;

  /**
   * Creates the error.
   *
   * @param command The subcommand, or `""` for `duplex` itself.
   * @param message What is wrong, as a sentence fragment.
   */
  constructor(command: string, message: string) {
    super(message);
    this.name = "UsageError";
    this.command = command;
  }
}

/** Parses `args` for `command`, turning parseArgs errors into UsageErrors. */
export function parseCommandArgs<T extends ParseArgsOptionsConfig>(
  command: string,
  args: string[],
  options: T,
): ReturnType<typeof parseArgs<{ options: T; allowPositionals: true }>> {
  // "--port -1": parseArgs would take "-1" for an option and complain that
  // the value is missing; passed as the value, the option's own check says
  // what is wrong with it.
  const joined: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const option = args[i].startsWith("--") ? options[args[i].slice(2)] : null;
    if (option?.type === "string" && /^-\d/.test(args[i + 1] ?? "")) {
      joined.push(`${args[i]}=${args[++i]}`);
    } else joined.push(args[i]);
  }
  try {
    return parseArgs({
      args: joined,
      options,
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    // "--file -x": parseArgs explains on three lines.
    const ambiguous = /^Option '(--[^']+)' argument is ambiguous/
      .exec((error as Error).message)?.[1];
    const value = args[args.indexOf(ambiguous ?? "") + 1];
    if (ambiguous !== undefined && value !== undefined) {
      throw new UsageError(
        command,
        `${ambiguous} is missing its value (${
          JSON.stringify(value)
        } looks like an option); to pass a value that starts with "-", write ${ambiguous}=${value}`,
      );
    }
    const message = (error as Error).message
      // parseArgs's advice about "--" is not what most users need.
      .replace(/\. To specify a positional argument starting with.*$/s, "");
    throw new UsageError(command, message);
  }
}

/** A TCP port, 0 to 65535. */
export function parsePort(command: string, text: string): number {
  const port = Number(text);
  if (!/^\d+$/.test(text) || port > 65535) {
    throw new UsageError(
      command,
      `--port must be an integer from 0 to 65535 (0 picks a free port), got ${
        JSON.stringify(text)
      }`,
    );
  }
  return port;
}

/** A positive integer option such as `--connections 10`. */
export function parsePositiveInteger(
  command: string,
  flag: string,
  text: string,
): number {
  const value = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(value) || value <= 0) {
    throw new UsageError(
      command,
      `--${flag} must be a positive integer, got ${JSON.stringify(text)}`,
    );
  }
  return value;
}

const SIZE_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
};

/**
 * `text` as a number with an optional unit from `units` (`""` for none,
 * names in lower case; matched case-insensitively), times the unit's value:
 * `1.5K` is 1536. The arithmetic is exact for whole results (`1.1s` is 1100,
 * not 1100.0000000000002). NaN when `text` is not such a number. A minus
 * sign is kept and no range is checked: the caller or the API checks that.
 */
function amount(text: string, units: Record<string, number>): number {
  const match = /^(-?)(\d+)(?:\.(\d+))?\s*([a-z]*)$/i.exec(text.trim());
  if (match === null) return NaN;
  const [, sign, whole, fraction = "", unitName] = match;
  const unit = units[unitName.toLowerCase()];
  if (unit === undefined) return NaN;
  const value = Number(whole + fraction) * unit / 10 ** fraction.length;
  return sign === "-" ? -value : value;
}

/**
 * A byte size: `32`, `1K`, `64KiB`, `1.5M`. K, KB and KiB all mean 1024
 * bytes; M, MB and MiB 1024².
 */
export function parseSize(command: string, flag: string, text: string): number {
  const value = amount(text, SIZE_UNITS);
  if (Number.isFinite(value) && value >= 0 && !Number.isInteger(value)) {
    throw new UsageError(
      command,
      `--${flag} must be a whole number of bytes, got ${
        JSON.stringify(text)
      } (${value} bytes)`,
    );
  }
  if (!Number.isSafeInteger(value) || text.trim().startsWith("-")) {
    throw new UsageError(
      command,
      `--${flag} must be a size such as 32, 1K, 64KiB or 1M, got ${
        JSON.stringify(text)
      }`,
    );
  }
  return value;
}

const DURATION_UNITS: Record<string, number> = {
  "": 1000,
  ms: 1,
  s: 1000,
  m: 60_000,
  min: 60_000,
  h: 3_600_000,
};

/** A duration in milliseconds: `10` (seconds), `500ms`, `1.5s`, `2m`. */
export function parseDuration(
  command: string,
  flag: string,
  text: string,
): number {
  const value = amount(text, DURATION_UNITS);
  if (!(value > 0) || !Number.isFinite(value)) {
    throw new UsageError(
      command,
      `--${flag} must be a duration such as 10 (seconds), 10s, 500ms or 1m, got ${
        JSON.stringify(text)
      }`,
    );
  }
  return Math.round(value);
}

/**
 * `text` as a number with an optional unit from `units`, or `Infinity`,
 * for an option whose range the API checks (it may say `-1` is too small).
 * A usage error says the flag takes `expected` when `text` is no number.
 */
function numberForApi(
  command: string,
  flag: string,
  text: string,
  units: Record<string, number>,
  expected: string,
): number {
  const value = /^infinity$/i.test(text.trim())
    ? Infinity
    : amount(text, units);
  if (Number.isNaN(value)) {
    throw new UsageError(
      command,
      `--${flag} must be ${expected}, got ${JSON.stringify(text)}`,
    );
  }
  return value;
}

/**
 * A number of bytes for an option whose range the API checks (serve()'s
 * `maxPayload`, `maxBufferedBytes`): `100`, `64KiB`, `1M`, `Infinity` (for
 * options where it means no limit), or `-1` (for the API to refuse).
 */
export function parseBytes(
  command: string,
  flag: string,
  text: string,
): number {
  return numberForApi(
    command,
    flag,
    text,
    SIZE_UNITS,
    "a number of bytes such as 100, 64KiB or 1MiB",
  );
}

const MILLISECOND_UNITS: Record<string, number> = {
  ...DURATION_UNITS,
  "": 1,
};

/**
 * Milliseconds for an option whose range the API checks (serve()'s
 * timeouts): `500`, or with a unit `500ms`, `30s`, `5m`, `1h`.
 */
export function parseMilliseconds(
  command: string,
  flag: string,
  text: string,
): number {
  return numberForApi(
    command,
    flag,
    text,
    MILLISECOND_UNITS,
    "milliseconds such as 500, or a duration such as 30s or 5m",
  );
}

/**
 * A count for an option whose range the API checks: `10`, `1.5`, `-1`,
 * `Infinity` (for options where it means no limit).
 */
export function parseCount(
  command: string,
  flag: string,
  text: string,
): number {
  return numberForApi(command, flag, text, { "": 1 }, "a number such as 100");
}

/** `--header "Name: value"` (or `Name:value`) options into a Headers. */
export function parseHeaders(command: string, values: string[]): Headers {
  const headers = new Headers();
  for (const text of values) {
    const colon = text.indexOf(":");
    try {
      if (colon <= 0) throw new Error("no colon");
      headers.append(text.slice(0, colon).trim(), text.slice(colon + 1).trim());
    } catch {
      throw new UsageError(
        command,
        `--header must look like "Name: value", got ${JSON.stringify(text)}`,
      );
    }
  }
  return headers;
}

/**
 * The one URL argument of a client command, checked here so the mistake is
 * a usage error with a suggestion rather than a connection failure.
 */
export function parseUrl(command: string, positionals: string[]): URL {
  const text = positionals[0];
  if (text === undefined) {
    throw new UsageError(
      command,
      "missing the server URL (ws://... or wss://...)",
    );
  }
  let url: URL | undefined;
  try {
    url = new URL(text);
  } catch {
    url = undefined;
  }
  // As connect() does: http: means ws:, https: wss:.
  if (url?.protocol === "http:") url.protocol = "ws:";
  else if (url?.protocol === "https:") url.protocol = "wss:";
  if (url?.protocol === "ws:" || url?.protocol === "wss:") return url;
  let hint: string;
  if (/^[a-z][a-z0-9+.-]*:/i.test(text) && !/^[^:/]+:\d/.test(text)) {
    // It has a scheme already (a wrong one, or a ws: URL that does not
    // parse): prefixing another would not help.
    hint = "pass a URL such as ws://host:port/path or wss://host/path";
  } else hint = `did you mean ws://${text}?`;
  throw new UsageError(
    command,
    `${JSON.stringify(text)} is not a valid ws: or wss: URL; ${hint}`,
  );
}

/** Reads PEM files given with `--ca` (or `--cert`/`--key`). */
export async function readPemFiles(
  command: string,
  flag: string,
  paths: string[],
): Promise<string[]> {
  const pems: string[] = [];
  for (const path of paths) {
    let text: string;
    try {
      text = await Deno.readTextFile(path);
    } catch (error) {
      throw new UsageError(
        command,
        `cannot read --${flag} ${path}: ${(error as Error).message}`,
      );
    }
    const block = flag === "key"
      ? /-----BEGIN [A-Z ]*PRIVATE KEY-----/
      : /-----BEGIN CERTIFICATE-----/;
    if (!block.test(text)) {
      throw new UsageError(
        command,
        `--${flag} ${path} is not PEM: expected a "-----BEGIN ${
          flag === "key" ? "PRIVATE KEY" : "CERTIFICATE"
        }-----" block`,
      );
    }
    if (
      flag === "key" && /-----BEGIN ENCRYPTED|Proc-Type: 4,ENCRYPTED/.test(text)
    ) {
      throw new UsageError(
        command,
        `--key ${path} is encrypted, and Deno reads only unencrypted keys: decrypt it first (openssl pkey -in ${path} -out plain-key.pem)`,
      );
    }
    pems.push(text);
  }
  return pems;
}
