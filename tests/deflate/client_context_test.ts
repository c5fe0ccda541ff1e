/**
 * The server letting clients compress with context takeover
 * (`perMessageDeflate: { clientNoContextTakeover: false }`, RFC 7692
 * §7.1.1.2, §7.2.2), on the wire: npm:ws and this project's `connect()` as
 * clients, each message counted in bytes through a relay and compared byte
 * for byte where the server's handler receives it. Context takeover shows
 * in bytes: a message sent again right after itself costs a few bytes with
 * it, as much as the first without.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  type ClientDeflateOptions,
  connect,
  type PerMessageDeflateOptions,
  type PerMessageDeflateParams,
  serve,
} from "../../mod.ts";
import {
  countingRelay,
  deadline,
  jsonUpdate as update,
} from "../client/_helpers.ts";
import {
  assertBytes,
  LOCAL,
  NpmClient,
  type Received,
} from "../server/_helpers.ts";
import { randomBytes, repetitiveBytes, wordText } from "./_helpers.ts";

// What each test sends after the identical pair: similar updates, messages
// longer than any window (so later ones refer back across message
// boundaries), incompressible bytes, and messages under the threshold,
// which go uncompressed and are no part of the window.
const MORE: Received[] = [
  ...Array.from({ length: 10 }, (_, i) => update(i + 2)),
  "short",
  wordText(40 * 1024, 1),
  repetitiveBytes(50 * 1024, 2),
  wordText(40 * 1024, 1),
  randomBytes(3000, 3),
  "short again",
  ...Array.from({ length: 10 }, (_, i) => update(i + 20)),
];

/** Bytes that crossed the relay from client to server for one message. */
interface Costs {
  first: number;
  second: number;
}

/** What a session saw: costs, the server's parameters and its answer. */
interface Session extends Costs {
  params: PerMessageDeflateParams | undefined;
  answer: string | null;
}

/** A client that sends a message and waits for the server's short reply. */
interface Sender extends AsyncDisposable {
  send(message: Received): Promise<void>;
  /** The `Sec-WebSocket-Extensions` the server answered. */
  answer: string | null;
}

/**
 * Serves with `settings`, connects a client through a counting relay with
 * `open`, sends `update(1)` twice then {@linkcode MORE}; checks that the
 * handler received every message byte-exact, and returns what the
 * identical pair cost from client to server.
 */
async function session(
  settings: PerMessageDeflateOptions,
  open: (url: string) => Promise<Sender>,
): Promise<Session> {
  const received: Received[] = [];
  let params: PerMessageDeflateParams | undefined;
  await using server = serve(
    { ...LOCAL, perMessageDeflate: settings },
    async (socket) => {
      params = socket.perMessageDeflate;
      for await (const message of socket) {
        received.push(message);
        // Short and uncompressed: the relay's count up stays the client's.
        await socket.send("ok", { compress: false });
      }
    },
  );
  await using relay = countingRelay(server.addr.port);
  const sent = [update(1), update(1), ...MORE];
  const costs: number[] = [];
  let answer: string | null;
  {
    await using client = await open(`ws://127.0.0.1:${relay.port}/`);
    answer = client.answer;
    for (const message of sent) {
      const before = relay.up;
      await client.send(message);
      costs.push(relay.up - before);
    }
  }
  assert.equal(received.length, sent.length);
  for (const [i, message] of sent.entries()) {
    if (typeof message === "string") {
      assert.ok(received[i] === message, `message ${i} arrived as sent`);
    } else assertBytes(received[i] as Uint8Array, message);
  }
  return { first: costs[0], second: costs[1], params, answer };
}

/** npm:ws as the client, with its `perMessageDeflate` option. */
function npmClient(perMessageDeflate: unknown) {
  return async (url: string): Promise<Sender> => {
    const client = await NpmClient.connectWith(url, [], { perMessageDeflate });
    return {
      answer: (client.upgradeHeaders["sec-websocket-extensions"] ??
        null) as string | null,
      async send(message) {
        client.send(message);
        assert.equal(await client.next("the server's reply"), "ok");
      },
      async [Symbol.asyncDispose]() {
        assert.equal(client.error, null);
        assert.equal((await client.close(1000)).code, 1000);
        await client[Symbol.asyncDispose]();
      },
    };
  };
}

/** This project's `connect()` as the client. */
function duplexClient(perMessageDeflate: ClientDeflateOptions | true = true) {
  return async (url: string): Promise<Sender> => {
    const socket = await connect(url, { perMessageDeflate });
    const replies = socket[Symbol.asyncIterator]();
    return {
      answer: socket.headers.get("sec-websocket-extensions"),
      async send(message) {
        await socket.send(message);
        const { value } = await deadline(replies.next(), 5_000, "the reply");
        assert.equal(value, "ok");
      },
      async [Symbol.asyncDispose]() {
        assert.equal((await socket.close()).code, 1000);
      },
    };
  };
}

