/**
 * The Herald client: one connection to a hub for any number of channels, kept alive across
 * failures, resumed without loss, and carried over the polling endpoints when streams do not work.
 *
 * It owns the connection policy (when to reconnect, when to stop, when to poll, which cursor to
 * resume from) and the delivery of each event to the application exactly once. It imports no UI
 * framework; the React and Vue entry points are thin layers over it.
 */

import { backoffDelay } from "./backoff.js";
import { Emitter, type Listener } from "./emitter.js";
import type { SseMessage } from "./sse.js";
import { EventSourceAttempt } from "./eventsource.js";
import { readError, StreamAttempt, type Attempt, type ConnectedInfo, type StreamOutcome } from "./stream.js";
import type {
  ClosedReason,
  ConnectionState,
  FallbackOptions,
  HeraldError,
  HeraldEvent,
  HeraldOptions,
  TokenRequest,
} from "./types.js";

/** Ids remembered to drop an event that two connections, or a stream and a poll, both delivered. */
const SEEN_IDS_MAX = 4096;
/** Largest page asked for while polling. */
const POLL_LIMIT = 100;
/** Page size while skipping history to reach the live edge (the hub's maximum). */
const POLL_SKIP_LIMIT = 1000;

/** A connection to a Herald hub. `Events` maps event names to their payload types. */
export class HeraldClient<Events extends Record<string, unknown> = Record<string, unknown>> {
  private readonly options: HeraldOptions;
  private readonly fallback: Required<FallbackOptions> | null;
  private channelSet: string[];
  private cursor: string;
  private stateValue: ConnectionState = "closed";
  private reasonValue: ClosedReason | null = null;
  private retryMs = 3000;
  private readonly seen = new Set<string>();
  private readonly emitter = new Emitter();
  /** Event names the application listens to (what an `EventSource` must be told to hear). */
  private readonly eventTypes = new Set<string>();
  private running = false;
  /** Bumped by `close()`: a loop from an earlier `connect()` sees it and stops. */
  private generation = 0;
  private current: Attempt | null = null;
  private replacement: Attempt | null = null;
  private switchQueued = false;
  private wake: (() => void) | null = null;
  private hadConnection = false;
  private tokenReason: TokenRequest["reason"] = "connect";

  constructor(options: HeraldOptions = {}) {
    this.options = options;
    this.channelSet = dedupe(options.channels ?? []);
    this.cursor = options.lastEventId ?? "";
    const fallback = options.fallback ?? true;
    this.fallback =
      fallback === false
        ? null
        : {
            afterFailures: 2,
            pollIntervalMs: 2000,
            streamRetryMs: 30_000,
            ...(fallback === true ? {} : fallback),
          };
    if (options.autoConnect ?? true) this.connect();
  }

  /** The connection state now. */
  get state(): ConnectionState {
    return this.stateValue;
  }

  /** Why the client stopped, once `state` is `closed`; null while it runs. */
  get closedReason(): ClosedReason | null {
    return this.reasonValue;
  }

  /** The resume cursor: the id of the last event delivered (or the one given at start). */
  get lastEventId(): string {
    return this.cursor;
  }

  /** The channels the client hears (or will hear once its connection catches up). */
  get channels(): string[] {
    return [...this.channelSet];
  }

  /** Starts (or restarts after `close()`) the connection. Does nothing while running. */
  connect(): void {
    if (this.running) return;
    this.running = true;
    this.reasonValue = null;
    const generation = ++this.generation;
    void this.run(generation);
  }

  /** Stops for good (until `connect()`): closes the stream, stops polling, state `closed`. */
  close(): void {
    this.stop({ kind: "closed" });
  }

  /** Listens to events of one name (`"*"` for every event). Returns the function that stops it. */
  on<K extends keyof Events & string>(type: K, listener: Listener<HeraldEvent<Events[K]>>): () => void;
  on(type: "*", listener: Listener<HeraldEvent>): () => void;
  on(type: string, listener: Listener<HeraldEvent<never>>): () => void {
    this.eventTypes.add(type);
    this.current?.listenTo(type);
    this.replacement?.listenTo(type);
    return this.emitter.listen(`event:${type}`, listener);
  }

  /** Listens to state changes. */
  onState(listener: Listener<ConnectionState>): () => void {
    return this.emitter.listen("state", listener);
  }

  /** Listens to each connection's `connected` event. */
  onConnected(listener: Listener<ConnectedInfo>): () => void {
    return this.emitter.listen("connected", listener);
  }

  /**
   * Listens for a lost resume: the hub could not replay from the cursor (`resumed: false`, or a
   * poll's `reset: true`), so events may have been missed. Reload your state when it fires.
   */
  onReset(listener: Listener<{ lastEventId: string }>): () => void {
    return this.emitter.listen("reset", listener);
  }

