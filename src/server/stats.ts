import {
  newCounters,
  PING_RTT_BUCKETS_MS,
  type SocketCounters,
} from "../socket_options.ts";
import type { TimeoutPhase } from "./serve_options.ts";

/**
 * A snapshot of a server's counters; see `server.stats()`.
 *
 * @example A one-line summary for a log
 * ```ts
 * import { serve, type ServerStats } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const summary = (s: ServerStats) =>
 *   `${s.openConnections} open, ${s.totalConnections} total, ${s.messagesReceived} in, ${s.messagesSent} out`;
 * await using server = serve({ port: 0, hostname: "127.0.0.1" }, () => {});
 * assert.equal(summary(server.stats()), "0 open, 0 total, 0 in, 0 out");
 * ```
 */
export interface ServerStats {
  /** WebSocket connections open now. */
  openConnections: number;
  /**
   * TCP (or TLS) connections open now, whatever they are doing: WebSockets,
   * handshakes still arriving, plain HTTP, and connections being refused
   * (their 503 or 429 going out). `maxConnections` counts all of these but
   * the last.
   */
  transportConnections: number;
  /** WebSocket connections accepted since the server started. */
  totalConnections: number;
  /** Messages received from all peers. */
  messagesReceived: number;
  /** Messages queued for sending to all peers. */
  messagesSent: number;
  /** Bytes read from WebSocket connections (frames, headers included). */
  bytesReceived: number;
  /** Bytes written to WebSocket connections. */
  bytesSent: number;
  /** Messages dropped by the backpressure policy. */
  backpressureDrops: number;
  /**
   * Bytes the WebSocket connections hold now: messages still arriving,
   * messages not yet taken by handlers, output not yet written; what
   * `maxBufferedBytes` bounds. With `maxBufferedBytes` set, a message
   * published to many sockets counts once while any has not written it;
   * without it (nothing is tracked then), once for each.
   */
  bufferedBytes: number;
  /**
   * Connections closed (with 1013) because together they held more than
   * `maxBufferedBytes`.
   */
  budgetCloses: number;
  /** How many connections ended with each close code. */
  closeCodes: Record<number, number>;
  /**
   * How many handshakes were rejected with each HTTP status, connections
   * refused over `maxConnections` (503) and `maxConnectionsPerAddress`
   * (429) included (also those closed without an answer because many
   * refusals were going out already). So are requests whose head could not
   * be parsed (400, 414, 431), before anything tells a WebSocket request
   * from plain HTTP, and, without a `fetch` handler, every plain request
   * (426, 405, ...).
   * None of these is in `httpRequests`.
   */
  handshakeRejections: Record<number, number>;
  /**
   * Plain HTTP requests answered by the `fetch` handler (`serveStatic`
   * included), by the status of the response: the handler's, the 500 that
   * stands in for a handler that failed, or the server's own answer to a
   * request it refused before the handler (400, 413, 417, 501, 505).
   * Counted as the response head goes out. Keys are three-digit statuses,
   * 200-599 (a `Response` can have no other). Requests left unanswered
   * (the client gone first with a reset, `requestTimeout`, shutdown) are
   * not counted; a client that only closed its side (which TCP cannot tell
   * from one that waits) takes the response, and is. Handshake rejections
   * are in `handshakeRejections`, never here.
   */
  httpRequests: Record<number, number>;
  /**
   * Plain HTTP requests whose `fetch` handler failed: it threw or returned
   * something not a `Response` (answered with 500, also counted in
   * `httpRequests`), or its response body failed (the response cut short).
   */
  httpHandlerErrors: number;
  /**
   * How many connections a deadline closed, by phase: before the WebSocket
   * opened, those of `TimeoutPhase` (`handshake`, `request`,
   * `response`, `upgrade-hook`, `rejection`); after, `idle`
   * (`idleTimeout`, 1001), `message` (`messageTimeout`, 1008), `pong` (no
   * pong within `pongTimeout`, 1011) and `write` (the peer took nothing we
   * wrote for `pingInterval + pongTimeout`, 1011 "peer stopped reading").
   * Phases that never fired are left out.
   */
  timeouts: Partial<
    Record<TimeoutPhase | "idle" | "message" | "pong" | "write", number>
  >;
  /**
   * Connections that failed before their request head: resets (also while
   * waiting to be accepted), TLS failures. A TLS client that leaves without
   * a `close_notify` alert, as browsers do, has not failed.
   */
  connectionErrors: number;
  /** Ping round-trip times in milliseconds. */
  pingRtt: PingRttStats;
}

