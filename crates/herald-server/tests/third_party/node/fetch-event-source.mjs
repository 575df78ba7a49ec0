// npm `@microsoft/fetch-event-source`: written for browsers. In Node it needs
// - `window` (it calls window.setTimeout, window.clearTimeout, and window.fetch unless given
//   `fetch`): here `globalThis`;
// - `document.removeEventListener` (called when it stops, even with `openWhenHidden`), and
//   `document.addEventListener` unless `openWhenHidden: true`: here a stub;
// - `onclose` to throw, or it stops for good when a stream ends instead of reconnecting (its
//   README's pattern); `onerror` returning nothing then means "retry after the `retry:` interval".
// It hands `onmessage` one message per blank line, even for a block with no data (a `retry:`
// alone, or a comment such as a heartbeat): those are printed as they come.
import { fetchEventSource } from "@microsoft/fetch-event-source";
import { args, report } from "./report.mjs";

globalThis.window = globalThis;
globalThis.document = { hidden: false, addEventListener() {}, removeEventListener() {} };

class StreamEnded extends Error {}

const { url } = args();
await fetchEventSource(url, {
  fetch: globalThis.fetch,
  openWhenHidden: true,
  async onopen(response) {
    if (response.status !== 200) throw new Error(`status ${response.status}`);
    report("open");
  },
  onmessage(message) {
    report("event", {
      type: message.event,
      id: message.id,
      data: message.data,
      retry: message.retry ?? null,
    });
  },
  onclose() {
    throw new StreamEnded("the stream ended");
  },
  onerror(error) {
    report("error", { message: String(error?.message ?? error) });
  },
});
