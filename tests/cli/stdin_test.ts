import assert from "node:assert/strict";
import { NotUtf8Error, readLines } from "../../src/cli/_stdin.ts";
import { DEADLINE, deadline } from "./_helpers.ts";

const encoder = new TextEncoder();

async function lines(
  chunks: (string | number[])[],
  fatal = false,
): Promise<string[]> {
  const stream = ReadableStream.from(
    chunks.map((chunk) =>
      typeof chunk === "string" ? encoder.encode(chunk) : new Uint8Array(chunk)
    ),
  );
  return await Array.fromAsync(readLines(stream, { fatal }));
}

Deno.test("readLines splits on \\n and \\r\\n across chunks, keeps a last line without a newline, and drops a byte order mark at the start only", async () => {
  assert.deepEqual(
    await lines(["\uFEFFa\r", "\nb", "c\n\n\uFEFFd\r\n", "e"]),
    ["a", "bc", "", "\uFEFFd", "e"],
  );
  // A character split between chunks.
  assert.deepEqual(await lines([[0xc3], [0xa9, 0x0a]]), ["é"]);
});

Deno.test("readLines replaces invalid UTF-8, or with fatal throws NotUtf8Error naming the line, after yielding the lines before it", async () => {
  assert.deepEqual(await lines(["ok\n", [0xff, 0x0a]]), ["ok", "\uFFFD"]);
  const seen: string[] = [];
  const stream = ReadableStream.from([
    new Uint8Array([...encoder.encode("ok\n"), 0xff, 0xfe, 0x0a]),
  ]);
  await assert.rejects(
    async () => {
      for await (const line of readLines(stream, { fatal: true })) {
        seen.push(line);
      }
    },
    (error) => {
      assert.ok(error instanceof NotUtf8Error);
      assert.equal(error.line, 2);
      assert.equal(error.message, "line 2 is not UTF-8 text");
      return true;
    },
  );
  assert.deepEqual(seen, ["ok"]);
});

Deno.test("readLines reads a 100 MiB line in 64 KiB chunks without searching it again for each chunk (that took about a minute)", async () => {
  const SIZE = 100 * 1024 * 1024;
  const chunk = new Uint8Array(65536).fill(0x71);
  let sent = 0;
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (sent === SIZE) return controller.close();
      // Now and then a turn for timers (the deadline), as real input gives.
      if (sent % (4 * 1024 * 1024) === 0) {
        await new Promise((resolve) => setTimeout(resolve, 0));
      }
      controller.enqueue(chunk.slice());
      sent += chunk.length;
    },
  });
  const read = deadline(
    Array.fromAsync(readLines(stream)),
    DEADLINE,
    "the line",
  );
  const [line, ...rest] = await read;
  assert.equal(line.length, SIZE);
  assert.deepEqual(rest, []);
});
