/**
 * Duplex: a fast, strictly RFC 6455 conformant WebSocket server for Deno,
 * built on a sans-I/O protocol core.
 *
 * @example Echo server
 * ```ts
 * import { serve } from "@duplex/ws";
 *
 * const server = serve({ port: 0, onListen() {} }, async (socket) => {
 *   for await (const message of socket) await socket.send(message);
 * });
 * await server.shutdown();
 * ```
 *
 * @module
 */
export * from "./src/protocol/errors.ts";
export * from "./src/protocol/mask.ts";
export * from "./src/protocol/frame_parser.ts";
export * from "./src/protocol/frame_writer.ts";
export * from "./src/protocol/message_assembler.ts";
export * from "./src/protocol/close_payload.ts";
export * from "./src/protocol/connection.ts";
export * from "./src/protocol/http_request_parser.ts";
export {
  type UpgradeRequest,
  validateUpgradeRequest,
} from "./src/protocol/upgrade_request.ts";
export * from "./src/protocol/handshake_response.ts";
export * from "./src/protocol/prepared_message.ts";
export {
  type ClientDeflateOptions,
  type ExtensionOffer,
  negotiatePerMessageDeflate,
  parseExtensions,
  type PerMessageDeflateOptions,
  type PerMessageDeflateParams,
} from "./src/protocol/permessage_deflate.ts";
export * from "./src/protocol/deflate_codec.ts";
export * from "./src/socket.ts";
export * from "./src/close_info.ts";
export type {
  BackpressurePolicy,
  CloseOptions,
  IncomingStream,
  OutgoingMessage,
  SendOptions,
  SendStatus,
  SocketCounters,
  SocketOptions,
  SocketRequestInfo,
  SocketState,
  SocketTimeouts,
  Transport,
} from "./src/socket_options.ts";
export * from "./src/server/server.ts";
export type {
  DataHookRequirement,
  ServeOptions,
  ServerLogEvent,
  SocketHandler,
  TimeoutPhase,
  UpgradeAccept,
  UpgradeHook,
  UpgradeHookAccept,
  UpgradeInfo,
} from "./src/server/serve_options.ts";
export { renderPrometheus } from "./src/server/prometheus.ts";
export type { PingRttStats, ServerStats } from "./src/server/stats.ts";
export * from "./src/server/http_exchange.ts";
export * from "./src/server/http_request_error.ts";
export * from "./src/server/static_files.ts";
export * from "./src/protocol/client_handshake.ts";
export * from "./src/client/connect.ts";
export * from "./src/client/reconnecting.ts";
export type * from "./src/pubsub/adapter.ts";
export type {
  PublishOptions,
  Subscriber,
  Topics,
} from "./src/pubsub/topics.ts";
export * from "./src/pubsub/broadcast_channel_adapter.ts";
export type { Ticker } from "./src/ticker.ts";
export type { Slot } from "./src/_slot_list.ts";
export type { BudgetAccount, BufferBudget } from "./src/_buffer_budget.ts";
