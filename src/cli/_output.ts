/**
 * What the subcommands print, and how they decide an exit code from the way
 * a connection ended.
 *
 * @module
 */
import type { CloseInfo } from "../close_info.ts";
import { quoted } from "../protocol/_describe.ts";
import { EXIT_CODE, type ExitCode } from "./exit_code.ts";

const encoder = new TextEncoder();

/** Writes `text` to stdout as it is (no newline), all of it. */
export function writeStdout(text: string): void {
  const bytes = encoder.encode(text);
  for (let written = 0; written < bytes.length;) {
    written += Deno.stdout.writeSync(bytes.subarray(written));
  }
}

/** Writes `text` to stderr as it is (no newline), all of it. */
export function writeStderr(text: string): void {
  const bytes = encoder.encode(text);
  for (let written = 0; written < bytes.length;) {
    written += Deno.stderr.writeSync(bytes.subarray(written));
  }
}

/** One line on stdout. */
export function printLine(line: string): void {
  writeStdout(`${line}\n`);
}

/** One line on stderr. */
export function printError(line: string): void {
  writeStderr(`${line}\n`);
}

const HEX_PREVIEW = 32;

/** `[binary, 5 bytes] 68 65 6c 6c 6f`: a length and the first 32 bytes in hex. */
export function describeBinary(data: Uint8Array): string {
  const preview = Array.from(
    data.subarray(0, HEX_PREVIEW),
    (byte) => byte.toString(16).padStart(2, "0"),
  ).join(" ");
  const more = data.length > HEX_PREVIEW ? " …" : "";
  return `[binary, ${data.length} byte${data.length === 1 ? "" : "s"}]${
    preview ? ` ${preview}` : ""
  }${more}`;
}

const CLOSE_NAMES: Record<number, string> = {
  1000: "normal closure",
  1001: "going away",
  1002: "protocol error",
  1003: "unsupported data",
  1005: "no status code",
  1006: "abnormal closure, no close frame",
  1007: "invalid payload",
  1008: "policy violation",
  1009: "message too big",
  1010: "mandatory extension",
  1011: "internal error",
  1012: "service restart",
  1013: "try again later",
};

// Control characters (a line feed would start a forged log line, an escape
// a terminal command), and invisible format characters such as bidi overrides.
const UNPRINTABLE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u;

/**
 * A string from a peer (a close reason) fit for one line of a terminal or a
 * log: as it is when every character prints, else `quoted()` (`"bye\nopen
 * ..."`); one that starts with a quote is quoted too, so that it cannot pass
 * for an escaped one.
 */
export function printable(text: string): string {
  return UNPRINTABLE.test(text) || text.startsWith('"') ? quoted(text) : text;
}

/**
 * `1000 (normal closure)`, with the reason when there is one (through
 * {@linkcode printable}).
 */
export function describeClose(info: CloseInfo): string {
  const name = CLOSE_NAMES[info.code];
  return `${info.code}${name ? ` (${name})` : ""}${
    info.reason ? `: ${printable(info.reason)}` : ""
  }`;
}

/**
 * Exit code 0 for a clean close with 1000, 1001 or 1005; 1 for anything
 * else (an error code, an application code, no close handshake).
 */
export function exitCodeFor(info: CloseInfo): ExitCode {
  return info.wasClean && [1000, 1001, 1005].includes(info.code)
    ? EXIT_CODE.Ok
    : EXIT_CODE.Failure;
}
