// Wrong arguments from JavaScript callers (or code typed `any`) get a
// TypeError that says what was wrong, not a failure deep inside.
import assert from "node:assert/strict";
import {
  prepareMessage,
  serve,
  type Server,
  serveStatic,
  type Socket,
} from "../../mod.ts";
import { main } from "../../src/cli/main.ts";
import { echo, LOCAL, NpmClient, withTimeout, wsUrl } from "./_helpers.ts";

// deno-lint-ignore no-explicit-any
type Any = any;

/**
 * Runs `checks` inside a handler of a fresh server, then shows that the
 * socket is still open: a refused call leaves nothing behind.
 */
async function checkInHandler(
  checks: (socket: Socket, server: Server) => unknown,
): Promise<Server> {
  const checked = Promise.withResolvers<void>();
  const server = serve(LOCAL, async (socket) => {
    try {
      await checks(socket, server);
      checked.resolve();
    } catch (error) {
      checked.reject(error);
    }
    await echo(socket);
  });
  await using client = await NpmClient.connect(wsUrl(server.addr));
  await withTimeout(checked.promise, 5_000, "the checks");
  // The first message the client gets is this answer: nothing went out
  // before it.
  assert.equal(await client.roundTrip("still open"), "still open");
  return server;
}

Deno.test("socket and server methods reject arguments of the wrong type with a TypeError that names them", async () => {
  await using _server = await checkInHandler(async (socket, server) => {
    const s = socket as Any;
    assert.throws(() => s.ping("hello"), {
      name: "TypeError",
      message:
        'Cannot ping: the payload must be a Uint8Array, got string "hello"',
    });
    assert.throws(() => s.subscribe(5), {
      name: "TypeError",
      message: "Cannot subscribe: the topic must be a string, got number 5",
    });
    assert.throws(() => s.unsubscribe({}), {
      name: "TypeError",
      message: "Cannot unsubscribe: the topic must be a string, got Object",
    });
    assert.throws(() => s.publish(5, "x"), {
      name: "TypeError",
      message: "Cannot publish: the topic must be a string, got number 5",
    });
    assert.throws(() => s.publish("t", 5), {
      name: "TypeError",
      message:
        "Cannot prepare a message: it must be a string, Uint8Array or ArrayBuffer, got number 5",
    });
    assert.throws(() => (server as Any).publish("t", {}), {
      name: "TypeError",
      message: /got Object$/,
    });
    await assert.rejects(s.sendStream(5), {
      name: "TypeError",
      message:
        "Cannot send a stream: the source must be a ReadableStream or an (async) iterable of pieces, got number 5",
    });
  });
});

