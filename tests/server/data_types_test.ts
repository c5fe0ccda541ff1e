// Type-level tests: `deno test` type-checks this file, and an expected
// type error that does not happen fails it: each pins a mistake the types
// catch.
import assert from "node:assert/strict";
import {
  connect,
  serve,
  type ServeOptions,
  Server,
  type Socket,
  type UpgradeAccept,
} from "../../mod.ts";
import { LOCAL } from "./_helpers.ts";

const handler = (_socket: Socket<{ user: string }>) => {};

/** UpgradeAccept stays an interface one can extend. */
interface TaggedAccept<D> extends UpgradeAccept<D> {
  tag?: string;
}
const tagged: TaggedAccept<number> = { data: 1, tag: "x" };

Deno.test("socket.data has the type onUpgrade gives it: neither a hook nor its absence can leave it undefined when that type excludes undefined", async () => {
  const servers: Server<unknown>[] = [];
  // Inferred from the hook, which may also reject.
  servers.push(serve({
    ...LOCAL,
    onUpgrade: (request) =>
      request.headers.has("authorization")
        ? { data: { user: "ada" } }
        : new Response(null, { status: 401 }),
  }, (socket) => {
    const user: string = socket.data.user;
    void user;
  }));
  // A hook that may accept without data: socket.data may be undefined.
  servers.push(serve<{ user: string } | undefined>({
    ...LOCAL,
    onUpgrade: () => {},
  }, () => {}));
  // Options built apart: `satisfies` keeps the hook known to be there.
  const options = {
    ...LOCAL,
    onUpgrade: () => ({ data: { user: "ada" } }),
  } satisfies ServeOptions<{ user: string }>;
  servers.push(serve(options, handler));
  // Typed with ServeOptions alone, the hook may be missing.
  const loose: ServeOptions<{ user: string }> = { ...LOCAL };
  // @ts-expect-error without onUpgrade, socket.data is undefined
  servers.push(serve(loose, handler));
  // @ts-expect-error without onUpgrade, socket.data is undefined
  servers.push(serve<{ user: string }>({ ...LOCAL }, handler));
  // @ts-expect-error the constructor asks the same of its options
  servers.push(new Server<{ user: string }>({ ...LOCAL }, handler));
  // Data that allows undefined needs no hook.
  servers.push(serve<{ user: string } | undefined>({ ...LOCAL }, (socket) => {
    const user: string | undefined = socket.data?.user;
    void user;
  }));
  servers.push(serve<{ user: string }>({
    ...LOCAL,
    // @ts-expect-error accepting with nothing leaves socket.data undefined
    onUpgrade: () => {},
  }, handler));
  servers.push(serve<{ user: string }>({
    ...LOCAL,
    // @ts-expect-error accepting without data leaves socket.data undefined
    onUpgrade: () => ({ protocol: "chat" }),
  }, handler));
  await Promise.all(servers.map((server) => server.shutdown()));
  assert.equal(servers.length, 9);
  assert.equal(tagged.data, 1);
});

Deno.test("a Server<User> is a Server: a helper that takes any server takes it (Data is only handed out)", async () => {
  const describeServer = (server: Server) => server.addr.port;
  await using typed = serve<{ user: string }>({
    ...LOCAL,
    onUpgrade: () => ({ data: { user: "ada" } }),
  }, handler);
  const all: Server[] = [typed];
  assert.equal(describeServer(typed), typed.addr.port);
  assert.equal(all.length, 1);
});

Deno.test("a handler may return any value or promise (socket.closed, socket.close()): the socket stays open until it settles", async () => {
  await using server = serve({ ...LOCAL }, (socket) => socket.closed);
  await using closing = serve(
    { ...LOCAL },
    (socket) => socket.close(4000, "bye"),
  );
  // @ts-expect-error a function returned by mistake (a curried handler)
  await using curried = serve({ ...LOCAL }, (_socket) => async () => {});
  void curried;
  const open = await connect(`ws://127.0.0.1:${server.addr.port}/`);
  const closed = await connect(`ws://127.0.0.1:${closing.addr.port}/`);
  assert.deepEqual(await closed.closed, {
    code: 4000,
    reason: "bye",
    wasClean: true,
  });
  assert.equal(open.state, "open");
  assert.equal((await open.close(1000)).code, 1000);
});

Deno.test("options take readonly arrays (as const, Object.freeze): protocols, origins, connect()'s protocols and caCerts", async () => {
  const protocols = ["chat.v2", "chat.v1"] as const;
  const origins = Object.freeze([
    "http://localhost",
    /^https:\/\/.*\.example$/,
  ]);
  await using server = serve(
    { ...LOCAL, protocols, origins },
    (socket) => socket.closed,
  );
  const socket = await connect(`ws://127.0.0.1:${server.addr.port}/`, {
    protocols: ["chat.v1"] as const,
    headers: { origin: "http://localhost" },
    caCerts: Object.freeze([]) as readonly string[],
  });
  assert.equal(socket.protocol, "chat.v1");
  await socket.close();
});

Deno.test("stats().timeouts names its phases: one that never fired may be missing, and a misspelt one does not type-check", async () => {
  await using server = serve({ ...LOCAL }, () => {});
  const { timeouts } = server.stats();
  // @ts-expect-error a phase that never fired is left out
  const idle: number = timeouts.idle;
  // @ts-expect-error no such phase
  void timeouts.handshak;
  assert.equal(idle, undefined);
  assert.equal(timeouts.handshake ?? 0, 0);
});
