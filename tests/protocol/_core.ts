/**
 * The sans-I/O protocol core, as `mod.ts` exports it, without the socket and
 * server layers: the core tests then type-check and run on their own.
 *
 * @module
 */
export * from "../../src/protocol/errors.ts";
export * from "../../src/protocol/mask.ts";
export * from "../../src/protocol/frame_parser.ts";
export * from "../../src/protocol/frame_writer.ts";
export * from "../../src/protocol/message_assembler.ts";
export * from "../../src/protocol/close_payload.ts";
export * from "../../src/protocol/connection.ts";
export * from "../../src/protocol/http_request_parser.ts";
export * from "../../src/protocol/upgrade_request.ts";
export * from "../../src/protocol/handshake_response.ts";
export * from "../../src/protocol/deflate_codec.ts";
