/**
 * The text/event-stream parser, following the WHATWG rules (lines end in CRLF, LF or CR; `field:
 * value` with one optional space; `data` lines joined by LF; an event is dispatched at a blank line
 * only when it has data; `id` without NUL sets the last event id, also for an event without data;
 * `retry` only when all digits; comments and unknown fields ignored).
 *
 * It owns only the parsing of text it is given: it never reads a network, never decodes bytes
 * (feed it text from a streaming `TextDecoder`) and never interprets event payloads.
 */

/** One dispatched event, as the wire said it. */
export interface SseMessage {
  /** The `event:` field; `"message"` when there was none. */
  type: string;
  /** The `data:` lines joined by LF. */
  data: string;
  /** The last event id after this event (the stream's, not only this event's). */
  lastEventId: string;
  /** Whether this very event carried an `id:` field. */
  hasId: boolean;
}

/** Feeds chunks of text in; calls back for each dispatched event and each `retry:` value. */
export class SseParser {
  private buffer = "";
  private data: string[] = [];
  private type = "";
  private sawId = false;
  private atStart = true;
  private pendingCr = false;
  /** The last event id so far (kept across events, as the specification says). */
  lastEventId: string;

  constructor(
    private readonly onMessage: (message: SseMessage) => void,
    private readonly onRetry: (milliseconds: number) => void = () => {},
    lastEventId = "",
  ) {
    this.lastEventId = lastEventId;
  }

  /** Parses a chunk of text; whole lines are processed, a partial one waits for the next chunk. */
  push(chunk: string): void {
    if (this.atStart && chunk.length > 0) {
      this.atStart = false;
      if (chunk.charCodeAt(0) === 0xfeff) chunk = chunk.slice(1);
    }
    let text = this.buffer + chunk;
    this.buffer = "";
    if (this.pendingCr) {
      // A CR ended the previous chunk: an LF starting this one belongs to it.
      this.pendingCr = false;
      if (text.startsWith("\n")) text = text.slice(1);
    }
    let start = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      this.line(text.slice(start, i));
      if (c === 13) {
        if (i + 1 === text.length) this.pendingCr = true;
        else if (text.charCodeAt(i + 1) === 10) i++;
      }
      start = i + 1;
    }
    this.buffer = text.slice(start);
  }

  private line(line: string): void {
    if (line === "") {
      this.dispatch();
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    let field = line;
    let value = "";
    if (colon >= 0) {
      field = line.slice(0, colon);
      value = line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
    }
    switch (field) {
      case "data":
        this.data.push(value);
        break;
      case "event":
        this.type = value;
        break;
      case "id":
        if (!value.includes("\0")) {
          this.lastEventId = value;
          this.sawId = true;
        }
        break;
      case "retry":
        if (/^[0-9]+$/.test(value)) this.onRetry(Number(value));
        break;
    }
  }

  private dispatch(): void {
    const hasId = this.sawId;
    this.sawId = false;
    if (this.data.length === 0) {
      this.type = "";
      return;
    }
    const message: SseMessage = {
      type: this.type || "message",
      data: this.data.join("\n"),
      lastEventId: this.lastEventId,
      hasId,
    };
    this.data = [];
    this.type = "";
    this.onMessage(message);
  }
}
