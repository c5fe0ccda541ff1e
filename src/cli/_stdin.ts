/**
 * Reading standard input: line by line for text messages, whole for a
 * binary one.
 *
 * @module
 */

/**
 * Yields the lines of a byte stream as they arrive, without their line
 * endings (`\n` or `\r\n`); a last line without a newline is yielded too.
 */
export async function* readLines(
  readable: ReadableStream<Uint8Array>,
): AsyncGenerator<string, void, undefined> {
  let pending = "";
  for await (const text of readable.pipeThrough(new TextDecoderStream())) {
    pending += text;
    let newline: number;
    while ((newline = pending.indexOf("\n")) !== -1) {
      yield pending.slice(0, newline).replace(/\r$/, "");
      pending = pending.slice(newline + 1);
    }
  }
  if (pending !== "") yield pending.replace(/\r$/, "");
}

/** Reads a byte stream to its end. */
export async function readAll(
  readable: ReadableStream<Uint8Array>,
): Promise<Uint8Array<ArrayBuffer>> {
  return new Uint8Array(await new Response(readable).arrayBuffer());
}