  /** Listens to failed attempts (the client may try again: see `willRetry`). */
  onError(listener: Listener<HeraldError>): () => void {
    return this.emitter.listen("error", listener);
  }

  /** Adds channels without losing an event (the connection is replaced, resuming from the cursor). */
  subscribe(...channels: string[]): void {
    this.setChannels([...this.channelSet, ...channels]);
  }

  /** Removes channels (the connection is replaced, resuming from the cursor). */
  unsubscribe(...channels: string[]): void {
    this.setChannels(this.channelSet.filter((channel) => !channels.includes(channel)));
  }

  /** Sets the whole channel list. Changes made in one tick make one new connection. */
  setChannels(channels: string[]): void {
    const next = dedupe(channels);
    if (sameList(next, this.channelSet)) return;
    this.channelSet = next;
    if (this.switchQueued) return;
    this.switchQueued = true;
    queueMicrotask(() => {
      this.switchQueued = false;
      this.switchChannels();
    });
  }

  // ---- the connection loop ----

  private async run(generation: number): Promise<void> {
    let failures = 0;
    let authRetried = false;
    let polling = false;
    this.setState(this.hadConnection ? "reconnecting" : "connecting");
    let adopted: Attempt | null = null;
    while (this.generation === generation) {
      if (polling) {
        adopted = await this.pollUntilStreamWorks(generation);
        if (this.generation !== generation) break;
        // Back to streaming: a stream works again (adopted), or no channel is left to poll.
        polling = false;
        failures = 0;
      }
      const first = adopted ?? (await this.startStream(generation));
      adopted = null;
      if (!first) break;
      let attempt: Attempt = first;
      let outcome: StreamOutcome;
      for (;;) {
        outcome = await attempt.done;
        if (this.generation !== generation) break;
        if (this.current === attempt) this.current = null;
        // A channel change put another connection in this one's place (open, or still opening):
        // follow it, and judge only how the last one in the chain ended.
        const next: Attempt | null = this.current ?? this.replacement;
        if (next && next !== attempt) {
          attempt = next;
          continue;
        }
        break;
      }
      if (this.replacement === attempt) this.replacement = null;
      if (this.generation !== generation) break;
      if (attempt.isConnected) {
        failures = 0;
        authRetried = false;
      }
      switch (outcome.kind) {
        case "aborted":
          // Restarted for new channels before it connected: go again at once.
          continue;
        case "ended":
          this.setState("reconnecting");
          await this.sleep(generation, this.retryMs / 2 + Math.random() * (this.retryMs / 2));
          continue;
        case "status": {
          const verdict = this.judge(outcome, "stream", authRetried);
          if (verdict === "stop") return;
          if (verdict === "auth-retry") {
            authRetried = true;
            continue;
          }
          break;
        }
        default:
          this.emitter.emit("error", {
            status: 0,
            message: outcome.kind === "timeout" ? "the stream said nothing in time" : outcome.message,
            transport: "stream",
            willRetry: true,
          } satisfies HeraldError);
      }
      failures++;
      // Polling needs a channel (the polling endpoints take at least one).
      if (this.fallback && this.channelSet.length > 0 && failures >= this.fallback.afterFailures) {
        polling = true;
        continue;
      }
      this.setState("reconnecting");
      await this.sleep(generation, backoffDelay(failures - 1, this.options.backoff));
    }
  }

  /** Classifies a non-stream answer: stop for good, retry at once with a new token, or back off. */
  private judge(
    answer: { status: number; code?: string; message?: string },
    transport: "stream" | "poll",
    authRetried: boolean,
  ): "stop" | "auth-retry" | "backoff" {
    const { status, code, message } = answer;
    const report = (willRetry: boolean) =>
      this.emitter.emit("error", { status, code, message, transport, willRetry } satisfies HeraldError);
    if (status === 204) {
      report(false);
      this.stop({ kind: "ended", status });
      return "stop";
    }
    if (status === 401 || status === 403) {
      if (this.options.token && !authRetried) {
        report(true);
        this.tokenReason = "unauthorized";
        return "auth-retry";
      }
      report(false);
      this.stop({ kind: "unauthorized", status, code, message });
      return "stop";
    }
    if (status >= 400 && status < 500 && status !== 408 && status !== 429) {
      report(false);
      this.stop({ kind: "rejected", status, code, message });
      return "stop";
    }
    report(true);
    return "backoff";
  }

  private stop(reason: ClosedReason): void {
    this.generation++;
    this.running = false;
    this.reasonValue = reason;
    this.current?.abort();
    this.replacement?.abort();
    this.current = null;
    this.replacement = null;
    this.wake?.();
    this.setState("closed");
  }

