import { parseHttpDate } from "./_http_date.ts";

/** Options of {@linkcode serveStatic}. */
export interface ServeStaticOptions {
  /**
   * The file served for a directory.
   * @default {"index.html"}
   */
  index?: string;
}

/**
 * `Content-Type` by file extension; anything else is
 * `application/octet-stream`.
 */
const CONTENT_TYPES: Readonly<Record<string, string>> = {
  html: "text/html; charset=utf-8",
  htm: "text/html; charset=utf-8",
  css: "text/css; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  mjs: "text/javascript; charset=utf-8",
  json: "application/json; charset=utf-8",
  map: "application/json; charset=utf-8",
  txt: "text/plain; charset=utf-8",
  svg: "image/svg+xml",
  png: "image/png",
  jpg: "image/jpeg",
  jpeg: "image/jpeg",
  gif: "image/gif",
  webp: "image/webp",
  ico: "image/x-icon",
  wasm: "application/wasm",
  woff2: "font/woff2",
};
const FALLBACK_TYPE = "application/octet-stream";
const WINDOWS = Deno.build.os === "windows";
const SEPARATOR = WINDOWS ? "\\" : "/";
// Decoded segments that could leave the directory or name something else.
const UNSAFE_SEGMENT = WINDOWS ? /[\\/\0:]/ : /[\\/\0]/;

/**
 * Makes a handler that serves the files under `root`, for the `fetch`
 * option of {@linkcode serve} (or `Deno.serve`).
 *
 * - `GET` and `HEAD` only; other methods get 405 with `Allow: GET, HEAD`.
 * - The URL path is decoded segment by segment; `..`, encoded slashes or
 *   backslashes, NUL bytes and dotfiles (`.env`, `.git/`) are 404. A path
 *   that resolves (through symlinks) outside `root` is 403.
 * - A directory serves its `index` file; a directory URL without its
 *   trailing slash is redirected (301) to it, so relative links work.
 * - Files stream from disk with `Content-Type` (by extension),
 *   `Content-Length`, `Last-Modified` and a weak `ETag`;
 *   `If-None-Match` / `If-Modified-Since` give 304 (RFC 9110 §13).
 * - Missing files, and things that are not regular files, are 404.
 *
 * @param root The directory to serve; it must exist.
 * @param options The index file name.
 * @returns The request handler.
 * @throws {TypeError} When `root` is not a directory, or `index` is not a
 * plain file name.
 * @throws {Deno.errors.NotCapable} Without read permission for `root`.
 *
 * @example Serving a directory
 * ```ts
 * import { serveStatic } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const root = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${root}/index.html`, "<h1>hi</h1>");
 * const handler = serveStatic(root);
 *
 * const page = await handler(new Request("http://localhost/"));
 * assert.equal(page.status, 200);
 * assert.equal(page.headers.get("content-type"), "text/html; charset=utf-8");
 * assert.equal(await page.text(), "<h1>hi</h1>");
 *
 * const missing = await handler(new Request("http://localhost/nope.css"));
 * assert.equal(missing.status, 404);
 * await missing.body?.cancel();
 * await Deno.remove(root, { recursive: true });
 * ```
 */