Deno.test("a message whose ArrayBuffer was transferred away is refused with a TypeError that says so, and nothing reaches the peer", async () => {
  // Posted to a worker, say.
  const detach = <T extends Uint8Array | ArrayBuffer>(bytes: T) => {
    const buffer = bytes instanceof ArrayBuffer ? bytes : bytes.buffer;
    structuredClone(buffer, { transfer: [buffer as ArrayBuffer] });
    return bytes;
  };
  const refused = {
    name: "TypeError",
    message: /: its ArrayBuffer is detached \(transferred elsewhere/,
  };
  await using _server = await checkInHandler(async (socket) => {
    for (
      const message of [detach(new ArrayBuffer(8)), detach(new Uint8Array(8))]
    ) {
      assert.throws(() => socket.send(message), refused);
      assert.throws(() => socket.trySend(message), refused);
      assert.throws(() => prepareMessage(message), refused);
      await assert.rejects(socket.sendStream([message]), refused);
    }
  });
});

Deno.test("option bags of the wrong shape, or with a name the call does not know, throw a TypeError that names it (a misspelling would otherwise be ignored)", async () => {
  await using server = await checkInHandler((socket, server) => {
    const s = socket as Any;
    for (const send of [s.send, s.trySend]) {
      assert.throws(() => send.call(s, "x", { compres: false }), {
        name: "TypeError",
        message:
          'Cannot send: unknown option "compres" (did you mean "compress"?)',
      });
    }
    assert.throws(() => s.publish("t", "x", { except: socket }), {
      name: "TypeError",
      message:
        /^Cannot publish: unknown option "except": a socket leaves itself out with \{ exceptSelf: true \}/,
    });
    assert.throws(
      () => (server as Any).publish("t", "x", { exceptSelf: true }),
      {
        name: "TypeError",
        message:
          /^Cannot publish: unknown option "exceptSelf": server.publish\(\) leaves a socket out with \{ except: socket \}/,
      },
    );
    assert.throws(() => (server as Any).subscriberCount(5), {
      name: "TypeError",
      message:
        "Cannot count subscribers: the topic must be a string, got number 5",
    });
    assert.throws(() => s.close(1000, "", { streamgrace: 0 }), {
      name: "TypeError",
      message:
        'Cannot close: unknown option "streamgrace" (did you mean "streamGrace"?)',
    });
    assert.throws(() => s.close(1000, "", 5), {
      name: "TypeError",
      message:
        "Cannot close: the options must be an object of option names, got number 5",
    });
    assert.throws(() => s.close(1000, 5), {
      name: "TypeError",
      message: 'Cannot close: "reason" must be a string, got number 5',
    });
  });
  await assert.rejects((server as Any).shutdown({ timout: 100 }), {
    name: "TypeError",
    message:
      'Cannot shut down: unknown option "timout" (did you mean "timeout"?)',
  });
  await assert.rejects((server as Any).shutdown({ reason: 5 }), {
    name: "TypeError",
    message: 'Cannot shut down: "reason" must be a string, got number 5',
  });
  assert.throws(() => serveStatic(".", { indx: "home.html" } as Any), {
    name: "TypeError",
    message:
      'Cannot serve static files: unknown option "indx" (did you mean "index"?)',
  });
  await assert.rejects(main(["help"], { sginal: undefined, stdn: 1 } as Any), {
    name: "TypeError",
    message: 'Cannot run duplex: unknown option "stdn" (did you mean "stdin"?)',
  });
  for (
    const [options, shown] of [[new Map([["port", 0]]), "Map"], [
      [],
      "Array",
    ]] as const
  ) {
    assert.throws(() => serve(options as Any, echo), {
      name: "TypeError",
      message:
        `Cannot serve: the options must be an object of option names, got ${shown}`,
    });
  }
  assert.throws(() => serve({ ...LOCAL, perMessageDeflate: [] as Any }, echo), {
    name: "TypeError",
    message:
      /^Cannot use permessage-deflate: the settings must be true or an object, got \[\]/,
  });
  // Deno.serve's order, (handler, options), said "handler must be a function".
  for (const args of [[echo], [echo, LOCAL]]) {
    assert.throws(() => (serve as Any)(...args), {
      name: "TypeError",
      message:
        /^Cannot serve: serve\(\) takes \(options, handler\), and the handler came first/,
    });
  }
});

Deno.test("sendStream() rejects an option it does not know, naming it, and sends nothing (an empty text message asked for as { binry: false } went out binary)", async () => {
  await using _server = await checkInHandler(async (socket) => {
    const s = socket as Any;
    await assert.rejects(s.sendStream([], { binry: false }), {
      name: "TypeError",
      message:
        'Cannot send a stream: unknown option "binry" (did you mean "binary"?)',
    });
    await assert.rejects(s.sendStream([], 5), {
      name: "TypeError",
      message:
        "Cannot send a stream: the options must be an object of option names, got number 5",
    });
    // The source is let go, as when the socket has closed.
    let canceled = false;
    const source = new ReadableStream<string>({
      cancel: () => void (canceled = true),
    });
    await assert.rejects(s.sendStream(source, { binry: false }), TypeError);
    assert.equal(canceled, true);
  });
});

Deno.test("prepareMessage() takes an ArrayBuffer as send() does, and rejects anything else with a TypeError", () => {
  const bytes = new Uint8Array([1, 2, 3]);
  assert.deepEqual(
    prepareMessage(bytes.buffer).frame,
    prepareMessage(bytes).frame,
  );
  for (const [value, shown] of [[5, "number 5"], [null, "null"]] as const) {
    assert.throws(() => prepareMessage(value as Any), {
      name: "TypeError",
      message:
        `Cannot prepare a message: it must be a string, Uint8Array or ArrayBuffer, got ${shown}`,
    });
  }
});

Deno.test("serve() on a port in use throws the runtime's AddrInUse, naming the address", () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  assert.throws(
    () => serve({ ...LOCAL, port }, echo),
    (error: unknown) =>
      error instanceof Deno.errors.AddrInUse &&
      error.message.startsWith(`Cannot serve on 127.0.0.1:${port}: `) &&
      error.cause instanceof Deno.errors.AddrInUse,
  );
});

Deno.test("errors wrapped with where they happened keep their class, name and code, and anything that cannot be rebuilt is passed on as it is", async () => {
  const { withContext } = await import("../../src/_error_context.ts");
  const refused = Object.assign(new Deno.errors.ConnectionRefused("refused"), {
    code: "ECONNREFUSED",
  });
  const wrapped = withContext(refused, "Cannot connect to ws://x/") as Error;
  assert.ok(wrapped instanceof Deno.errors.ConnectionRefused);
  assert.equal(wrapped.message, "Cannot connect to ws://x/: refused");
  assert.equal(wrapped.name, "ConnectionRefused");
  assert.equal((wrapped as { code?: string }).code, "ECONNREFUSED");
  assert.equal(wrapped.cause, refused);
  class ReadOnlyName extends Error {
    override get name() {
      return "ReadOnlyName";
    }
    get code() {
      return "X";
    }
  }
  for (
    const error of [
      new AggregateError([new Error("a")], "many"),
      new DOMException("gone", "AbortError"),
      new ReadOnlyName("read-only"),
      "not an error",
    ]
  ) {
    const result = withContext(error, "Cannot connect");
    if (error instanceof ReadOnlyName) {
      assert.ok(result instanceof ReadOnlyName);
      assert.equal((result as Error).message, "Cannot connect: read-only");
    } else assert.equal(result, error);
  }
});
