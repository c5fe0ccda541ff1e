// Type-level tests: `deno test` type-checks this file, and an expected
// type error that does not happen fails it: each pins a mistake the types
// catch.
import assert from "node:assert/strict";
import { serve, type Server, type Socket } from "../../mod.ts";
import { LOCAL } from "./_helpers.ts";

const handler = (_socket: Socket<{ user: string }>) => {};

Deno.test("socket.data has the type onUpgrade gives it, and cannot be left undefined when that type excludes undefined", async () => {
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
  // @ts-expect-error without a hook, socket.data would be undefined
  servers.push(serve<{ user: string }>(LOCAL, handler) as Server<unknown>);
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
  assert.equal(servers.length, 5);
});
