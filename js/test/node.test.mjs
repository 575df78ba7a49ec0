// The same client in Node 18+ (global fetch and streams), against a real hub: no browser needed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { HeraldClient } from "../dist/index.js";
import { eventually, startHub } from "./harness.mjs";

test("in Node, the client hears a channel and resumes after the hub cuts it", async () => {
  const hub = await startHub();
  const client = new HeraldClient({ url: hub.base, channels: ["jobs"] });
  try {
    const seen = [];
    client.on("progress", (event) => seen.push(event.data.percent));
    await eventually(() => client.state === "open");
    await hub.publish("jobs", { event: "progress", data: { percent: 10 } });
    await eventually(() => seen.length === 1);
    // Closing the client id cuts the stream; the client reconnects by itself and resumes.
    const [{ id }] = (await hub.get("/api/clients")).clients;
    await fetch(`${hub.base}/api/clients/${id}`, { method: "DELETE" });
    await eventually(() => client.state === "reconnecting");
    await hub.publish("jobs", { event: "progress", data: { percent: 50 } });
    await eventually(() => seen.length === 2);
    assert.deepEqual(seen, [10, 50]);
  } finally {
    client.close();
    await hub.stop();
  }
});

test("a request the hub rejects (a bad channel name) stops the client with the hub's code, untried again", async () => {
  const hub = await startHub();
  const errors = [];
  const client = new HeraldClient({ url: hub.base, channels: ["not valid"], autoConnect: false });
  client.onError((error) => errors.push(error));
  client.connect();
  try {
    await eventually(() => client.state === "closed");
    assert.deepEqual(client.closedReason, {
      kind: "rejected",
      status: 400,
      code: "invalid_channel",
      message: client.closedReason.message,
    });
    assert.equal(errors.length, 1);
    assert.equal(errors[0].willRetry, false);
  } finally {
    client.close();
    await hub.stop();
  }
});

test("a token callback that throws is retried with backoff, and the client connects once it works", async () => {
  const hub = await startHub();
  let calls = 0;
  const errors = [];
  const client = new HeraldClient({
    url: hub.base,
    channels: ["a"],
    fallback: false,
    backoff: { initialDelayMs: 20, maxDelayMs: 40 },
    autoConnect: false,
    token: () => {
      calls++;
      if (calls < 3) throw new Error("auth server down");
      return "unused-in-none-mode";
    },
  });
  client.onError((error) => errors.push(error.message));
  client.connect();
  try {
    await eventually(() => client.state === "open");
    assert.equal(calls, 3);
    assert.deepEqual(errors, [
      "the token callback failed: auth server down",
      "the token callback failed: auth server down",
    ]);
  } finally {
    client.close();
    await hub.stop();
  }
});

test("polling whose last channel is removed goes back to a stream instead of polling for nothing", async () => {
  const hub = await startHub();
  // A fetch that refuses streams, as a proxy blocking them would: the client falls back to polling.
  const fetchWithoutStreams = (url, init) =>
    String(url).includes("/api/stream?") || String(url).endsWith("/api/stream")
      ? Promise.resolve(new Response("blocked", { status: 502 }))
      : fetch(url, init);
  const client = new HeraldClient({
    url: hub.base,
    channels: ["a"],
    fetch: fetchWithoutStreams,
    backoff: { initialDelayMs: 20, maxDelayMs: 40 },
    fallback: { afterFailures: 2, pollIntervalMs: 50, streamRetryMs: 60_000 },
  });
  try {
    await eventually(() => client.state === "polling");
    const polls = [];
    client.onError((error) => polls.push(error));
    client.setChannels([]);
    await eventually(() => client.state === "reconnecting");
    assert.equal(client.closedReason, null, "the client did not stop");
    assert.ok(
      polls.every((error) => error.transport === "stream"),
      "no poll without a channel was sent",
    );
  } finally {
    client.close();
    await hub.stop();
  }
});
