/**
 * herald-hub-client: the browser (and Node 18+) client for a Herald hub.
 *
 * Layout: `client` (the connection policy and delivery), `stream` (one fetch-read stream attempt),
 * `sse` (the text/event-stream parser), `backoff` (reconnect delays). Framework bindings live in
 * the separate entry points `herald-hub-client/react` and `herald-hub-client/vue`; this one
 * imports no framework.
 */

export {
  HeraldClient,
  type ClosedReason,
  type ConnectedInfo,
  type ConnectionState,
  type FallbackOptions,
  type HeraldError,
  type HeraldEvent,
  type HeraldOptions,
  type TokenRequest,
} from "./client.js";
export { backoffDelay, type BackoffOptions } from "./backoff.js";
export { SseParser, type SseMessage } from "./sse.js";
