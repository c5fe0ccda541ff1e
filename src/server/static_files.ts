import { parseHttpDate } from "./_http_date.ts";
import { trimOws } from "../protocol/_headers.ts";
import { checkOptionNames } from "../_unknown_options.ts";

/**
 * Options of {@linkcode serveStatic}.
 *
 * @example A site whose directories serve home.html
 * ```ts
 * import { serveStatic, type ServeStaticOptions } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const root = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${root}/home.html`, "<h1>home</h1>");
 * const options: ServeStaticOptions = { index: "home.html" };
 * const response = await serveStatic(root, options)(new Request("http://localhost/"));
 * assert.equal(await response.text(), "<h1>home</h1>");
 * await Deno.remove(root, { recursive: true });
 * ```
 */
export interface ServeStaticOptions {
  /**
   * The file served for a directory.
   * @default {"index.html"}
   */
  index?: string;
}

const STATIC_OPTIONS: ReadonlySet<string> = new Set(["index"]);

/**
 * `Content-Type` by file extension; anything else is
 * `application/octet-stream`.
 */
const CONTENT_TYPES: ReadonlyMap<string, string> = new Map(Object.entries({
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
  woff: "font/woff",
  woff2: "font/woff2",
  ttf: "font/ttf",
  otf: "font/otf",
  avif: "image/avif",
  xml: "application/xml",
  pdf: "application/pdf",
  csv: "text/csv; charset=utf-8",
  vtt: "text/vtt; charset=utf-8",
  mp4: "video/mp4",
  webm: "video/webm",
  ogv: "video/ogg",
  mp3: "audio/mpeg",
  m4a: "audio/mp4",
  ogg: "audio/ogg",
  oga: "audio/ogg",
  opus: "audio/ogg",
  wav: "audio/wav",
  flac: "audio/flac",
}));
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
 *   that resolves (through symlinks) outside `root` is 403, and so is a
 *   file swapped for a symlink while it is being opened (a directory on the
 *   path swapped back and forth can still race it: see SECURITY.md); one
 *   renamed over the file being opened (a deploy) is looked up again.
 * - A directory serves its `index` file; a directory URL without its
 *   trailing slash is redirected (301) to it, so relative links work.
 * - Files stream from disk with `Content-Type` (by the extension of the
 *   name asked for), `Content-Length`, `Last-Modified` (now for a file
 *   dated in the future, RFC 9110 §8.8.2.1) and an `ETag` of its size and
 *   modification time (strong once the file is a second old, weak before:
 *   two changes within a second could share it);
 *   `If-None-Match` / `If-Modified-Since` give 304, `If-Match` /
 *   `If-Unmodified-Since` that fail 412 (RFC 9110 §13). A file grown while
 *   it is sent is cut at the length announced.
 * - A single byte range on a `GET` (`Range: bytes=0-99`, `100-`, `-100`)
 *   gives 206 with `Content-Range`, one past the end 416 (RFC 9110 §14):
 *   downloads resume and media seeks. Several ranges, or an `If-Range`
 *   that is neither the file's strong `ETag` nor its `Last-Modified` (at
 *   least a second old), get the whole file.
 * - Missing files, and things that are not regular files, are 404.
 *
 * @param root The directory to serve, a path or a `file:` URL (such as
 * `new URL("./www", import.meta.url)`, whose `pathname` would keep its
 * percent-encoding); it must exist.
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
  root: string | URL,
  options: ServeStaticOptions = {},
): (request: Request) => Promise<Response> {
  checkOptionNames("serve static files", STATIC_OPTIONS, options);
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
        JSON.stringify(String(root))
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
    // A file replaced while it is opened (renamed over by a deploy) is
    // looked up again; a symlink swapped in keeps failing the check.
    for (let attempt = 1;; attempt++) {
      const found = await find(url, segments);
      if (found instanceof Response) return found;
      let file: Deno.FsFile;
      try {
        file = await Deno.open(found.path, { read: true });
      } catch (error) {
        return failure(error);
      }
      // From here the file is open: `file` is closed on every way out but
      // the body, which closes it.
      let body: ReadableStream<Uint8Array> | null = null;
      try {
        // What was checked may have been swapped for a symlink to elsewhere
        // before the open: the file opened must be the one the path leads
        // to inside the root now, itself, not through a symlink put there
        // since (lstat).
        const info = await file.stat();
        const now = await Deno.realPath(found.path);
        if (!inside(now)) return text(403, "Forbidden");
        if (!sameFile(info, await Deno.lstat(now))) {
          if (attempt < 3) continue;
          return text(403, "Forbidden");
        }
        if (!info.isFile) return text(404, "Not Found");
        // By the name asked for: a symlink's target may have none.
        const plan = planResponse(request, found.name, info);
        if (plan instanceof Response) return plan;
        if (request.method === "GET") {
          // No more than announced, though the file may grow meanwhile.
          body = fileSlice(file, plan.start, plan.length);
        }
        return new Response(body, plan);
      } catch (error) {
        return failure(error);
      } finally {
        if (body === null) file.close();
      }
    }
  };

  /**
   * The regular file a URL names, resolved through symlinks, with the name
   * it was asked by (for its type); or the response when it is not one.
   */
  async function find(
    url: URL,
    segments: string[],
  ): Promise<{ path: string; name: string } | Response> {
    let name = segments.length === 0
      ? realRoot
      : realRoot + SEPARATOR + segments.join(SEPARATOR);
    let path: string;
    let info: Deno.FileInfo;
    try {
      path = await Deno.realPath(name);
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
        name = index;
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
    // Not opened otherwise: opening a named pipe waits for a writer.
    if (!info.isFile) return text(404, "Not Found");
    return { path, name };
  }
}

