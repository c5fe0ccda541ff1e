import assert from "node:assert/strict";
import { chromium, type Page } from "playwright-core";
import { startChat } from "../../examples/chat/server.ts";
import { DenoClient, NpmClient, type Received } from "../server/_helpers.ts";

const CHROMIUM = "/usr/bin/chromium";
const HAVE_CHROMIUM = (() => {
  try {
    return Deno.statSync(CHROMIUM).isFile;
  } catch {
    return false;
  }
})();
const UI_DEADLINE = 10_000;

interface Client extends AsyncDisposable {
  send(message: Received): void;
  next(what?: string): Promise<Received>;
}

/** A chat client speaking the example's JSON protocol. */
class Chatter implements AsyncDisposable {
  readonly #client: Client;
  constructor(client: Client) {
    this.#client = client;
  }
  static async connect(port: number, kind: "npm" | "deno" = "npm") {
    const url = `ws://127.0.0.1:${port}/`;
    return new Chatter(
      kind === "npm"
        ? await NpmClient.connect(url)
        : await DenoClient.connect(url),
    );
  }
  send(message: unknown): void {
    this.#client.send(JSON.stringify(message));
  }
  async next(what = "a chat message"): Promise<Record<string, unknown>> {
    const data = await this.#client.next(what);
    assert.equal(typeof data, "string");
    return JSON.parse(data as string);
  }
  /** Joins and returns the `joined` reply (after checking its own presence). */
  async join(room: string, nick: string) {
    this.send({ type: "join", room, nick });
    const joined = await this.next("joined");
    assert.equal(joined.type, "joined");
    assert.equal(joined.room, room);
    assert.equal(joined.nick, nick.trim());
    const presence = await this.next("my presence");
    assert.equal(presence.type, "presence");
    assert.equal(presence.event, "join");
    assert.equal(presence.nick, nick.trim());
    return { joined, presence };
  }
  async [Symbol.asyncDispose](): Promise<void> {
    await this.#client[Symbol.asyncDispose]();
  }
}

function listen() {
  return startChat({ port: 0, hostname: "127.0.0.1", history: 3 });
}

Deno.test("examples/chat: join, messages, presence and history per room (npm:ws and Deno WebSocket)", async () => {
  await using server = listen();
  const { port } = server.addr;
  await using ada = await Chatter.connect(port);
  await using bob = await Chatter.connect(port, "deno");

  const first = await ada.join("lobby", "ada");
  assert.deepEqual(first.joined.history, []);
  assert.equal(first.presence.count, 1);
  assert.deepEqual(first.joined.nicks, ["ada"]);

  const second = await bob.join("lobby", "  bob ");
  assert.equal(second.presence.count, 2);
  assert.deepEqual(second.joined.nicks, ["ada", "bob"]);
  // The others hear of the one change, not the whole list again.
  assert.equal("nicks" in second.presence, false);
  assert.deepEqual(await ada.next("bob's arrival"), second.presence);

  ada.send({ type: "say", text: "hello, <b>bob</b>" });
  for (const chatter of [ada, bob]) {
    const message = await chatter.next();
    assert.equal(message.type, "message");
    assert.equal(message.room, "lobby");
    assert.equal(message.nick, "ada");
    assert.equal(message.text, "hello, <b>bob</b>");
    assert.equal(typeof message.time, "number");
  }
  for (const text of ["two", "three", "four"]) {
    bob.send({ type: "say", text });
    assert.equal((await ada.next()).text, text);
    assert.equal((await bob.next()).text, text);
  }

  // A newcomer gets the last 3 lines, oldest first.
  await using cy = await Chatter.connect(port);
  const third = await cy.join("lobby", "cy");
  assert.deepEqual(
    (third.joined.history as { text: string }[]).map((line) => line.text),
    ["two", "three", "four"],
  );
  assert.equal(third.presence.count, 3);
  assert.equal((await ada.next()).nick, "cy");
  assert.equal((await bob.next()).nick, "cy");

  // Another room is apart: its history is empty and it hears nothing of the
  // lobby; the next message dee gets is her own room's.
  await using dee = await Chatter.connect(port, "deno");
  const other = await dee.join("den", "dee");
  assert.deepEqual(other.joined.history, []);
  assert.equal(other.presence.count, 1);
  ada.send({ type: "say", text: "lobby only" });
  for (const chatter of [ada, bob, cy]) {
    assert.equal((await chatter.next()).text, "lobby only");
  }
  dee.send({ type: "say", text: "den only" });
  assert.equal((await dee.next()).text, "den only");

  // Leaving, by message or by disconnecting, updates the others' presence.
  bob.send({ type: "leave" });
  assert.deepEqual(await bob.next(), { type: "left", room: "lobby" });
  for (const chatter of [ada, cy]) {
    const left = await chatter.next("bob leaving");
    assert.equal(left.event, "leave");
    assert.equal(left.nick, "bob");
    assert.equal(left.count, 2);
  }
  await cy[Symbol.asyncDispose]();
  const gone = await ada.next("cy disconnecting");
  assert.deepEqual(
    [gone.type, gone.event, gone.nick, gone.count],
    ["presence", "leave", "cy", 1],
  );
  // Joining another room leaves the current one.
  await ada.join("den", "ada");
  assert.equal((await dee.next()).nick, "ada");
});