  /** Builds the URL of a stream or a poll, with the token when there is a callback. */
  private async url(path: string, extra: Record<string, string>): Promise<string> {
    const base = this.options.url || (typeof location !== "undefined" ? location.origin : "");
    const url = new URL(path, base.endsWith("/") ? base : `${base}/`);
    for (const channel of this.channelSet) url.searchParams.append("channel", channel);
    for (const [key, value] of Object.entries(extra)) if (value) url.searchParams.set(key, value);
    if (this.options.token) {
      const reason = this.tokenReason;
      this.tokenReason = "connect";
      const token = await this.options.token({ reason });
      if (token) url.searchParams.set("token", token);
    }
    return url.toString();
  }

  private requestInit(): RequestInit {
    return { credentials: this.options.withCredentials ? "include" : "same-origin" };
  }

  /**
   * Opens a stream that resumes from the cursor. It becomes `current` at once, or, `beside` the
   * open one, the `replacement` that takes its place once it says `connected`.
   */
  private async startStream(generation: number, beside = false): Promise<Attempt | null> {
    let url: string;
    try {
      url = await this.url("api/stream", { clientId: this.options.clientId ?? "", lastEventId: this.cursor });
    } catch (error) {
      // The token callback failed: an attempt that failed at once, judged like a network failure.
      if (this.generation !== generation) return null;
      const message = `the token callback failed: ${String((error as Error)?.message ?? error)}`;
      const failed: Attempt = {
        done: Promise.resolve({ kind: "network", message }),
        opened: Promise.resolve(false),
        isConnected: false,
        abort() {},
        listenTo() {},
      };
      if (beside) this.replacement = failed;
      else this.current = failed;
      return failed;
    }
    if (this.generation !== generation) return null;
    const resumedFrom = this.cursor;
    const timeoutMs = this.options.connectTimeoutMs ?? 10_000;
    const handlers = {
      onConnected: (info: ConnectedInfo, message: SseMessage) => this.connected(attempt, info, message, resumedFrom),
      onMessage: (message: SseMessage) => this.deliverStreamed(message),
      onRetry: (milliseconds: number) => {
        this.retryMs = milliseconds;
      },
    };
    const attempt: Attempt =
      this.transport() === "fetch"
        ? new StreamAttempt(
            url,
            this.requestInit(),
            { connectTimeoutMs: timeoutMs, idleTimeoutMs: this.options.idleTimeoutMs ?? 45_000 },
            handlers,
            this.options.fetch ?? globalThis.fetch.bind(globalThis),
          )
        : new EventSourceAttempt(url, this.options.withCredentials ?? false, timeoutMs, handlers, this.eventTypes);
    if (beside) this.replacement = attempt;
    else this.current = attempt;
    return attempt;
  }

  /** The transport asked for; `auto` is `fetch` wherever response bodies can be streamed. */
  private transport(): "fetch" | "eventsource" {
    const asked = this.options.transport ?? "auto";
    if (asked !== "auto") return asked;
    const canStream = typeof ReadableStream !== "undefined" && typeof TextDecoderStream !== "undefined";
    return canStream || typeof EventSource === "undefined" ? "fetch" : "eventsource";
  }

  private connected(attempt: Attempt, info: ConnectedInfo, message: SseMessage, resumedFrom: string): void {
    // The hub may name the stream's starting point with an `id:` on `connected`: resume from it.
    if (message.hasId && message.lastEventId) this.cursor = message.lastEventId;
    if (this.replacement === attempt) {
      this.replacement = null;
      const old = this.current;
      // Keep the old connection a moment, so nothing in flight on it is lost; duplicates are dropped.
      if (old && old !== attempt) setTimeout(() => old.abort(), this.options.switchOverlapMs ?? 1000);
    }
    this.current = attempt;
    this.hadConnection = true;
    this.setState("open");
    this.emitter.emit("connected", info);
    if (!info.resumed && resumedFrom !== "") {
      this.emitter.emit("reset", { lastEventId: resumedFrom });
    }
  }

  /** Replaces the connection for a new channel list, resuming from the cursor. */
  private switchChannels(): void {
    if (!this.running) return;
    const generation = this.generation;
    const open = this.current?.isConnected ?? false;
    if (!open) {
      // Not connected yet (or waiting, or polling): the next attempt or poll uses the new list.
      if (this.current && !this.replacement) this.current.abort();
      return;
    }
    // A replacement still opening is for an older list: this one takes its place.
    const previous = this.replacement;
    void this.startStream(generation, true).then((attempt) => {
      previous?.abort();
      if (!attempt) return;
      // If the new connection fails before `connected`, the old one makes way for the loop's policy.
      void attempt.done.then(() => {
        if (!attempt.isConnected && this.replacement === attempt && this.current && this.current !== attempt) {
          this.current.abort();
        }
      });
    });
  }