/** A 200 or 206 for a regular file: its headers, and the bytes to send. */
interface FilePlan {
  status: 200 | 206;
  headers: Headers;
  start: number;
  length: number;
}

/**
 * What to answer for a regular file: a {@linkcode FilePlan}, or a whole
 * response (304, 412, 416).
 */
function planResponse(
  request: Request,
  name: string,
  info: Deno.FileInfo,
): FilePlan | Response {
  const headers = new Headers();
  const etag = entityTag(info);
  if (etag !== null) headers.set("etag", etag);
  // "MUST NOT generate a Last-Modified date that is later than the server's
  // time of message origination" (RFC 9110 §8.8.2.1): a file dated in the
  // future (clock skew, an unpacked archive) is dated now.
  const mtime = info.mtime === null
    ? null
    : new Date(Math.min(info.mtime.getTime(), Date.now()));
  if (mtime !== null) headers.set("last-modified", mtime.toUTCString());
  if (!preconditionsHold(request.headers, etag, mtime)) {
    return text(412, "Precondition Failed");
  }
  // RFC 9110 §15.4.5: a 304 carries the validators, not the metadata.
  if (isNotModified(request.headers, etag, mtime)) {
    return new Response(null, { status: 304, headers });
  }
  headers.set("content-type", contentType(name));
  headers.set("x-content-type-options", "nosniff");
  headers.set("accept-ranges", "bytes");
  // RFC 9110 §14.2: Range is for GET only.
  const range = request.method === "GET"
    ? requestedRange(request.headers, info.size, etag, mtime)
    : null;
  if (range === "unsatisfiable") {
    return text(416, "Range Not Satisfiable", {
      "content-range": `bytes */${info.size}`,
    });
  }
  const [start, end] = range ?? [0, info.size - 1];
  const length = Math.max(0, end - start + 1);
  headers.set("content-length", `${length}`);
  if (range !== null) {
    headers.set("content-range", `bytes ${start}-${end}/${info.size}`);
  }
  return { status: range === null ? 200 : 206, headers, start, length };
}

/** Whether two stats are of one file (where the platform tells). */
function sameFile(a: Deno.FileInfo, b: Deno.FileInfo): boolean {
  return a.dev === b.dev && a.ino === b.ino;
}

/**
 * The one byte range asked for, as [first, last] within the file; `null`
 * for the whole file (no `Range`, several ranges, a stale `If-Range`,
 * something that is not a byte range); `"unsatisfiable"` for one that
 * starts past the end (RFC 9110 §14.1.2, §15.5.17).
 */
function requestedRange(
  headers: Headers,
  size: number,
  etag: string | null,
  mtime: Date | null,
): [number, number] | "unsatisfiable" | null {
  const value = headers.get("range");
  if (value === null || size === 0) return null;
  // (Headers strip SP and HTAB already; trim() would also take U+00A0.)
  const ifRange = headers.get("if-range") ?? null;
  // RFC 9110 §13.1.5: an entity tag must be the file's, strong; a date
  // must be its Last-Modified exactly, and that at least a second old (a
  // strong validator: two changes within one second would share it).
  if (
    ifRange !== null &&
    (ifRange.startsWith('"') || ifRange.startsWith("W/")
      ? !isStrong(etag) || ifRange !== etag
      : mtime === null || Date.now() - mtime.getTime() < 1000 ||
        parseHttpDate(ifRange) !== wholeSeconds(mtime))
  ) return null;
  const match = /^bytes=(\d*)-(\d*)$/i.exec(value);
  if (match === null || (match[1] === "" && match[2] === "")) return null;
  if (match[1] === "") {
    const suffix = Number(match[2]);
    if (suffix === 0) return "unsatisfiable";
    return [Math.max(0, size - suffix), size - 1];
  }
  const first = Number(match[1]);
  const last = match[2] === "" ? size - 1 : Number(match[2]);
  if (match[2] !== "" && last < first) return null; // invalid: ignored
  if (first >= size) return "unsatisfiable";
  return [first, Math.min(last, size - 1)];
}

