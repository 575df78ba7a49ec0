/**
 * React bindings: hooks over the core client. They own a client's lifetime within a component
 * (connect on mount, close on unmount) and nothing else: every connection decision stays in the core.
 */

import { useEffect, useRef, useState, useSyncExternalStore } from "react";
import { HeraldClient } from "./client.js";
import type { ConnectionState, HeraldEvent, HeraldOptions } from "./types.js";

export * from "./index.js";

/**
 * A client for the life of the component: created once, connected on mount, closed on unmount.
 * A change of `options.channels` resubscribes without losing an event; other options are read once
 * (give the component a `key` to start over with new ones).
 */
export function useHeraldClient<Events extends Record<string, unknown> = Record<string, unknown>>(
  options: HeraldOptions,
): HeraldClient<Events> {
  const [client] = useState(() => new HeraldClient<Events>({ ...options, autoConnect: false }));
  useEffect(() => {
    client.connect();
    return () => client.close();
  }, [client]);
  const channelsKey = JSON.stringify(options.channels ?? []);
  useEffect(() => {
    client.setChannels(JSON.parse(channelsKey));
  }, [client, channelsKey]);
  return client;
}

/** The client's connection state, re-rendering on each change. */
export function useHeraldState(client: HeraldClient<any>): ConnectionState {
  return useSyncExternalStore(
    (notify) => client.onState(notify),
    () => client.state,
    () => client.state,
  );
}

/** Calls `handler` for each event of one name (`"*"` for all); the latest handler is always used. */
export function useHeraldEvent<Events extends Record<string, unknown>, K extends keyof Events & string>(
  client: HeraldClient<Events>,
  type: K | "*",
  handler: (event: HeraldEvent<Events[K]>) => void,
): void {
  const latest = useRef(handler);
  latest.current = handler;
  useEffect(() => client.on(type as K, (event) => latest.current(event)), [client, type]);
}

/**
 * The common case in one call: a client, its state, and the events of the given names kept in a
 * list (the newest last, at most `keep`, default 100).
 */
export function useHerald<Events extends Record<string, unknown> = Record<string, unknown>>(
  options: HeraldOptions & { events?: (keyof Events & string)[]; keep?: number },
): { client: HeraldClient<Events>; state: ConnectionState; events: HeraldEvent[] } {
  const client = useHeraldClient<Events>(options);
  const state = useHeraldState(client);
  const [events, setEvents] = useState<HeraldEvent[]>([]);
  const keep = options.keep ?? 100;
  const typesKey = JSON.stringify(options.events ?? ["*"]);
  useEffect(() => {
    const types: string[] = JSON.parse(typesKey);
    const stops = types.map((type) =>
      client.on(type as "*", (event) => setEvents((list) => [...list, event].slice(-keep))),
    );
    return () => stops.forEach((stop) => stop());
  }, [client, typesKey, keep]);
  return { client, state, events };
}