Deno.test("examples/chat: bad requests get an error and the connection stays usable", async () => {
  await using server = listen();
  await using eve = await Chatter.connect(server.addr.port);
  const errors: [unknown, RegExp][] = [
    [{ type: "say", text: "hi" }, /^Join a room first$/],
    [{ type: "join", room: "Bad Room!", nick: "eve" }, /^A room is/],
    [{ type: "join", room: "ok", nick: "   " }, /^A nick is 1-24/],
    [{ type: "join", room: "ok", nick: "\u200b\u3164" }, /^A nick is 1-24/],
    [{ type: "join", room: "ok", nick: "x".repeat(25) }, /^A nick is 1-24/],
    [{ type: "shout" }, /^Unknown message type "shout"$/],
    [[1, 2], /^Unknown message type undefined$/],
    [null, /^Messages must be JSON objects$/],
  ];
  for (const [request, expected] of errors) {
    eve.send(request);
    const reply = await eve.next();
    assert.equal(reply.type, "error");
    assert.match(reply.message as string, expected);
  }
  await eve.join("ok", "eve");
  eve.send({ type: "say", text: "x".repeat(2001) });
  assert.match((await eve.next()).message as string, /at most 2000/);
  // Shown as "eve" by a right-to-left override, or reversing what follows.
  await using mallory = await Chatter.connect(server.addr.port);
  for (const nick of ["\u202Eeve", "eve\u2067", "\u200Feve"]) {
    mallory.send({ type: "join", room: "ok", nick });
    const reply = await mallory.next();
    assert.equal(reply.type, "error");
    assert.match(reply.message as string, /bidirectional controls/);
  }
});

Deno.test("examples/chat: a nick is unique within its room whatever its case or invisible characters, and a socket may send 5 messages a second in bursts of 10", async () => {
  await using server = listen();
  const { port } = server.addr;
  await using ada = await Chatter.connect(port);
  await using impostor = await Chatter.connect(port, "deno");
  await ada.join("lobby", "ada");
  for (
    const nick of [
      "ada",
      "Ada",
      "ada\u200b",
      "a da",
      "ada\u034f",
      "ada\u3164",
      "ada\u2800",
      "ada\u0000",
    ]
  ) {
    impostor.send({ type: "join", room: "lobby", nick });
    assert.deepEqual(await impostor.next(), {
      type: "error",
      code: "nick-taken",
      message: `The nick ${nick} is taken in lobby`,
    });
  }
  // "İ" lowercases to "i" and a combining dot: the same nick as "i̇da".
  await using ida = await Chatter.connect(port);
  await ida.join("lobby", "i\u0307da");
  impostor.send({ type: "join", room: "lobby", nick: "\u0130DA" });
  assert.deepEqual(await impostor.next(), {
    type: "error",
    code: "nick-taken",
    message: "The nick \u0130DA is taken in lobby",
  });
  await impostor.join("den", "ada"); // another room, another ada

  // Joins count too: ten pass (each answered with joined and presence),
  // then the bucket is empty.
  await using eve = await Chatter.connect(port);
  for (let i = 0; i < 12; i++) {
    eve.send({ type: "join", room: "lobby", nick: `eve${i}` });
  }
  const replies = [];
  for (let i = 0; i < 22; i++) replies.push(await eve.next());
  assert.equal(replies.filter((reply) => reply.type === "joined").length, 10);
  assert.deepEqual(replies.slice(20), [
    {
      type: "error",
      code: "rate-limited",
      message: "Slow down: at most 5 messages a second",
    },
    {
      type: "error",
      code: "rate-limited",
      message: "Slow down: at most 5 messages a second",
    },
  ]);
});

