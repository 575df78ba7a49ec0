/**
 * Vue bindings: composables over the core client. They own a client's lifetime within a component
 * or effect scope (connect on mount, close when the scope ends) and nothing else: every connection
 * decision stays in the core.
 */

import {
  getCurrentInstance,
  onMounted,
  onScopeDispose,
  readonly,
  shallowRef,
  toValue,
  watch,
  type MaybeRefOrGetter,
  type Ref,
} from "vue";
import { HeraldClient } from "./client.js";
import type { ConnectionState, HeraldEvent, HeraldOptions } from "./types.js";

export * from "./index.js";

/** Options of `useHerald`: the core's, with channels that may be a ref or a getter. */
export type UseHeraldOptions<Events extends Record<string, unknown>> = Omit<HeraldOptions, "channels"> & {
  channels?: MaybeRefOrGetter<string[]>;
  /** Event names kept in `events` (default every event). */
  events?: (keyof Events & string)[];
  /** How many events `events` keeps, newest last. Default 100. */
  keep?: number;
};

/**
 * A client for the life of the current component (connected on mount) or effect scope (at once),
 * closed when it ends. Channels given as a ref or getter are followed without losing an event.
 */
export function useHerald<Events extends Record<string, unknown> = Record<string, unknown>>(
  options: UseHeraldOptions<Events>,
): { client: HeraldClient<Events>; state: Readonly<Ref<ConnectionState>>; events: Readonly<Ref<HeraldEvent[]>> } {
  const { channels, events: types, keep = 100, ...rest } = options;
  const client = new HeraldClient<Events>({ ...rest, channels: toValue(channels) ?? [], autoConnect: false });
  const state = shallowRef<ConnectionState>(client.state);
  const events = shallowRef<HeraldEvent[]>([]);
  const stops = [
    client.onState((value) => {
      state.value = value;
    }),
    ...(types ?? ["*"]).map((type) =>
      client.on(type as "*", (event) => {
        events.value = [...events.value, event].slice(-keep);
      }),
    ),
  ];
  watch(
    () => toValue(channels) ?? [],
    (list) => client.setChannels(list),
    { deep: true },
  );
  if (getCurrentInstance()) onMounted(() => client.connect());
  else client.connect();
  onScopeDispose(() => {
    stops.forEach((stop) => stop());
    client.close();
  });
  return {
    client,
    state: readonly(state) as Readonly<Ref<ConnectionState>>,
    events: readonly(events) as Readonly<Ref<HeraldEvent[]>>,
  };
}

/** Calls `handler` for each event of one name (`"*"` for all) until the current scope ends. */
export function useHeraldEvent<Events extends Record<string, unknown>, K extends keyof Events & string>(
  client: HeraldClient<Events>,
  type: K | "*",
  handler: (event: HeraldEvent<Events[K]>) => void,
): void {
  onScopeDispose(client.on(type as K, handler));
}