/**
 * Ping round-trip times in milliseconds; see `ServerStats.pingRtt`.
 *
 * @example The share of round trips under 100 ms
 * ```ts
 * import type { PingRttStats } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * // The buckets are cumulative: each counts the round trips up to its bound.
 * const under100ms = ({ count, buckets }: PingRttStats) =>
 *   count === 0 ? 1 : buckets.find(({ le }) => le === 100)!.count / count;
 * // Part of what server.stats().pingRtt might say.
 * const rtt: PingRttStats = {
 *   count: 4, mean: 60, max: 150, sum: 240,
 *   buckets: [{ le: 50, count: 1 }, { le: 100, count: 3 }, { le: 250, count: 4 }],
 * };
 * assert.equal(under100ms(rtt), 0.75);
 * ```
 */
export interface PingRttStats {
  /** Pings answered by a pong. */
  count: number;
  /** The mean round trip (0 before the first). */
  mean: number;
  /** The longest round trip (0 before the first). */
  max: number;
  /** The sum of all round trips, for a mean over any interval. */
  sum: number;
  /**
   * The round trips as a histogram with fixed bounds, 1 ms to 10 s
   * (1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000):
   * `count` is how many took at most `le` milliseconds (cumulative, as in
   * Prometheus). The last, unbounded bucket is `count` above.
   */
  buckets: { le: number; count: number }[];
}

/** Collects a server's counters; sockets add to `counters` directly. */
export class StatsCollector {
  /** Shared by every socket of the server. */
  readonly counters: SocketCounters = newCounters();
  /** WebSocket connections accepted. */
  totalConnections = 0;
  readonly #closeCodes: Record<number, number> = {};
  readonly #rejections: Record<number, number> = {};
  readonly #timeouts: Record<string, number> = {};
  /** Connections that failed before their request head. */
  connectionErrors = 0;
  readonly #httpRequests: Record<number, number> = {};
  /** Plain HTTP requests whose handler failed. */
  httpHandlerErrors = 0;
  /** Connections closed for the memory budget. */
  budgetCloses = 0;

  /**
   * Counts a connection's close code.
   *
   * @param code The code from `socket.closed`.
   */
  countClose(code: number): void {
    this.#closeCodes[code] = (this.#closeCodes[code] ?? 0) + 1;
  }

  /**
   * Counts a rejected handshake.
   *
   * @param status The HTTP status it got.
   */
  countRejection(status: number): void {
    this.#rejections[status] = (this.#rejections[status] ?? 0) + 1;
  }

  /**
   * Counts a plain HTTP request answered.
   *
   * @param status The status of its response.
   */
  countHttpResponse(status: number): void {
    this.#httpRequests[status] = (this.#httpRequests[status] ?? 0) + 1;
  }

  /**
   * Counts a connection closed by a deadline.
   *
   * @param phase What it was doing.
   */
  countTimeout(phase: string): void {
    this.#timeouts[phase] = (this.#timeouts[phase] ?? 0) + 1;
  }

  /** The server's deadlines, then the sockets' own (those that fired). */
  #allTimeouts(): ServerStats["timeouts"] {
    const timeouts: Record<string, number> = { ...this.#timeouts };
    for (const [phase, count] of Object.entries(this.counters.timeouts!)) {
      if (count > 0) timeouts[phase] = count;
    }
    return timeouts;
  }

  /**
   * Takes a snapshot.
   *
   * @param openConnections WebSocket connections open now.
   * @param transportConnections TCP connections open now.
   * @param bufferedBytes What the WebSocket connections hold now.
   * @returns The counters.
   */
  snapshot(
    openConnections: number,
    transportConnections: number,
    bufferedBytes: number,
  ): ServerStats {
    const c = this.counters;
    return {
      openConnections,
      transportConnections,
      totalConnections: this.totalConnections,
      messagesReceived: c.messagesIn,
      messagesSent: c.messagesOut,
      bytesReceived: c.bytesIn,
      bytesSent: c.bytesOut,
      backpressureDrops: c.backpressureDrops,
      bufferedBytes,
      budgetCloses: this.budgetCloses,
      closeCodes: { ...this.#closeCodes },
      handshakeRejections: { ...this.#rejections },
      httpRequests: { ...this.#httpRequests },
      httpHandlerErrors: this.httpHandlerErrors,
      timeouts: this.#allTimeouts(),
      connectionErrors: this.connectionErrors,
      pingRtt: {
        count: c.rttCount,
        mean: c.rttCount === 0 ? 0 : c.rttSum / c.rttCount,
        max: c.rttMax,
        sum: c.rttSum,
        buckets: cumulative(c.rttBuckets ?? []),
      },
    };
  }
}

/** The round trips at most each bound took, from the per-bucket counts. */
function cumulative(counts: number[]): { le: number; count: number }[] {
  let total = 0;
  return PING_RTT_BUCKETS_MS.map((le, i) => {
    total += counts[i] ?? 0;
    return { le, count: total };
  });
}