Deno.test("examples/chat: a WebSocket opened by another site's page is refused with 403; the same origin and non-browsers are let in", async () => {
  await using server = listen();
  const url = `ws://127.0.0.1:${server.addr.port}/`;
  await assert.rejects(
    NpmClient.connect(url, { origin: "https://evil.example" }),
    /Unexpected server response: 403/,
  );
  await using same = await NpmClient.connect(url, {
    origin: `http://127.0.0.1:${server.addr.port}`,
  });
  await using none = await NpmClient.connect(url);
  for (const client of [same, none]) {
    client.send(JSON.stringify({ type: "leave" }));
  }
});

Deno.test("examples/chat: a full house of rooms makes way for a new one by dropping the room left empty longest, never an occupied one", async () => {
  await using server = startChat({
    port: 0,
    hostname: "127.0.0.1",
    maxRooms: 2,
  });
  await using eve = await Chatter.connect(server.addr.port);
  await using bob = await Chatter.connect(server.addr.port);
  await eve.join("a", "eve");
  eve.send({ type: "say", text: "kept in a" });
  assert.equal((await eve.next()).text, "kept in a");
  await bob.join("b", "bob");
  // Both rooms occupied: no third.
  await using mallory = await Chatter.connect(server.addr.port);
  mallory.send({ type: "join", room: "c", nick: "mallory" });
  assert.deepEqual(await mallory.next(), {
    type: "error",
    message: "Too many rooms",
  });
  // Eve moves to b: a is empty now, and makes way for c.
  eve.send({ type: "join", room: "b", nick: "eve" });
  assert.equal((await eve.next()).type, "joined");
  await mallory.join("c", "mallory");
  // a was dropped with its history: once c is empty too and makes way for
  // it, a starts afresh.
  mallory.send({ type: "leave" });
  assert.deepEqual(await mallory.next(), { type: "left", room: "c" });
  await using carol = await Chatter.connect(server.addr.port);
  const { joined } = await carol.join("a", "carol");
  assert.deepEqual(joined.history, []);
});

Deno.test("examples/chat: the page is served on the same port, and nothing else beside it", async () => {
  await using server = listen();
  const base = `http://127.0.0.1:${server.addr.port}`;
  const page = await fetch(`${base}/`);
  assert.equal(page.status, 200);
  assert.match(page.headers.get("content-type") ?? "", /^text\/html/);
  assert.match(await page.text(), /<title>Duplex chat<\/title>/);
  const source = await fetch(`${base}/server.ts`);
  assert.equal(source.status, 404);
  await source.body?.cancel();
});

async function joinInPage(page: Page, nick: string, room: string) {
  await page.locator("#join:not([disabled])").waitFor();
  await page.fill("#nick", nick);
  await page.fill("#room", room);
  await page.click("#join");
  await page.locator("#text:not([disabled])").waitFor();
}

