// Compile-time checks of the public types (run by `npm test` through tsconfig.check.json): each
// `@ts-expect-error` line must stay an error, so a loosened type fails the build.
import { HeraldClient, type ConnectionState, type HeraldEvent } from "../dist/index.js";
import { useHerald as useHeraldReact } from "../dist/react.js";
import { useHerald as useHeraldVue } from "../dist/vue.js";

type Events = { "order.created": { id: number; item: string }; notification: { text: string } };
const client = new HeraldClient<Events>({ channels: ["orders"], autoConnect: false });

client.on("order.created", (event) => {
  const id: number = event.data.id;
  const item: string = event.data.item;
  // @ts-expect-error: an order has no `text`
  event.data.text;
  void [id, item];
});
client.on("notification", (event: HeraldEvent<{ text: string }>) => event.data.text.toUpperCase());
// @ts-expect-error: an event name the map does not have
client.on("order.deleted", () => {});
client.on("*", (event) => event.raw);

const state: ConnectionState = client.state;
// @ts-expect-error: not a state
const wrong: ConnectionState = "online";
void [state, wrong];

// @ts-expect-error: a transport that does not exist
new HeraldClient({ transport: "websocket" });

export function ReactUse() {
  const { state, events, client } = useHeraldReact<Events>({ channels: ["orders"], events: ["order.created"] });
  // @ts-expect-error: only names of the map
  useHeraldReact<Events>({ events: ["nope"] });
  return [state, events, client];
}

export function VueUse() {
  const { state, events } = useHeraldVue<Events>({ channels: () => ["orders"] });
  const now: ConnectionState = state.value;
  return [now, events.value.length];
}
