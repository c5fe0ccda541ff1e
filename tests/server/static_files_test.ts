import assert from "node:assert/strict";
import { serveStatic } from "../../src/server/static_files.ts";
import {
  DEADLINE,
  HttpLoop,
  pattern,
  RawHttp,
  request,
  withTimeout,
} from "./_http_helpers.ts";

const BIG = pattern(1024 * 1024 + 17);

/**
 * A temporary tree: `root/` is served, `outside/` is next to it and must
 * stay out of reach. Removed on dispose.
 */
async function fixture(): Promise<
  AsyncDisposable & { root: string; base: string }
> {
  const base = await Deno.makeTempDir({ prefix: "duplex_static_" });
  const root = `${base}/root`;
  await Deno.mkdir(`${root}/sub`, { recursive: true });
  await Deno.mkdir(`${root}/noindex`);
  await Deno.mkdir(`${base}/outside`);
  const files: Record<string, string | Uint8Array> = {
    "index.html": "<h1>home</h1>",
    "style.css": "body{}",
    "app.js": "export {};",
    "mod.mjs": "export {};",
    "data.json": "{}",
    "app.js.map": "{}",
    "logo.svg": "<svg/>",
    "pic.png": new Uint8Array([137, 80, 78, 71]),
    "pic.JPG": new Uint8Array([255, 216]),
    "anim.gif": "GIF89a",
    "favicon.ico": "ico",
    "img.webp": "RIFF",
    "font.woff2": "wOF2",
    "module.wasm": new Uint8Array([0, 97, 115, 109]),
    "clip.webm": "webm",
    "clip.mp4": "mp4",
    "tone.wav": "RIFF",
    "song.mp3": "ID3",
    "doc.pdf": "%PDF",
    "feed.xml": "<feed/>",
    "subs.vtt": "WEBVTT",
    "notes.txt": "notes",
    "a b.txt": "spaced",
    "README": "no extension",
    "x.constructor": "odd extension",
    "x.__proto__": "odd extension",
    "big.bin": BIG,
    ".env": "SECRET=1",
    "sub/index.html": "<h1>sub</h1>",
    "sub/page.txt": "page",
    "noindex/file.txt": "file",
  };
  for (const [name, content] of Object.entries(files)) {
    if (typeof content === "string") {
      await Deno.writeTextFile(`${root}/${name}`, content);
    } else await Deno.writeFile(`${root}/${name}`, content);
  }
  await Deno.writeTextFile(`${base}/outside/secret.txt`, "secret");
  await Deno.writeTextFile(`${base}/root-sibling.txt`, "sibling");
  await Deno.symlink(`${root}/style.css`, `${root}/link-in.css`);
  await Deno.symlink(`${base}/outside/secret.txt`, `${root}/link-out.txt`);
  await Deno.symlink(`${base}/outside`, `${root}/dir-out`);
  // Names without a dot that lead to dotfiles inside the root.
  await Deno.mkdir(`${root}/.private`);
  await Deno.writeTextFile(`${root}/.private/key.txt`, "secret key");
  await Deno.symlink(`${root}/.env`, `${root}/config.txt`);
  await Deno.symlink(`${root}/.private`, `${root}/assets`);
  return {
    root,
    base,
    [Symbol.asyncDispose]: () => Deno.remove(base, { recursive: true }),
  };
}

/** Calls the handler and reads the whole body, so no file stays open. */
async function get(
  handler: (request: Request) => Promise<Response>,
  path: string,
  init?: RequestInit,
): Promise<{ response: Response; text: string; size: number }> {
  const response = await handler(
    new Request(`http://localhost${path}`, init),
  );
  const bytes = new Uint8Array(await response.arrayBuffer());
  return {
    response,
    text: new TextDecoder().decode(bytes),
    size: bytes.length,
  };
}