  // ---- polling ----

  /**
   * Polls until a stream works again and returns that stream (connected); null when the client
   * stopped, or when no channel is left to poll (the polling endpoints take at least one).
   */
  private async pollUntilStreamWorks(generation: number): Promise<Attempt | null> {
    const fallback = this.fallback!;
    this.setState("polling");
    let nextStreamTry = Date.now() + fallback.streamRetryMs;
    let failures = 0;
    let authRetried = false;
    // Without a cursor (no stream ever opened), a poll starts at the oldest event in history, while
    // a stream starts live: skip history's pages to start where a stream would.
    let skipping = this.cursor === "";
    while (this.generation === generation && this.channelSet.length > 0) {
      let full = false;
      try {
        const limit = String(skipping ? POLL_SKIP_LIMIT : POLL_LIMIT);
        const url = await this.url("api/events", { after: this.cursor, limit });
        if (this.generation !== generation) return null;
        const response = await (this.options.fetch ?? fetch)(url, {
          ...this.requestInit(),
          headers: { accept: "application/json" },
          cache: "no-store",
        });
        if (response.status !== 200) {
          const verdict = this.judge({ status: response.status, ...(await readError(response)) }, "poll", authRetried);
          if (verdict === "stop") return null;
          if (verdict === "auth-retry") {
            authRetried = true;
            continue;
          }
          failures++;
        } else {
          const page: PollPage = await response.json();
          if (this.generation !== generation) return null;
          failures = 0;
          authRetried = false;
          if (skipping) {
            if (page.cursor) this.cursor = page.cursor;
            skipping = page.hasMore;
            full = true;
            continue;
          }
          full = this.deliverPage(page);
          this.setState("polling");
        }
      } catch (error) {
        failures++;
        this.emitter.emit("error", {
          status: 0,
          message: String((error as Error)?.message ?? error),
          transport: "poll",
          willRetry: true,
        } satisfies HeraldError);
      }
      if (this.generation !== generation) return null;
      if (Date.now() >= nextStreamTry) {
        const attempt = await this.startStream(generation);
        if (!attempt) return null;
        const connected = await Promise.race([attempt.done.then(() => false), attempt.opened]);
        if (connected) return attempt;
        this.current = null;
        nextStreamTry = Date.now() + fallback.streamRetryMs;
      }
      if (!full) {
        const wait = failures > 0 ? backoffDelay(failures - 1, this.options.backoff) : fallback.pollIntervalMs;
        await this.sleep(generation, Math.min(wait, Math.max(0, nextStreamTry - Date.now())));
      }
    }
    return null;
  }

  /** Delivers a poll page; true when another page is ready now. */
  private deliverPage(page: PollPage): boolean {
    if (page.reset && this.cursor !== "") this.emitter.emit("reset", { lastEventId: this.cursor });
    for (const item of page.events) {
      const raw = typeof item.data === "string" ? item.data : JSON.stringify(item.data);
      this.deliver({
        id: item.id,
        type: item.event ?? "message",
        data: item.data,
        raw,
        channel: item.channel,
        via: "poll",
      });
    }
    if (page.cursor) this.cursor = page.cursor;
    return page.hasMore;
  }

  // ---- delivery ----

  private deliverStreamed(message: SseMessage): void {
    let data: unknown = message.data;
    try {
      data = JSON.parse(message.data);
    } catch {
      // Not JSON: the payload is text.
    }
    this.deliver({ id: message.lastEventId, type: message.type, data, raw: message.data, via: "stream" });
  }

  private deliver(event: HeraldEvent): void {
    if (event.id) {
      if (this.seen.has(event.id)) return;
      this.seen.add(event.id);
      if (this.seen.size > SEEN_IDS_MAX) this.seen.delete(this.seen.values().next().value as string);
      this.cursor = event.id;
    }
    this.emitter.emit(`event:${event.type}`, event);
    this.emitter.emit("event:*", event);
  }

  // ---- plumbing ----

  private setState(state: ConnectionState): void {
    if (state === this.stateValue) return;
    this.stateValue = state;
    this.emitter.emit("state", state);
  }

  /** Waits, unless the client stops first. */
  private sleep(generation: number, ms: number): Promise<void> {
    return new Promise((resolve) => {
      if (this.generation !== generation) return resolve();
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
  }
}

/** The polling endpoint's answer. */
interface PollPage {
  events: { id: string; channel?: string; event: string | null; data: unknown }[];
  cursor: string;
  reset: boolean;
  hasMore: boolean;
}

function dedupe(channels: string[]): string[] {
  return [...new Set(channels)];
}

function sameList(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((value, index) => value === b[index]);
}