export function serveStatic(
  root: string,
  options: ServeStaticOptions = {},
): (request: Request) => Promise<Response> {
  const index = options.index ?? "index.html";
  if (
    typeof index !== "string" || index === "" || index.startsWith(".") ||
    UNSAFE_SEGMENT.test(index)
  ) {
    throw new TypeError(
      `Cannot serve static files: "index" must be a plain file name, got ${
        JSON.stringify(index)
      }`,
    );
  }
  let realRoot: string;
  try {
    realRoot = Deno.realPathSync(root);
    if (!Deno.statSync(realRoot).isDirectory) {
      throw new Error("not a directory");
    }
  } catch (error) {
    if (
      error instanceof Deno.errors.PermissionDenied ||
      error instanceof Deno.errors.NotCapable
    ) throw error;
    throw new TypeError(
      `Cannot serve static files: "root" must be a directory, got ${
        JSON.stringify(root)
      }`,
    );
  }
  const prefix = realRoot.endsWith(SEPARATOR) ? realRoot : realRoot + SEPARATOR;
  // Inside the root, and no dotfile there either once symlinks are
  // resolved ("config.txt" -> ".env" is still ".env").
  const inside = (path: string): boolean =>
    path === realRoot ||
    (path.startsWith(prefix) &&
      !path.slice(prefix.length).split(SEPARATOR).some((segment) =>
        segment.startsWith(".")
      ));

  return async (request: Request): Promise<Response> => {
    if (request.method !== "GET" && request.method !== "HEAD") {
      return text(405, "Method Not Allowed", { allow: "GET, HEAD" });
    }
    const url = new URL(request.url);
    const segments = decodeSegments(url.pathname);
    if (segments === null) return text(404, "Not Found");
    let path = segments.length === 0
      ? realRoot
      : realRoot + SEPARATOR + segments.join(SEPARATOR);
    let info: Deno.FileInfo;
    try {
      path = await Deno.realPath(path);
      if (!inside(path)) return text(403, "Forbidden");
      info = await Deno.stat(path);
      if (info.isDirectory) {
        if (!url.pathname.endsWith("/")) {
          // Rebuilt from the segments: "//host" must not become a
          // protocol-relative Location.
          const pathname = url.pathname.split("/").filter((s) => s !== "")
            .join("/");
          return redirect(`/${pathname}/${url.search}`);
        }
        path = await Deno.realPath(path + SEPARATOR + index);
        if (!inside(path)) return text(403, "Forbidden");
        info = await Deno.stat(path);
      } else if (url.pathname.endsWith("/")) {
        // "/a.txt/" names a directory that is not there.
        return text(404, "Not Found");
      }
    } catch (error) {
      return failure(error);
    }
    if (!info.isFile) return text(404, "Not Found");

    const headers = new Headers();
    const etag = info.mtime === null
      ? null
      : `W/"${info.size.toString(36)}-${info.mtime.getTime().toString(36)}"`;
    if (etag !== null) headers.set("etag", etag);
    if (info.mtime !== null) {
      headers.set("last-modified", info.mtime.toUTCString());
    }
    // RFC 9110 §15.4.5: a 304 carries the validators, not the metadata.
    if (isNotModified(request.headers, etag, info.mtime)) {
      return new Response(null, { status: 304, headers });
    }
    headers.set("content-type", contentType(path));
    headers.set("x-content-type-options", "nosniff");
    headers.set("content-length", `${info.size}`);
    if (request.method === "HEAD") {
      return new Response(null, { status: 200, headers });
    }
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path, { read: true });
    } catch (error) {
      return failure(error);
    }
    // The stream closes the file when it ends or is cancelled.
    return new Response(file.readable, { status: 200, headers });
  };
}

/**
 * The decoded path segments, or `null` when one is unsafe: `.`/`..`, a
 * dotfile, an encoded separator, a NUL, or broken percent-encoding.
 */
function decodeSegments(pathname: string): string[] | null {
  const segments: string[] = [];
  for (const raw of pathname.split("/")) {
    if (raw === "") continue;
    let segment: string;
    try {
      segment = decodeURIComponent(raw);
    } catch {
      return null;
    }
    if (segment.startsWith(".") || UNSAFE_SEGMENT.test(segment)) return null;
    segments.push(segment);
  }
  return segments;
}

/** RFC 9110 §13.1.2-13.1.3, with the weak comparison `If-None-Match` uses. */
function isNotModified(
  headers: Headers,
  etag: string | null,
  mtime: Date | null,
): boolean {
  const ifNoneMatch = headers.get("if-none-match");
  if (ifNoneMatch !== null) {
    if (etag === null) return false;
    const opaque = (tag: string) => tag.trim().replace(/^W\//, "");
    return ifNoneMatch.split(",").some((tag) =>
      tag.trim() === "*" || opaque(tag) === opaque(etag)
    );
  }
  const ifModifiedSince = headers.get("if-modified-since");
  if (ifModifiedSince === null || mtime === null) return false;
  // Not an HTTP-date (a list of them included): ignored (RFC 9110 §13.1.3).
  const since = parseHttpDate(ifModifiedSince);
  // HTTP dates have whole seconds.
  return since !== null && Math.floor(mtime.getTime() / 1000) * 1000 <= since;
}

function contentType(path: string): string {
  const name = path.slice(path.lastIndexOf(SEPARATOR) + 1);
  const dot = name.lastIndexOf(".");
  if (dot <= 0) return FALLBACK_TYPE;
  return CONTENT_TYPES[name.slice(dot + 1).toLowerCase()] ?? FALLBACK_TYPE;
}

function failure(error: unknown): Response {
  if (
    error instanceof Deno.errors.PermissionDenied ||
    error instanceof Deno.errors.NotCapable
  ) {
    return text(403, "Forbidden");
  }
  if (
    error instanceof Deno.errors.NotFound ||
    error instanceof Deno.errors.NotADirectory ||
    error instanceof Deno.errors.FilesystemLoop ||
    error instanceof Deno.errors.InvalidData ||
    // A name longer than the file system allows names no file.
    (error as { code?: unknown })?.code === "ENAMETOOLONG"
  ) {
    return text(404, "Not Found");
  }
  throw error;
}

function text(
  status: number,
  message: string,
  headers: Record<string, string> = {},
): Response {
  return new Response(`${message}\n`, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", ...headers },
  });
}

function redirect(location: string): Response {
  return new Response(null, { status: 301, headers: { location } });
}