Deno.test("serveStatic serves files with their Content-Type and Content-Length", async () => {
  await using tree = await fixture();
  const handler = serveStatic(tree.root);
  const types: [string, string][] = [
    ["/index.html", "text/html; charset=utf-8"],
    ["/style.css", "text/css; charset=utf-8"],
    ["/app.js", "text/javascript; charset=utf-8"],
    ["/mod.mjs", "text/javascript; charset=utf-8"],
    ["/data.json", "application/json; charset=utf-8"],
    ["/app.js.map", "application/json; charset=utf-8"],
    ["/logo.svg", "image/svg+xml"],
    ["/pic.png", "image/png"],
    ["/pic.JPG", "image/jpeg"],
    ["/anim.gif", "image/gif"],
    ["/favicon.ico", "image/x-icon"],
    ["/img.webp", "image/webp"],
    ["/font.woff2", "font/woff2"],
    ["/module.wasm", "application/wasm"],
    // Media and documents a browser plays or shows rather than downloads.
    ["/clip.webm", "video/webm"],
    ["/clip.mp4", "video/mp4"],
    ["/tone.wav", "audio/wav"],
    ["/song.mp3", "audio/mpeg"],
    ["/doc.pdf", "application/pdf"],
    ["/feed.xml", "application/xml"],
    ["/subs.vtt", "text/vtt; charset=utf-8"],
    ["/notes.txt", "text/plain; charset=utf-8"],
    ["/a%20b.txt", "text/plain; charset=utf-8"],
    ["/README", "application/octet-stream"],
    // An extension that names a property of every object is just unknown.
    ["/x.constructor", "application/octet-stream"],
    ["/x.__proto__", "application/octet-stream"],
  ];
  for (const [path, type] of types) {
    const { response, size } = await get(handler, path);
    assert.equal(response.status, 200, path);
    assert.equal(response.headers.get("content-type"), type, path);
    assert.equal(response.headers.get("content-length"), `${size}`, path);
    assert.ok(size > 0, path);
    assert.equal(response.headers.get("x-content-type-options"), "nosniff");
  }
  assert.equal((await get(handler, "/a%20b.txt")).text, "spaced");
});

Deno.test("serveStatic serves a directory's index and redirects to its trailing slash", async () => {
  await using tree = await fixture();
  const handler = serveStatic(tree.root);
  assert.equal((await get(handler, "/")).text, "<h1>home</h1>");
  assert.equal((await get(handler, "/sub/")).text, "<h1>sub</h1>");
  for (
    const [path, location] of [
      ["/sub", "/sub/"],
      ["/sub?x=1", "/sub/?x=1"],
      ["//sub", "/sub/"], // never a protocol-relative "//sub/"
    ]
  ) {
    const { response } = await get(handler, path);
    assert.equal(response.status, 301, path);
    assert.equal(response.headers.get("location"), location, path);
  }
  assert.equal((await get(handler, "/noindex/")).response.status, 404);
  const custom = serveStatic(`${tree.root}/`, { index: "page.txt" });
  assert.equal((await get(custom, "/sub/")).text, "page");
});

Deno.test("serveStatic answers 404 for missing files and 405 for other methods", async () => {
  await using tree = await fixture();
  const handler = serveStatic(tree.root);
  const missing = await get(handler, "/missing.css");
  assert.equal(missing.response.status, 404);
  assert.equal(missing.text, "Not Found\n");
  assert.equal((await get(handler, "/index.html/x")).response.status, 404);
  // A file named as a directory.
  assert.equal((await get(handler, "/index.html/")).response.status, 404);
  assert.equal((await get(handler, "/index.html/.")).response.status, 404);
  // A name longer than the file system allows (ENAMETOOLONG) names no file.
  const long = await get(handler, `/${"a".repeat(256)}`);
  assert.equal(long.response.status, 404);
  for (const method of ["POST", "PUT", "DELETE", "OPTIONS"]) {
    const { response } = await get(handler, "/index.html", { method });
    assert.equal(response.status, 405, method);
    assert.equal(response.headers.get("allow"), "GET, HEAD");
  }
});

