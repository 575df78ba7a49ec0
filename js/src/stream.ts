/**
 * One streaming attempt: a `fetch` of the hub's stream endpoint, read as text/event-stream until it
 * ends. Reading with `fetch` rather than the native `EventSource` is what lets the client see the
 * status code (204, 401, 403, 502, 503...) and decide for itself whether and when to try again.
 *
 * It owns one HTTP response and reports what happened on it; it never retries, never decides
 * policy, and never delivers an event twice on its own stream.
 */

import { SseParser, type SseMessage } from "./sse.js";

/** What the hub says in its `connected` event. */
export interface ConnectedInfo {
  /** The channels this connection hears (closed ones dropped). */
  channels: string[];
  /** The connection's client id (given with `clientId`, or the hub's `c_…`). */
  clientId: string;
  /** True when the hub found the `lastEventId` it was sent and replays what followed it. */
  resumed: boolean;
}

/** How an attempt ended. */
export type StreamOutcome =
  /** The response was not a stream: `status` (and the hub's error body, when it sent one). */
  | { kind: "status"; status: number; code?: string; message?: string }
  /** The request or the read failed (network, DNS, CORS, a cut connection) before `connected`. */
  | { kind: "network"; message: string }
  /** The response started but said nothing within the connect timeout (a buffering proxy). */
  | { kind: "timeout" }
  /** The stream was open (its `connected` came) and then ended: the hub closed it or the network cut it. */
  | { kind: "ended" }
  /** The client stopped this attempt. */
  | { kind: "aborted" };

/** How long a stream may stay silent, in ms. */
export interface StreamTiming {
  /** Until the hub's `connected` event. */
  connectTimeoutMs: number;
  /** Between any two reads once bytes flow (heartbeats count); 0 for no limit. */
  idleTimeoutMs: number;
}

/** What an attempt tells its owner while it runs. */
export interface StreamHandlers {
  onConnected(info: ConnectedInfo, message: SseMessage): void;
  onMessage(message: SseMessage): void;
  onRetry(milliseconds: number): void;
}

/** Fields of the hub's JSON error body. */
export async function readError(response: Response): Promise<{ code?: string; message?: string }> {
  try {
    const body = await response.json();
    return { code: body?.error?.code, message: body?.error?.message };
  } catch {
    return {};
  }
}

/** One connection attempt, whichever transport reads it. */
export interface Attempt {
  /** Resolves once, with how the attempt ended. */
  readonly done: Promise<StreamOutcome>;
  /** Resolves true when `connected` arrives, false if the attempt ends first. */
  readonly opened: Promise<boolean>;
  /** True once the hub's `connected` event arrived on this attempt. */
  readonly isConnected: boolean;
  /** Stops the attempt; `done` then resolves with `aborted` (unless it had already ended). */
  abort(): void;
  /** Makes sure events of this name reach the handlers (the fetch reader hears every name anyway). */
  listenTo(type: string): void;
}

/** Parses the `connected` event's JSON, tolerating a hub that sends something else. */
export function parseConnected(data: string): ConnectedInfo {
  try {
    return JSON.parse(data);
  } catch {
    return { channels: [], clientId: "", resumed: false };
  }
}

/** A stream read with `fetch`: sees status codes and every event name. */
export class StreamAttempt implements Attempt {
  readonly done: Promise<StreamOutcome>;
  readonly opened: Promise<boolean>;
  private resolveOpened: (value: boolean) => void = () => {};
  isConnected = false;
  private readonly controller = new AbortController();
  private abortedOnPurpose = false;

  constructor(url: string, init: RequestInit, timing: StreamTiming, handlers: StreamHandlers, fetchImpl: typeof fetch) {
    this.opened = new Promise((resolve) => {
      this.resolveOpened = resolve;
    });
    this.done = this.run(url, init, timing, handlers, fetchImpl);
  }

  abort(): void {
    this.abortedOnPurpose = true;
    this.controller.abort();
  }

  listenTo(): void {}

  private async run(
    url: string,
    init: RequestInit,
    { connectTimeoutMs, idleTimeoutMs }: StreamTiming,
    handlers: StreamHandlers,
    fetchImpl: typeof fetch,
  ): Promise<StreamOutcome> {
    let timedOut = false;
    const timer = setTimeout(() => {
      if (!this.isConnected) {
        timedOut = true;
        this.controller.abort();
      }
    }, connectTimeoutMs);
    // A stream silent for longer than the hub's heartbeat allows is dead even if no FIN came.
    let idleTimer: ReturnType<typeof setTimeout> | undefined;
    const armIdle = () => {
      clearTimeout(idleTimer);
      if (idleTimeoutMs > 0) idleTimer = setTimeout(() => this.controller.abort(), idleTimeoutMs);
    };
    try {
      const response = await fetchImpl(url, {
        ...init,
        headers: { accept: "text/event-stream" },
        cache: "no-store",
        signal: this.controller.signal,
      });
      const type = response.headers.get("content-type") ?? "";
      if (response.status !== 200 || !type.startsWith("text/event-stream") || !response.body) {
        const error = response.status === 200 ? {} : await readError(response);
        // A 200 that is not a stream is something in between answering for the hub.
        return { kind: "status", status: response.status === 200 ? 502 : response.status, ...error };
      }
      const parser = new SseParser(
        (message) => {
          if (!this.isConnected && message.type === "connected") {
            this.isConnected = true;
            this.resolveOpened(true);
            handlers.onConnected(parseConnected(message.data), message);
            return;
          }
          if (this.isConnected) handlers.onMessage(message);
        },
        (milliseconds) => handlers.onRetry(milliseconds),
      );
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        armIdle();
        parser.push(value);
      }
      return this.isConnected ? { kind: "ended" } : { kind: "network", message: "stream ended before connected" };
    } catch (error) {
      if (this.abortedOnPurpose) return { kind: "aborted" };
      if (timedOut) return { kind: "timeout" };
      if (this.isConnected) return { kind: "ended" };
      return { kind: "network", message: String((error as Error)?.message ?? error) };
    } finally {
      clearTimeout(timer);
      clearTimeout(idleTimer);
      this.resolveOpened(false);
    }
  }
}