/** `length` bytes of `file` from `start`; the file is closed at the end. */
function fileSlice(
  file: Deno.FsFile,
  start: number,
  length: number,
): ReadableStream<Uint8Array> {
  let left = length;
  let open = true;
  const close = () => {
    if (open) file.close();
    open = false;
  };
  // A failing seek or read errors the stream, which is then not cancelled.
  const closing = <T>(step: Promise<T>): Promise<T> =>
    step.catch((error) => {
      close();
      throw error;
    });
  return new ReadableStream({
    async start() {
      await closing(file.seek(start, Deno.SeekMode.Start));
    },
    async pull(controller) {
      const buffer = new Uint8Array(Math.min(64 * 1024, left));
      const n = await closing(file.read(buffer));
      if (n === null) {
        // The file shrank: the body ends short of its Content-Length.
        close();
        controller.close();
        return;
      }
      controller.enqueue(buffer.subarray(0, n));
      left -= n;
      if (left === 0) {
        close();
        controller.close();
      }
    },
    cancel: close,
  });
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

/**
 * A file's entity tag, from its size and modification time: strong once it
 * is a second old, weak before (two changes within a second could share
 * it), and while its time is in the future (a clock ahead of ours, whose
 * next write could share it too); `null` without a modification time.
 */
function entityTag(info: Deno.FileInfo): string | null {
  if (info.mtime === null) return null;
  const mtime = info.mtime.getTime();
  const tag = `"${info.size.toString(36)}-${mtime.toString(36)}"`;
  return Date.now() - mtime >= 1000 ? tag : `W/${tag}`;
}

function isStrong(etag: string | null): etag is string {
  return etag !== null && !etag.startsWith("W/");
}

/**
 * RFC 9110 §13.1.1, §13.1.4: `If-Match` with the strong comparison (a weak
 * tag never matches; `*` matches any file), else `If-Unmodified-Since`
 * (ignored when not an HTTP-date). Evaluated before `If-None-Match` and
 * `Range` (§13.2.2).
 */
function preconditionsHold(
  headers: Headers,
  etag: string | null,
  mtime: Date | null,
): boolean {
  const ifMatch = headers.get("if-match");
  if (ifMatch !== null) return listMatches(ifMatch, etag, "strong");
  const ifUnmodifiedSince = headers.get("if-unmodified-since");
  if (ifUnmodifiedSince === null || mtime === null) return true;
  const since = parseHttpDate(ifUnmodifiedSince);
  return since === null || wholeSeconds(mtime) <= since;
}

/** RFC 9110 §13.1.2-13.1.3, with the weak comparison `If-None-Match` uses. */
function isNotModified(
  headers: Headers,
  etag: string | null,
  mtime: Date | null,
): boolean {
  const ifNoneMatch = headers.get("if-none-match");
  if (ifNoneMatch !== null) {
    return etag !== null && listMatches(ifNoneMatch, etag, "weak");
  }
  const ifModifiedSince = headers.get("if-modified-since");
  if (ifModifiedSince === null || mtime === null) return false;
  // Not an HTTP-date (a list of them included): ignored (RFC 9110 §13.1.3).
  const since = parseHttpDate(ifModifiedSince);
  return since !== null && wholeSeconds(mtime) <= since;
}

/**
 * Whether an `If-Match` or `If-None-Match` list holds `*` or `etag`, by the
 * strong comparison (both strong and equal) or the weak one (equal once
 * `W/` is dropped) (RFC 9110 §8.8.3.2).
 */
function listMatches(
  list: string,
  etag: string | null,
  comparison: "strong" | "weak",
): boolean {
  const opaque = (tag: string) => tag.replace(/^W\//, "");
  return list.split(",").some((item) => {
    const tag = trimOws(item);
    if (tag === "*") return true;
    if (etag === null) return false;
    return comparison === "strong"
      ? isStrong(etag) && tag === etag
      : opaque(tag) === opaque(etag);
  });
}

/** A time as an HTTP date holds it: in whole seconds (milliseconds since the epoch). */
function wholeSeconds(time: Date): number {
  return Math.floor(time.getTime() / 1000) * 1000;
}

function contentType(path: string): string {
  const name = path.slice(path.lastIndexOf(SEPARATOR) + 1);
  const dot = name.lastIndexOf(".");
  if (dot <= 0) return FALLBACK_TYPE;
  return CONTENT_TYPES.get(name.slice(dot + 1).toLowerCase()) ?? FALLBACK_TYPE;
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