Deno.test("serveStatic never serves outside its root", async () => {
  await using tree = await fixture();
  const handler = serveStatic(tree.root);
  const notFound = [
    "/../outside/secret.txt", // normalized by URL parsing to /outside/...
    "/%2e%2e/outside/secret.txt",
    "/%2E%2E/root-sibling.txt",
    "/..%2foutside%2fsecret.txt",
    "/sub/..%2F..%2Foutside/secret.txt",
    "/..%5coutside%5csecret.txt",
    "/%2Fetc%2Fpasswd",
    `/${encodeURIComponent(`${tree.base}/outside/secret.txt`)}`,
    "/index.html%00.txt",
    "/.env",
    "/%2eenv",
    "/%zz",
  ];
  for (const path of notFound) {
    const { response, text } = await get(handler, path);
    assert.equal(response.status, 404, path);
    assert.doesNotMatch(text, /secret|sibling/, path);
  }
  for (
    const path of [
      "/link-out.txt",
      "/dir-out/secret.txt",
      "/dir-out/",
      // Symlinks to dotfiles are no way around their rule.
      "/config.txt",
      "/assets/key.txt",
    ]
  ) {
    const { response, text } = await get(handler, path);
    assert.equal(response.status, 403, path);
    assert.doesNotMatch(text, /secret|SECRET/, path);
  }
  assert.equal((await get(handler, "/link-in.css")).text, "body{}");
});

Deno.test("serveStatic answers HEAD with headers only, and 304 for a fresh cache (RFC 9110 §13)", async () => {
  await using tree = await fixture();
  const handler = serveStatic(tree.root);
  const head = await handler(
    new Request("http://localhost/style.css", { method: "HEAD" }),
  );
  assert.equal(head.status, 200);
  assert.equal(head.body, null);
  assert.equal(head.headers.get("content-length"), "6");
  const etag = head.headers.get("etag")!;
  const lastModified = head.headers.get("last-modified")!;
  assert.match(etag, /^W\/"[0-9a-z]+-[0-9a-z]+"$/);
  assert.ok(!Number.isNaN(Date.parse(lastModified)));

  const fresh: Record<string, string>[] = [
    { "if-none-match": etag },
    { "if-none-match": etag.slice(2) }, // weak comparison
    { "if-none-match": `"other", ${etag}` },
    { "if-none-match": "*" },
    { "if-modified-since": lastModified },
    { "if-modified-since": new Date(Date.now() + 60_000).toUTCString() },
  ];
  for (const headers of fresh) {
    const { response, text } = await get(handler, "/style.css", { headers });
    assert.equal(response.status, 304, JSON.stringify(headers));
    assert.equal(text, "");
    assert.equal(response.headers.get("etag"), etag);
  }
  const stale: Record<string, string>[] = [
    { "if-none-match": '"other"' },
    // If-None-Match wins over If-Modified-Since.
    { "if-none-match": '"other"', "if-modified-since": lastModified },
    { "if-modified-since": "Thu, 01 Jan 1970 00:00:00 GMT" },
    { "if-modified-since": "not a date" },
    // Not HTTP-dates, so ignored (RFC 9110 §13.1.3), though Date.parse
    // reads them as times after the file's.
    { "if-modified-since": "2999" },
    { "if-modified-since": new Date(Date.now() + 60_000).toISOString() },
    { "if-modified-since": `${lastModified}, ${lastModified}` },
  ];
  for (const headers of stale) {
    const { response, text } = await get(handler, "/style.css", { headers });
    assert.equal(response.status, 200, JSON.stringify(headers));
    assert.equal(text, "body{}");
  }
});

Deno.test("serveStatic answers 412 when If-Match or If-Unmodified-Since fails, before If-None-Match and Range (RFC 9110 §13.1.1, §13.1.4, §13.2.2)", async () => {
  await using tree = await fixture();
  const handler = serveStatic(tree.root);
  const head = await handler(
    new Request("http://localhost/style.css", { method: "HEAD" }),
  );
  const etag = head.headers.get("etag")!;
  const lastModified = head.headers.get("last-modified")!;
  const past = "Thu, 01 Jan 1970 00:00:00 GMT";
  const failed: Record<string, string>[] = [
    // Strong comparison: a weak tag never matches, ours included.
    { "if-match": etag },
    { "if-match": '"other"' },
    { "if-unmodified-since": past },
    // Ahead of Range and If-None-Match.
    { "if-unmodified-since": past, range: "bytes=0-1" },
    { "if-match": '"other"', "if-none-match": etag },
    // If-Match decides alone when both are there.
    { "if-match": '"other"', "if-unmodified-since": lastModified },
  ];
  for (const headers of failed) {
    const { response } = await get(handler, "/style.css", { headers });
    assert.equal(response.status, 412, JSON.stringify(headers));
  }
  const held: [Record<string, string>, number][] = [
    [{ "if-match": "*" }, 200],
    [{ "if-match": `"other", *` }, 200],
    [{ "if-unmodified-since": lastModified }, 200],
    [{ "if-unmodified-since": "not a date" }, 200],
    [{ "if-unmodified-since": lastModified, range: "bytes=0-1" }, 206],
    [{ "if-match": "*", "if-unmodified-since": past }, 200],
  ];
  for (const [headers, status] of held) {
    const { response } = await get(handler, "/style.css", { headers });
    assert.equal(response.status, status, JSON.stringify(headers));
  }
});