Deno.test({
  name: `examples/chat: two Chromium pages chat in one room${
    HAVE_CHROMIUM
      ? ""
      : " (SKIPPED: /usr/bin/chromium is not installed; .ci/run installs it)"
  }`,
  ignore: !HAVE_CHROMIUM,
  async fn() {
    await using server = listen();
    const url = `http://127.0.0.1:${server.addr.port}/`;
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    try {
      const context = await browser.newContext({
        viewport: { width: 720, height: 560 },
      });
      context.setDefaultTimeout(UI_DEADLINE);
      const alice = await context.newPage();
      const bob = await context.newPage();
      await alice.goto(url);
      await bob.goto(url);
      await joinInPage(alice, "alice", "garden");
      await joinInPage(bob, "bob", "garden");
      await alice.locator("#presence", { hasText: "2 here: alice, bob" })
        .waitFor();
      await bob.locator("#presence", { hasText: "2 here: alice, bob" })
        .waitFor();

      await alice.fill("#text", "Hello from Alice <script>1</script>");
      await alice.press("#text", "Enter");
      const line = bob.locator("#messages li", {
        hasText: "Hello from Alice <script>1</script>",
      });
      await line.waitFor();
      assert.equal(await line.locator(".nick").textContent(), "alice");

      // What peers write cannot reverse the rest of its line: their text
      // is isolated (CSS on the line's parts, <bdi> in presence).
      assert.equal(
        await bob.evaluate(
          `getComputedStyle(document.querySelector("#messages .text")).unicodeBidi`,
        ),
        "isolate",
      );
      assert.equal(await bob.locator("#presence bdi").count(), 2);

      await bob.fill("#text", "Hi Alice!");
      await bob.click("#send");
      await alice.locator("#messages li.mine", { hasText: "Hello from Alice" })
        .waitFor();
      await alice.locator("#messages li", { hasText: "Hi Alice!" }).waitFor();

      // For a human to look at; overwritten by every run.
      const screenshot = "/tmp/duplex-chat-e2e.png";
      await alice.screenshot({ path: screenshot });
      assert.ok((await Deno.stat(screenshot)).size > 1000);

      // Bob leaves by closing his page; Alice sees the presence change.
      await bob.close();
      await alice.locator("#presence", { hasText: "1 here: alice" }).waitFor();

      // Fifteen lines at once, past the burst of 10: the first one the rate
      // limit refused comes back into the input, the later ones are listed.
      await alice.evaluate(`{
        const input = document.getElementById("text");
        const form = document.getElementById("say-form");
        for (let i = 0; i < 15; i++) {
          input.value = "burst " + i;
          form.requestSubmit();
        }
      }`);
      // Every line is either shown (accepted), back in the input, or listed.
      await alice.waitForFunction(
        `document.getElementById("text").value !== "" &&
        [...document.querySelectorAll("#messages li")].filter((li) =>
          /^Not sent: burst \\d+$/.test(li.textContent) ||
          (li.classList.contains("mine") && /burst \\d+/.test(li.textContent))
        ).length === 14`,
      );
      assert.match(await alice.inputValue("#text"), /^burst \d+$/);
      assert.ok(
        await alice.locator("#messages li", { hasText: "Slow down" }).count() >
          0,
      );

      // The page keeps the last 500 lines: 60 others say 9 each (a join
      // takes one of a burst's 10).
      const others = await Promise.all(
        Array.from({ length: 60 }, () => Chatter.connect(server.addr.port)),
      );
      for (const [i, other] of others.entries()) {
        await other.join("garden", `n${i}`);
      }
      for (const [i, other] of others.entries()) {
        for (let k = 0; k < 9; k++) {
          other.send({ type: "say", text: `flood ${i}.${k}` });
        }
      }
      await alice.locator("#messages li", { hasText: "flood 59.8" }).waitFor();
      assert.equal(await alice.locator("#messages li").count(), 500);
      await Promise.all(others.map((other) => other[Symbol.asyncDispose]()));

      // A reload keeps the nick and room in the form.
      await alice.reload();
      assert.equal(await alice.inputValue("#nick"), "alice");
      assert.equal(await alice.inputValue("#room"), "garden");
      await context.close();
    } finally {
      await browser.close();
    }
  },
});
