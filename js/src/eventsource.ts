/**
 * One streaming attempt read by the browser's native `EventSource`, for browsers without
 * streaming `fetch` bodies, or when the application asks for it (`transport: "eventsource"`).
 *
 * It owns one `EventSource` and closes it at the first error, so that reconnecting stays the
 * client's decision (with a fresh URL: token, channels, cursor). It cannot see status codes: every
 * failure before `connected` is reported as a network failure, and the client's polling fallback
 * is what then learns the status. `EventSource` hands a named event only to a listener of that
 * name, so it hears `message`, `connected` and the names given to `listenTo`.
 */

import type { SseMessage } from "./sse.js";
import { parseConnected, type Attempt, type StreamHandlers, type StreamOutcome } from "./stream.js";

export class EventSourceAttempt implements Attempt {
  readonly done: Promise<StreamOutcome>;
  readonly opened: Promise<boolean>;
  isConnected = false;
  private readonly source: EventSource;
  private readonly heard = new Set<string>();
  private finish: (outcome: StreamOutcome) => void = () => {};
  private resolveOpened: (value: boolean) => void = () => {};

  constructor(
    url: string,
    withCredentials: boolean,
    connectTimeoutMs: number,
    private readonly handlers: StreamHandlers,
    types: Iterable<string>,
  ) {
    this.opened = new Promise((resolve) => {
      this.resolveOpened = resolve;
    });
    this.done = new Promise((resolve) => {
      this.finish = (outcome) => {
        this.source.close();
        clearTimeout(timer);
        this.resolveOpened(false);
        resolve(outcome);
      };
    });
    this.source = new EventSource(url, { withCredentials });
    const timer = setTimeout(() => {
      if (!this.isConnected) this.finish({ kind: "timeout" });
    }, connectTimeoutMs);
    this.source.addEventListener("error", () =>
      this.finish(
        this.isConnected
          ? { kind: "ended" }
          : { kind: "network", message: "EventSource failed (its status is not shown)" },
      ),
    );
    for (const type of ["connected", "message", ...types]) this.listenTo(type);
  }

  abort(): void {
    this.finish({ kind: "aborted" });
  }

  listenTo(type: string): void {
    if (this.heard.has(type) || type === "*") return;
    this.heard.add(type);
    this.source.addEventListener(type, (event) => {
      const { data, lastEventId } = event as MessageEvent<string>;
      const message: SseMessage = { type, data, lastEventId, hasId: lastEventId !== "" };
      if (!this.isConnected && type === "connected") {
        this.isConnected = true;
        this.resolveOpened(true);
        this.handlers.onConnected(parseConnected(data), message);
      } else if (this.isConnected) {
        this.handlers.onMessage(message);
      }
    });
  }
}