Deno.test("serveStatic sends no more than the Content-Length it announced, though the file grows meanwhile", async () => {
  await using tree = await fixture();
  const handler = serveStatic(tree.root);
  for (const range of [undefined, "bytes=1-"]) {
    await Deno.writeTextFile(`${tree.root}/log.txt`, "0123456789");
    const response = await handler(
      new Request("http://localhost/log.txt", {
        headers: range ? { range } : {},
      }),
    );
    const announced = Number(response.headers.get("content-length"));
    await Deno.writeTextFile(`${tree.root}/log.txt`, "more", { append: true });
    const body = await response.text();
    assert.equal(body.length, announced, range);
    assert.equal(body, range ? "123456789" : "0123456789");
  }
});

Deno.test("serveStatic refuses a file swapped for a symlink to outside the root between its checks and its opening", async () => {
  await using tree = await fixture();
  const handler = serveStatic(tree.root);
  const target = `${tree.root}/notes.txt`;
  const open = Deno.open;
  // The swap lands just before the open, after the path was resolved.
  Deno.open = async (path, options) => {
    if (path === target) {
      await Deno.remove(target);
      await Deno.symlink(`${tree.base}/outside/secret.txt`, target);
    }
    return await open(path, options);
  };
  try {
    for (const method of ["GET", "HEAD"]) {
      await Deno.remove(target).catch(() => {});
      await Deno.writeTextFile(target, "notes");
      const { response, text } = await get(handler, "/notes.txt", { method });
      assert.equal(response.status, 403, method);
      assert.ok(!text.includes("secret"), method);
    }
  } finally {
    Deno.open = open;
  }
});

Deno.test("serveStatic serves a file renamed over the one it opened (a deploy) instead of refusing it", async () => {
  await using tree = await fixture();
  const handler = serveStatic(tree.root);
  const target = `${tree.root}/app.js`;
  const open = Deno.open;
  let renames = 0;
  // The new version lands just after the old one was opened.
  Deno.open = async (path, options) => {
    const file = await open(path, options);
    if (path === target && renames++ === 0) {
      await Deno.writeTextFile(
        `${tree.root}/app.js.tmp`,
        "export const v = 2;",
      );
      await Deno.rename(`${tree.root}/app.js.tmp`, target);
    }
    return file;
  };
  try {
    const { response, text } = await get(handler, "/app.js");
    assert.equal(response.status, 200);
    assert.equal(text, "export const v = 2;");
    assert.equal(renames, 2, "looked up again");
  } finally {
    Deno.open = open;
  }
});

Deno.test("serveStatic dates a file modified in the future now: Last-Modified is never later than the response (RFC 9110 §8.8.2.1)", async () => {
  await using tree = await fixture();
  const handler = serveStatic(tree.root);
  const year = 365 * 24 * 3600;
  await Deno.utime(
    `${tree.root}/notes.txt`,
    Date.now() / 1000,
    Date.now() / 1000 + year,
  );
  // One clock reading for both requests: they may straddle a second.
  const now = Date.now();
  const realNow = Date.now;
  Date.now = () => now;
  try {
    const { response } = await get(handler, "/notes.txt");
    const lastModified = response.headers.get("last-modified")!;
    assert.equal(lastModified, new Date(now).toUTCString());
    // It is the date the validators are compared with too.
    const again = await get(handler, "/notes.txt", {
      headers: { "if-modified-since": lastModified },
    });
    assert.equal(again.response.status, 304);
  } finally {
    Date.now = realNow;
  }
});