/** Context taken over: the repeat costs under a quarter of the first. */
function assertTakenOver({ first, second }: Costs): void {
  assert.ok(
    second < first / 4,
    `the repeat took ${second} bytes, the first ${first}`,
  );
}

/** No context: the repeat costs what the first did. */
function assertAlone({ first, second }: Costs): void {
  assert.ok(
    second >= first * 0.9,
    `the repeat took ${second} bytes, the first ${first}`,
  );
}

Deno.test("serve({perMessageDeflate: {clientNoContextTakeover: false}}) lets npm:ws take over context: its repeated message costs a fraction, and every message arrives byte-exact (RFC 7692 §7.1.1.2, §7.2.2)", async () => {
  const result = await session(
    { clientNoContextTakeover: false },
    npmClient(true),
  );
  assert.equal(result.answer, "permessage-deflate; server_no_context_takeover");
  assert.equal(result.params?.clientNoContextTakeover, false);
  assert.equal(result.params?.clientMaxWindowBits, 15);
  assertTakenOver(result);
});

Deno.test("serve() with the default clientNoContextTakeover (true) still has npm:ws compress each message alone", async () => {
  for (const settings of [{}, { clientNoContextTakeover: true }]) {
    const result = await session(settings, npmClient(true));
    assert.equal(
      result.answer,
      "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
    );
    assert.equal(result.params?.clientNoContextTakeover, true);
    assertAlone(result);
  }
});

Deno.test("serve() with clientNoContextTakeover: false echoes npm:ws's own client_no_context_takeover, and npm:ws compresses each message alone (RFC 7692 §7.1.1.2)", async () => {
  const result = await session(
    { clientNoContextTakeover: false },
    npmClient({ clientNoContextTakeover: true }),
  );
  assert.equal(
    result.answer,
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
  );
  assert.equal(result.params?.clientNoContextTakeover, true);
  assertAlone(result);
});

Deno.test("serve() with both *NoContextTakeover settings false answers npm:ws insisting on its own context takeover (clientNoContextTakeover: false), which takes over", async () => {
  const result = await session(
    { serverNoContextTakeover: false, clientNoContextTakeover: false },
    npmClient({
      clientNoContextTakeover: false,
      serverNoContextTakeover: false,
    }),
  );
  assert.equal(result.answer, "permessage-deflate");
  assert.equal(result.params?.serverNoContextTakeover, false);
  assert.equal(result.params?.clientNoContextTakeover, false);
  assertTakenOver(result);
});

Deno.test("serve() with clientNoContextTakeover: false keeps npm:ws's window within the 10 bits it asks for, or the 9 the client offers (RFC 7692 §7.1.2.2)", async () => {
  // Asked by the server: npm:ws offers client_max_window_bits bare.
  const asked = await session(
    { clientNoContextTakeover: false, clientMaxWindowBits: 10 },
    npmClient(true),
  );
  assert.equal(
    asked.answer,
    "permessage-deflate; server_no_context_takeover; client_max_window_bits=10",
  );
  assert.equal(asked.params?.clientNoContextTakeover, false);
  assert.equal(asked.params?.clientMaxWindowBits, 10);
  // A 2 KiB message does not fit a 1 KiB window: the repeat gains less.
  assert.ok(asked.second < asked.first, `${asked.second} of ${asked.first}`);
  // Offered by the client, not answered: its own promise of 9 bits.
  const offered = await session(
    { clientNoContextTakeover: false },
    npmClient({ clientMaxWindowBits: 9 }),
  );
  assert.equal(
    offered.answer,
    "permessage-deflate; server_no_context_takeover",
  );
  assert.equal(offered.params?.clientMaxWindowBits, 9);
});

Deno.test("serve() with clientNoContextTakeover: false lets connect() take over context, with its default settings and in a 9-bit window", async () => {
  const byDefault = await session(
    { clientNoContextTakeover: false },
    duplexClient(),
  );
  assert.equal(
    byDefault.answer,
    "permessage-deflate; server_no_context_takeover",
  );
  assert.equal(byDefault.params?.clientNoContextTakeover, false);
  assertTakenOver(byDefault);
  const small = await session(
    { clientNoContextTakeover: false, serverNoContextTakeover: false },
    duplexClient({ clientMaxWindowBits: 9 }),
  );
  assert.equal(small.answer, "permessage-deflate");
  assert.equal(small.params?.clientMaxWindowBits, 9);
});

Deno.test("serve() by default has connect() compress each message alone, as before", async () => {
  const result = await session({}, duplexClient());
  assert.equal(
    result.answer,
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
  );
  assertAlone(result);
});
