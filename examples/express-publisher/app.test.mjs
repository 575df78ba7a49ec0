// The Express example against a real hub: both started on free ports, talked to over HTTP.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { createApp } from "./app.js";
import { createHerald } from "./herald.js";

const API_KEY = "example-publisher-key-0123456789";
const heraldBin =
  process.env.HERALD_BIN ??
  fileURLToPath(new URL("../../target/debug/herald", import.meta.url));
let hub, hubUrl, server, appUrl;

before(async () => {
  hub = spawn(
    heraldBin,
    ["serve", "--listen", "127.0.0.1:0", "--api-keys", API_KEY],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  hubUrl = await new Promise((resolve, reject) => {
    let seen = "";
    hub.stderr.setEncoding("utf8").on("data", (chunk) => {
      seen += chunk;
      const found = seen.match(/herald listening on (http:\/\/\S+)/);
      if (found) resolve(found[1]);
    });
    hub.on("exit", () => reject(new Error(`herald exited: ${seen}`)));
  });
  server = createApp(createHerald({ url: hubUrl, apiKey: API_KEY })).listen(
    0,
    "127.0.0.1",
  );
  await once(server, "listening");
  appUrl = `http://127.0.0.1:${server.address().port}`;
});

after(() => {
  server?.close();
  hub?.kill("SIGKILL");
});

const post = (path, body, headers = {}) =>
  fetch(appUrl + path, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
const history = async (channel) =>
  (
    await (
      await fetch(`${hubUrl}/api/channels/${channel}/events`, {
        headers: { authorization: `Bearer ${API_KEY}` },
      })
    ).json()
  ).events;

test("an order is published to the orders channel, once even when the request is retried", async () => {
  const first = await post(
    "/orders",
    { item: "tea" },
    { "idempotency-key": "k-1" },
  );
  assert.equal(first.status, 201);
  const again = await post(
    "/orders",
    { item: "tea" },
    { "idempotency-key": "k-1" },
  );
  assert.equal(again.status, 200);
  assert.equal((await again.json()).herald.duplicate, true);
  const events = await history("orders");
  assert.deepEqual(
    events.map((e) => [e.id, e.event, e.data.item]),
    [["order-k-1", "order.created", "tea"]],
  );
});

test("a notification reaches one user's channel, and a live stream of that user receives it", async () => {
  const controller = new AbortController();
  const stream = await fetch(`${hubUrl}/api/channels/user:42/stream`, {
    headers: { authorization: `Bearer ${API_KEY}` },
    signal: controller.signal,
  });
  const reader = stream.body.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("event: connected"))
    text += (await reader.read()).value;

  const answer = await post("/users/42/notify", {
    text: "your export is ready",
  });
  assert.equal((await answer.json()).recipients, 1);
  while (!text.includes("event: notification"))
    text += (await reader.read()).value;
  controller.abort();
  assert.match(
    text,
    /event: notification\ndata: \{"text":"your export is ready"\}/,
  );
});

test("an event the hub refuses is answered with the hub's code", async () => {
  const refused = await post("/users/bad%20id/notify", { text: "x" });
  assert.equal(refused.status, 400);
  assert.equal((await refused.json()).error.code, "invalid_channel");
});