Deno.test("serveStatic types a symlink by the name asked for, not by its target's", async () => {
  await using tree = await fixture();
  await Deno.writeTextFile(`${tree.root}/v2`, "<h1>v2</h1>");
  await Deno.symlink(`${tree.root}/v2`, `${tree.root}/page.html`);
  const { response, text } = await get(serveStatic(tree.root), "/page.html");
  assert.equal(response.status, 200);
  assert.equal(text, "<h1>v2</h1>");
  assert.equal(
    response.headers.get("content-type"),
    "text/html; charset=utf-8",
  );
});

Deno.test("serveStatic answers a single byte range with 206 and Content-Range, one past the end with 416, and several ranges or a stale If-Range with the whole file (RFC 9110 §14)", async () => {
  await using tree = await fixture();
  const handler = serveStatic(tree.root);
  const size = BIG.length;
  const ranged = async (range: string, init: RequestInit = {}) => {
    const headers = new Headers(init.headers);
    headers.set("range", range);
    return await get(handler, "/big.bin", { ...init, headers });
  };
  const body = async (range: string) => {
    const response = await handler(
      new Request("http://localhost/big.bin", { headers: { range } }),
    );
    return { response, bytes: new Uint8Array(await response.arrayBuffer()) };
  };
  for (
    const [range, first, last] of [
      ["bytes=0-4", 0, 4],
      ["bytes=1000-", 1000, size - 1],
      ["bytes=-3", size - 3, size - 1],
      ["bytes=100-99999999", 100, size - 1],
      ["bytes=70000-200000", 70_000, 200_000], // more than one 64 KiB read
    ] as const
  ) {
    const { response, bytes } = await body(range);
    assert.equal(response.status, 206, range);
    assert.equal(
      response.headers.get("content-range"),
      `bytes ${first}-${last}/${size}`,
    );
    assert.equal(response.headers.get("content-length"), `${last - first + 1}`);
    assert.deepEqual(bytes, BIG.subarray(first, last + 1), range);
  }
  const past = await ranged(`bytes=${size}-`);
  assert.equal(past.response.status, 416);
  assert.equal(past.response.headers.get("content-range"), `bytes */${size}`);
  // (A no-break space is not HTTP whitespace: no range.)
  for (
    const range of ["bytes=0-1,5-6", "items=0-1", "bytes=5-2", "\xa0bytes=0-1"]
  ) {
    const whole = await ranged(range);
    assert.equal(whole.response.status, 200, range);
    assert.equal(whole.size, size);
  }
  // A Last-Modified under a second old is not a strong validator
  // (RFC 9110 §13.1.5): If-Range with it gets the whole file.
  const justNow = (await get(handler, "/big.bin")).response.headers.get(
    "last-modified",
  )!;
  const young = await ranged("bytes=0-9", {
    headers: { "if-range": justNow },
  });
  assert.equal(young.response.status, 200);
  await Deno.utime(`${tree.root}/big.bin`, 1e9, 1e9); // in 2001
  const full = await get(handler, "/big.bin");
  assert.equal(full.response.headers.get("accept-ranges"), "bytes");
  const modified = full.response.headers.get("last-modified")!;
  const fresh = await ranged("bytes=0-9", {
    headers: { "if-range": modified },
  });
  assert.equal(fresh.response.status, 206);
  const stale = await ranged("bytes=0-9", {
    headers: { "if-range": "Thu, 01 Jan 1970 00:00:00 GMT" },
  });
  assert.equal(stale.response.status, 200);
  // A second old, the file's entity tag is strong, so If-Range and If-Match
  // may use it (RFC 9110 §13.1.5, §13.1.1): a browser resuming a download
  // or seeking in a video sends it back.
  const etag = full.response.headers.get("etag")!;
  assert.match(etag, /^"[0-9a-z]+-[0-9a-z]+"$/);
  for (
    const [headers, status] of [
      [{ "if-range": etag }, 206],
      [{ "if-range": `W/${etag}` }, 200],
      [{ "if-range": '"other"' }, 200],
      [{ "if-match": etag }, 206],
      [{ "if-match": `W/${etag}` }, 412],
      [{ "if-none-match": `W/${etag}` }, 304], // the weak comparison
    ] as const
  ) {
    const { response } = await ranged("bytes=0-9", { headers });
    assert.equal(response.status, status, JSON.stringify(headers));
  }
  // Range is for GET only (RFC 9110 §14.2); the unit is case-insensitive.
  const head = await ranged("bytes=0-9", { method: "HEAD" });
  assert.equal(head.response.status, 200);
  assert.equal(head.response.headers.get("content-length"), `${size}`);
  assert.equal((await ranged("Bytes=0-9")).response.status, 206);
});

