// npm `eventsource` (the WHATWG EventSource for Node): reconnects by itself, honours `retry:` and
// sends Last-Event-ID. Named events reach only the listeners registered for their name, so the
// names come from the command line; `message` is always listened to.
import { EventSource } from "eventsource";
import { args, report } from "./report.mjs";

const { url, names } = args();
const source = new EventSource(url);
source.onopen = () => report("open");
source.onerror = (error) => report("error", { message: String(error?.message ?? error) });
for (const name of new Set(["message", ...names])) {
  source.addEventListener(name, (event) =>
    report("event", { type: event.type, id: event.lastEventId, data: event.data }),
  );
}
