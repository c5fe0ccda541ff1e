/**
 * Reading standard input: line by line for text messages, whole for a
 * binary one.
 *
 * @module
 */

/** A line of input that is not UTF-8 text, from {@linkcode readLines}. */
export class NotUtf8Error extends Error {
  /** The line's number, from 1. */
  readonly line: number;

  /**
   * Creates the error.
   *
   * @param line The line's number, from 1.
   */
  constructor(line: number) {
    super(`line ${line} is not UTF-8 text`);
    this.name = "NotUtf8Error";
    this.line = line;
  }
}

/** Options of {@linkcode readLines}. */
export interface ReadLinesOptions {
  /**
   * Throw a {@linkcode NotUtf8Error} for a line that is not UTF-8, instead
   * of replacing its invalid bytes with U+FFFD.
   * @default {false}
   */
  fatal?: boolean;
}

const NEWLINE = 0x0a;
const CARRIAGE_RETURN = 0x0d;

/**
 * Yields the lines of a byte stream as they arrive, without their line
 * endings (`\n` or `\r\n`); a last line without a newline is yielded too.
 * Each chunk is searched once, so a long line costs time in proportion to
 * its length.
 */
export async function* readLines(
  readable: ReadableStream<Uint8Array>,
  options: ReadLinesOptions = {},
): AsyncGenerator<string, void, undefined> {
  // ignoreBOM: a byte order mark is dropped at the start of the input only.
  const decoder = new TextDecoder("utf-8", {
    fatal: options.fatal ?? false,
    ignoreBOM: true,
  });
  let number = 0;
  const decode = (parts: Uint8Array[]): string => {
    let bytes = parts.length === 1 ? parts[0] : concat(parts);
    if (bytes.at(-1) === CARRIAGE_RETURN) bytes = bytes.subarray(0, -1);
    number++;
    let line: string;
    try {
      line = decoder.decode(bytes);
    } catch {
      throw new NotUtf8Error(number);
    }
    return number === 1 && line.startsWith("\uFEFF") ? line.slice(1) : line;
  };
  // The pieces of the line not ended yet.
  let pending: Uint8Array[] = [];
  for await (const chunk of readable) {
    let start = 0;
    let newline: number;
    while ((newline = chunk.indexOf(NEWLINE, start)) !== -1) {
      pending.push(chunk.subarray(start, newline));
      const line = decode(pending);
      pending = [];
      yield line;
      start = newline + 1;
    }
    if (start < chunk.length) pending.push(chunk.subarray(start));
  }
  if (pending.length > 0) yield decode(pending);
}

function concat(parts: Uint8Array[]): Uint8Array {
  const bytes = new Uint8Array(
    parts.reduce((total, part) => total + part.length, 0),
  );
  let offset = 0;
  for (const part of parts) {
    bytes.set(part, offset);
    offset += part.length;
  }
  return bytes;
}

/** Reads a byte stream to its end. */
export async function readAll(
  readable: ReadableStream<Uint8Array>,
): Promise<Uint8Array<ArrayBuffer>> {
  return new Uint8Array(await new Response(readable).arrayBuffer());
}