Deno.test("serveStatic takes a file: URL for its root, percent-encoded as import.meta.url is", async () => {
  await using tree = await fixture();
  const dir = `${tree.base}/with space ü`;
  await Deno.mkdir(dir);
  await Deno.writeTextFile(`${dir}/index.html`, "<h1>url</h1>");
  const url = new URL(`file://${encodeURI(dir)}/`);
  assert.match(url.pathname, /%20/);
  const { response, text } = await get(serveStatic(url), "/");
  assert.equal(response.status, 200);
  assert.equal(text, "<h1>url</h1>");
});

Deno.test("serveStatic rejects a root that is not a directory and an unsafe index", async () => {
  await using tree = await fixture();
  assert.throws(
    () => serveStatic(`${tree.base}/missing`),
    new TypeError(
      `Cannot serve static files: "root" must be a directory, got "${tree.base}/missing"`,
    ),
  );
  assert.throws(
    () => serveStatic(`${tree.root}/index.html`),
    { name: "TypeError" },
  );
  for (const index of ["", "../x.html", "a/b.html", ".hidden"]) {
    assert.throws(
      () => serveStatic(tree.root, { index }),
      new TypeError(
        `Cannot serve static files: "index" must be a plain file name, got ${
          JSON.stringify(index)
        }`,
      ),
    );
  }
});

Deno.test("serveStatic behind serveHttpRequest: fetch(), HEAD, 304 and raw traversal attempts", async () => {
  await using tree = await fixture();
  await using loop = new HttpLoop(serveStatic(tree.root));
  using client = Deno.createHttpClient({});
  const big = await withTimeout(
    fetch(loop.url("/big.bin"), { client }),
    DEADLINE,
    "fetch /big.bin",
  );
  assert.equal(big.headers.get("content-length"), `${BIG.length}`);
  assert.equal(big.headers.get("content-type"), "application/octet-stream");
  const bytes = new Uint8Array(await big.arrayBuffer());
  assert.equal(bytes.length, BIG.length);
  assert.ok(bytes.every((byte, i) => byte === BIG[i]));

  const head = await withTimeout(
    fetch(loop.url("/big.bin"), { client, method: "HEAD" }),
    DEADLINE,
    "fetch HEAD",
  );
  assert.equal(head.headers.get("content-length"), `${BIG.length}`);
  assert.equal(await head.text(), "");

  const cached = await withTimeout(
    fetch(loop.url("/big.bin"), {
      client,
      headers: { "if-none-match": big.headers.get("etag")! },
    }),
    DEADLINE,
    "fetch with If-None-Match",
  );
  assert.equal(cached.status, 304);
  assert.equal(await cached.text(), "");
  assert.equal(loop.connections, 1);

  // Raw targets that URL-aware clients would have normalized away.
  using raw = await RawHttp.connect(loop.addr);
  for (
    const target of [
      "/../outside/secret.txt",
      "/%2e%2e/outside/secret.txt",
      "/sub/../../outside/secret.txt",
      "/..%2f..%2foutside%2fsecret.txt",
    ]
  ) {
    await raw.write(request(`GET ${target} HTTP/1.1`, [["Host", "x"]]));
    const response = await raw.readResponse();
    assert.equal(response.status, 404, target);
    assert.doesNotMatch(response.text, /secret/);
  }
  await raw.write(request("GET /sub HTTP/1.1", [["Host", "x"]]));
  const redirect = await raw.readResponse();
  assert.equal(redirect.statusLine, "HTTP/1.1 301 Moved Permanently");
  assert.equal(redirect.headers.get("location"), "/sub/");
});
