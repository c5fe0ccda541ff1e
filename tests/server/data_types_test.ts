// Type-level tests: `deno test` type-checks this file, and an expected
// type error that does not happen fails it: each pins a mistake the types
// catch.
import assert from "node:assert/strict";
import {
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
  }) as Server<unknown>);
  // A hook that may accept without data: socket.data may be undefined.
  servers.push(serve<{ user: string } | undefined>({
    ...LOCAL,
    onUpgrade: () => {},
  }, () => {}) as Server<unknown>);
  // Options built apart: `satisfies` keeps the hook known to be there.
  const options = {
    ...LOCAL,
    onUpgrade: () => ({ data: { user: "ada" } }),
  } satisfies ServeOptions<{ user: string }>;
  servers.push(serve(options, handler) as Server<unknown>);
  // Typed with ServeOptions alone, the hook may be missing.
  const loose: ServeOptions<{ user: string }> = { ...LOCAL };
  // @ts-expect-error without onUpgrade, socket.data is undefined
  servers.push(serve(loose, handler) as Server<unknown>);
  // @ts-expect-error without onUpgrade, socket.data is undefined
  servers.push(serve<{ user: string }>({ ...LOCAL }, handler));
  // @ts-expect-error the constructor asks the same of its options
  servers.push(new Server<{ user: string }>({ ...LOCAL }, handler));
  // Data that allows undefined needs no hook.
  servers.push(serve<{ user: string } | undefined>({ ...LOCAL }, (socket) => {
    const user: string | undefined = socket.data?.user;
    void user;
  }) as Server<unknown>);
  servers.push(serve<{ user: string }>({
    ...LOCAL,
    // @ts-expect-error accepting with nothing leaves socket.data undefined
    onUpgrade: () => {},
  }, handler) as Server<unknown>);
  servers.push(serve<{ user: string }>({
    ...LOCAL,
    // @ts-expect-error accepting without data leaves socket.data undefined
    onUpgrade: () => ({ protocol: "chat" }),
  }, handler) as Server<unknown>);
  await Promise.all(servers.map((server) => server.shutdown()));
  assert.equal(servers.length, 9);
  assert.equal(tagged.data, 1);
});
