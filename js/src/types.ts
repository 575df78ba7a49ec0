/**
 * The client's public vocabulary: its options, its states, the events and errors it reports.
 * Types only; no behaviour lives here.
 */

import type { BackoffOptions } from "./backoff.js";

/** What the application can render. */
export type ConnectionState = "connecting" | "open" | "reconnecting" | "polling" | "closed";

/** An event delivered to the application. */
export interface HeraldEvent<T = unknown> {
  /** The event's id in the hub's history (also the resume cursor). */
  id: string;
  /** The event name (`message` when the publisher gave none). */
  type: string;
  /** The payload: parsed JSON when the text is JSON, the text itself otherwise. */
  data: T;
  /** The payload as the hub sent it (for a polled event: JSON text, or the string itself). */
  raw: string;
  /** The channel, when the hub said it (events fetched by polling); streams do not name it. */
  channel?: string;
  /** How the event arrived. */
  via: "stream" | "poll";
}

/** Why the client stopped. */
export interface ClosedReason {
  /**
   * `closed`: the application called `close()`. `ended`: the hub answered 204 (every channel was
   * closed for good). `unauthorized`: 401 or 403, also after a fresh token. `rejected`: another 4xx
   * that retrying cannot fix (a bad channel name, too many channels).
   */
  kind: "closed" | "ended" | "unauthorized" | "rejected";
  status?: number;
  code?: string;
  message?: string;
}

/** A failed attempt, reported whether or not the client tries again. */
export interface HeraldError {
  /** HTTP status, or 0 for a network failure or a stream that said nothing in time. */
  status: number;
  code?: string;
  message?: string;
  transport: "stream" | "poll";
  /** True when the client will try again by itself. */
  willRetry: boolean;
}

/** Why the token callback is called. */
export interface TokenRequest {
  /** `connect` before every (re)connection and poll; `unauthorized` after a 401/403: mint a new one. */
  reason: "connect" | "unauthorized";
}

/** Settings of the polling fallback. */
export interface FallbackOptions {
  /** Failed stream attempts in a row (errors, or no `connected` in time) before polling. Default 2. */
  afterFailures?: number;
  /** Wait between polls when the last page was not full, in ms. Default 2000. */
  pollIntervalMs?: number;
  /** While polling, how often to try a stream again, in ms. Default 30 000. */
  streamRetryMs?: number;
}

export interface HeraldOptions {
  /** The hub's base URL, e.g. `https://events.example.com`; empty or omitted for the page's origin. */
  url?: string;
  /** The channels to hear at first. Change them later with `subscribe`, `unsubscribe`, `setChannels`. */
  channels?: string[];
  /** Names the connection (`?clientId=`), so events sent to this client id reach it across reconnects. */
  clientId?: string;
  /** Resume after this id on the first connection (e.g. one kept in `sessionStorage`). */
  lastEventId?: string;
  /** Returns the token sent as `?token=`; called before every connection and every poll. */
  token?: (request: TokenRequest) => string | null | undefined | Promise<string | null | undefined>;
  /** Send cookies cross-origin (the hub's `herald_token` cookie). Default false. */
  withCredentials?: boolean;
  /** Reconnect delays after failures. Defaults: 1 s first, doubling to 30 s, with jitter. */
  backoff?: BackoffOptions;
  /** A stream that does not say `connected` within this many ms is taken as held by a proxy. Default 10 000. */
  connectTimeoutMs?: number;
  /**
   * An open stream that brings no byte (event or heartbeat) for this many ms is taken as dead (a
   * network that dropped it silently) and replaced, resuming. Keep it above twice the hub's
   * heartbeat interval (15 s by default); 0 turns it off. Default 45 000. The `fetch` reader only.
   */
  idleTimeoutMs?: number;
  /** Poll when streams fail; `false` turns it off. Default on. */
  fallback?: boolean | FallbackOptions;
  /** Overlap of the old and new connection when channels change, in ms. Default 1000. */
  switchOverlapMs?: number;
  /**
   * How streams are read: `fetch` (status codes, every event name), `eventsource` (the browser's
   * own reader; no status codes, only the event names listened to), or `auto` (default): `fetch`
   * wherever response bodies stream, `EventSource` elsewhere.
   */
  transport?: "auto" | "fetch" | "eventsource";
  /** Start at once (default). `false` waits for `connect()`. */
  autoConnect?: boolean;
  /** The `fetch` to use. Default: the global one. */
  fetch?: typeof fetch;
}
