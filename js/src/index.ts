/**
 * herald-hub-client: the browser (and Node 18+) client for a Herald hub.
 *
 * Layout: `client` (the connection policy and delivery), `types` (its options and reports),
 * `stream` (one fetch-read stream attempt), `sse` (the text/event-stream parser), `backoff`
 * (reconnect delays), `emitter` (listener lists). Framework bindings live in the separate entry
 * points `herald-hub-client/react` and `herald-hub-client/vue`; this one imports no framework.
 */

export { HeraldClient } from "./client.js";
export type { ConnectedInfo } from "./stream.js";
export type {
  ClosedReason,
  ConnectionState,
  FallbackOptions,
  HeraldError,
  HeraldEvent,
  HeraldOptions,
  TokenRequest,
} from "./types.js";
export { backoffDelay, type BackoffOptions } from "./backoff.js";
export { SseParser, type SseMessage } from "./sse.js";
