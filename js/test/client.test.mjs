// The core client in a real Chromium against a real hub: one behaviour per test, each with a hub and
// a gateway of its own (the gateway plays the misbehaving proxy where a test needs one).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { eventually, launchBrowser, mintToken, pageEvents, startGateway, startHub, waitInPage } from "./harness.mjs";

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

/** A hub (with `args`), a gateway in front of it, and a page; all stopped after `body`. */
async function withPage(args, body) {
  const hub = await startHub(args);
  const gateway = await startGateway(hub.base);
  const page = await browser.newPage(gateway.base + "/");
  try {
    await body({ hub, gateway, page });
  } finally {
    await page.close();
    await gateway.stop();
    await hub.stop();
  }
}

const states = (page) => page.evaluate(() => log.filter((e) => e.kind === "state").map((e) => e.state));
const countEvents = (page, n) => waitInPage(page, (n) => log.filter((e) => e.kind === "event").length >= n, n);

test("named events from several channels arrive typed on one connection", async () => {
  await withPage([], async ({ hub, page }) => {
    await page.evaluate(() => {
      window.client = track(new Herald.HeraldClient({ channels: ["orders", "user:42"], autoConnect: false }));
      client.connect();
    });
    await waitInPage(page, () => client.state === "open");
    await hub.publish("orders", { event: "created", data: { id: 7 } });
    await hub.publish("user:42", { data: "two\nlines" });
    await countEvents(page, 2);
    const events = await pageEvents(page);
    assert.deepEqual(
      events.map((e) => [e.type, e.data, e.via]),
      [
        ["created", { id: 7 }, "stream"],
        ["message", "two\nlines", "stream"],
      ],
    );
    const { clients } = await hub.get("/api/clients");
    assert.equal(clients.length, 1, "one connection carries both channels");
    assert.deepEqual(clients[0].channels.sort(), ["orders", "user:42"]);
    assert.deepEqual(await states(page), ["connecting", "open"]);
  });
});

test("channels added and removed at run time lose no event and duplicate none", async () => {
  await withPage([], async ({ hub, page }) => {
    await page.evaluate(() => {
      window.client = track(new Herald.HeraldClient({ channels: ["a"] }));
    });
    await waitInPage(page, () => client.state === "open");
    const total = 150;
    for (let n = 1; n <= total; n++) {
      await hub.publish("a", { event: "tick", data: { n } });
      if (n === 50) await page.evaluate(() => client.subscribe("b"));
      if (n === 100) await hub.publish("b", { event: "b-tick", data: { n } });
    }
    await waitInPage(
      page,
      (total) => log.filter((e) => e.type === "tick").length >= total && log.some((e) => e.type === "b-tick"),
      total,
    );
    await new Promise((r) => setTimeout(r, 300));
    const ticks = (await pageEvents(page)).filter((e) => e.type === "tick").map((e) => e.data.n);
    assert.deepEqual(
      ticks,
      Array.from({ length: total }, (_, i) => i + 1),
      "every tick once, in order",
    );
    await eventually(async () => (await hub.get("/api/clients")).clients.length === 1);

    await page.evaluate(() => client.unsubscribe("a"));
    await eventually(async () => {
      const { clients } = await hub.get("/api/clients");
      return clients.length === 1 && clients[0].channels.join() === "b";
    });
    await hub.publish("a", { event: "tick", data: { n: 999 } });
    await hub.publish("b", { event: "b-tick", data: { n: 1000 } });
    await waitInPage(page, () => log.some((e) => e.type === "b-tick" && e.data.n === 1000));
    assert.ok(!(await pageEvents(page)).some((e) => e.data?.n === 999), "a removed channel is no longer heard");
  });
});

test("with a client id, a channel change during a burst keeps one connection and loses nothing", async () => {
  await withPage([], async ({ hub, page }) => {
    await page.evaluate(() => {
      window.client = track(new Herald.HeraldClient({ channels: ["a"], clientId: "tab-1" }));
    });
    await waitInPage(page, () => client.state === "open");
    // The first event gives the client a cursor to resume from. (Before one, the hub's current
    // `connected` names no starting point, and what was queued on a replaced client id is dropped.)
    await hub.publish("a", { event: "tick", data: { n: 1 } });
    await countEvents(page, 1);
    const total = 100;
    const burst = (async () => {
      for (let n = 2; n <= total; n++) await hub.publish("a", { event: "tick", data: { n } });
    })();
    await page.evaluate(() => client.subscribe("b"));
    await burst;
    await waitInPage(page, (total) => log.filter((e) => e.type === "tick").length >= total, total);
    await new Promise((r) => setTimeout(r, 300));
    const ticks = (await pageEvents(page)).map((e) => e.data.n);
    assert.deepEqual(
      ticks,
      Array.from({ length: total }, (_, i) => i + 1),
      "every tick once, in order",
    );
    const { clients } = await hub.get("/api/clients");
    assert.deepEqual(
      clients.map((c) => [c.id, c.channels.sort().join()]),
      [["tab-1", "a,b"]],
    );
    assert.ok(!(await states(page)).includes("reconnecting"), "the switch never left the client without a connection");
  });
});

test("502 and 503 from a proxy are retried with backoff, and the resume misses nothing", async () => {
  await withPage([], async ({ hub, gateway, page }) => {
    await page.evaluate(() => {
      window.client = track(
        new Herald.HeraldClient({
          channels: ["a"],
          fallback: false,
          backoff: { initialDelayMs: 100, maxDelayMs: 400 },
        }),
      );
    });
    await waitInPage(page, () => client.state === "open");
    await hub.publish("a", { data: { n: 1 } });
    await countEvents(page, 1);

    gateway.mode.streamStatus = 502;
    gateway.cutStreams();
    await hub.publish("a", { data: { n: 2 } });
    await eventually(() => gateway.requests.filter((r) => r.answeredWith === 502).length >= 2);
    gateway.mode.streamStatus = 503;
    await hub.publish("a", { data: { n: 3 } });
    await eventually(() => gateway.requests.filter((r) => r.answeredWith === 503).length >= 2);
    await waitInPage(page, () => client.state === "reconnecting");
    gateway.mode.streamStatus = 0;

    await countEvents(page, 3);
    await waitInPage(page, () => client.state === "open");
    assert.deepEqual(
      (await pageEvents(page)).map((e) => e.data.n),
      [1, 2, 3],
    );
    const errors = await page.evaluate(() => log.filter((e) => e.kind === "error").map((e) => [e.status, e.willRetry]));
    assert.ok(
      errors.some(([s, retry]) => s === 502 && retry) && errors.some(([s, retry]) => s === 503 && retry),
      JSON.stringify(errors),
    );
    const resumed = await page.evaluate(() => log.filter((e) => e.kind === "connected").map((e) => e.info.resumed));
    assert.deepEqual(resumed, [false, true], "the reconnection resumed from the last id");
  });
});

test("a stream that goes silent (a network that drops it without a word) is replaced and resumed", async () => {
  await withPage(["--heartbeat-interval", "200ms"], async ({ hub, gateway, page }) => {
    await page.evaluate(() => {
      window.client = track(new Herald.HeraldClient({ channels: ["a"], idleTimeoutMs: 1000 }));
    });
    await waitInPage(page, () => client.state === "open");
    await new Promise((r) => setTimeout(r, 1500)); // heartbeats alone keep it open
    await hub.publish("a", { data: { n: 1 } });
    await countEvents(page, 1);
    gateway.stallStreams();
    await hub.publish("a", { data: { n: 2 } });
    await countEvents(page, 2);
    assert.deepEqual(
      (await pageEvents(page)).map((e) => e.data.n),
      [1, 2],
    );
    const resumed = await page.evaluate(() => log.filter((e) => e.kind === "connected").map((e) => e.info.resumed));
    assert.deepEqual(resumed, [false, true]);
  });
});

test("a channel closed for good ends the client on the hub's 204", async () => {
  await withPage(["--retry-interval", "200ms"], async ({ hub, page }) => {
    await page.evaluate(() => {
      window.client = track(new Herald.HeraldClient({ channels: ["job:1"] }));
    });
    await waitInPage(page, () => client.state === "open");
    await hub.post("/api/channels/job:1/close", { event: "done", data: { ok: true } });
    await waitInPage(page, () => client.state === "closed");
    const result = await page.evaluate(() => ({
      reason: client.closedReason,
      events: log.filter((e) => e.kind === "event").map((e) => e.type),
    }));
    assert.deepEqual(result.events, ["done"]);
    assert.equal(result.reason.kind, "ended");
    assert.equal(result.reason.status, 204);
  });
});

const SECRET = "a-test-secret-that-is-long-enough-for-hs256";
const API_KEY = "publisher-key-0123456789";
const claims = (seconds) => ({
  sub: "42",
  exp: Math.floor(Date.now() / 1000) + seconds,
  herald: { subscribe: ["orders"] },
});

test("a refused token is refreshed once; a refusal after the refresh stops the client", async () => {
  const expired = mintToken(SECRET, claims(-3600));
  const valid = mintToken(SECRET, claims(3600));
  await withPage(["--auth", "jwt", "--jwt-secret", SECRET], async ({ page }) => {
    await page.evaluate(
      ([expired, valid]) => {
        window.asked = [];
        window.client = track(
          new Herald.HeraldClient({
            channels: ["orders"],
            token: ({ reason }) => {
              asked.push(reason);
              return reason === "unauthorized" ? valid : expired;
            },
          }),
        );
      },
      [expired, valid],
    );
    await waitInPage(page, () => client.state === "open");
    assert.deepEqual(await page.evaluate(() => asked), ["connect", "unauthorized"]);

    await page.evaluate((expired) => {
      window.asked2 = [];
      window.client2 = new Herald.HeraldClient({
        channels: ["orders"],
        token: ({ reason }) => (asked2.push(reason), expired),
      });
    }, expired);
    await waitInPage(page, () => client2.state === "closed");
    const result = await page.evaluate(() => ({ asked: asked2, reason: client2.closedReason }));
    assert.deepEqual(result.asked, ["connect", "unauthorized"]);
    assert.equal(result.reason.kind, "unauthorized");
    assert.equal(result.reason.status, 401);
    assert.equal(result.reason.code, "unauthorized");
  });
});

test("a token reaches a hub on another origin (CORS), and 403 for a channel outside it stops", async () => {
  // The page's origin is the gateway's; the hub must list it, so the gateway comes first.
  const gateway = await startGateway("http://127.0.0.1:9");
  const corsHub = await startHub([
    "--auth",
    "jwt",
    "--jwt-secret",
    SECRET,
    "--api-keys",
    API_KEY,
    "--cors-origins",
    gateway.base,
  ]);
  const page = await browser.newPage(gateway.base + "/");
  try {
    const token = mintToken(SECRET, claims(3600));
    await page.evaluate(
      ([url, token]) => {
        window.client = track(new Herald.HeraldClient({ url, channels: ["orders"], token: () => token }));
        window.refused = new Herald.HeraldClient({ url, channels: ["secret"], token: () => token });
      },
      [corsHub.base, token],
    );
    await waitInPage(page, () => client.state === "open" && refused.state === "closed");
    await corsHub.post(
      "/api/channels/orders/events",
      { event: "created", data: { id: 1 } },
      { authorization: `Bearer ${API_KEY}` },
    );
    await countEvents(page, 1);
    const reason = await page.evaluate(() => refused.closedReason);
    assert.equal(reason.kind, "unauthorized");
    assert.equal(reason.status, 403);
  } finally {
    await page.close();
    await gateway.stop();
    await corsHub.stop();
  }
});

test("resumed false is surfaced as a reset; a known id resumes with the missed events", async () => {
  await withPage([], async ({ hub, page }) => {
    const first = await hub.publish("a", { data: { n: 1 } });
    await hub.publish("a", { data: { n: 2 } });
    await page.evaluate((id) => {
      window.stale = new Herald.HeraldClient({ channels: ["a"], lastEventId: "gone-7" });
      window.resets = [];
      stale.onReset((info) => resets.push(info.lastEventId));
      window.client = track(new Herald.HeraldClient({ channels: ["a"], lastEventId: id }));
    }, first.id);
    await waitInPage(page, () => resets.length === 1 && client.state === "open");
    assert.deepEqual(await page.evaluate(() => resets), ["gone-7"]);
    await countEvents(page, 1);
    assert.deepEqual(
      (await pageEvents(page)).map((e) => e.data.n),
      [2],
    );
    assert.ok(!(await page.evaluate(() => log.some((e) => e.kind === "reset"))));
  });
});

test("after a restart of an in-memory hub, the reconnected client reports a reset", async () => {
  await withPage([], async ({ hub, gateway, page }) => {
    await page.evaluate(() => {
      window.client = track(new Herald.HeraldClient({ channels: ["a"] }));
    });
    await waitInPage(page, () => client.state === "open");
    await hub.publish("a", { data: { n: 1 } });
    await countEvents(page, 1);
    const restarted = await startHub();
    try {
      gateway.setHub(restarted.base);
      await hub.stop(); // the old hub and its history are gone; its streams end
      await waitInPage(page, () => log.some((e) => e.kind === "reset") && client.state === "open");
      await restarted.publish("a", { data: { n: 2 } });
      await countEvents(page, 2);
      const resets = await page.evaluate(() => log.filter((e) => e.kind === "reset").map((e) => e.lastEventId));
      const [first] = await pageEvents(page);
      assert.deepEqual(resets, [first.id], "the reset names the cursor the hub no longer knows");
    } finally {
      await restarted.stop();
    }
  });
});

test("a blocked stream endpoint falls back to polling from the same cursor, and back to streaming", async () => {
  await withPage([], async ({ hub, gateway, page }) => {
    await page.evaluate(() => {
      window.client = track(
        new Herald.HeraldClient({
          channels: ["a", "b"],
          backoff: { initialDelayMs: 50, maxDelayMs: 100 },
          fallback: { afterFailures: 2, pollIntervalMs: 100, streamRetryMs: 1500 },
          autoConnect: false,
        }),
      );
      client.connect();
    });
    await waitInPage(page, () => client.state === "open");
    await hub.publish("a", { data: { n: 1 } });
    await countEvents(page, 1);

    gateway.mode.streamStatus = 502;
    gateway.cutStreams();
    await hub.publish("a", { data: { n: 2 } });
    await hub.publish("b", { data: { n: 3 } });
    await waitInPage(page, () => client.state === "polling");
    await countEvents(page, 3);
    await hub.publish("a", { data: { n: 4 } });
    await countEvents(page, 4);

    gateway.mode.streamStatus = 0;
    await waitInPage(page, () => client.state === "open");
    await hub.publish("b", { data: { n: 5 } });
    await countEvents(page, 5);
    const events = await pageEvents(page);
    assert.deepEqual(
      events.map((e) => e.data.n),
      [1, 2, 3, 4, 5],
    );
    assert.deepEqual(
      events.map((e) => e.via),
      ["stream", "poll", "poll", "poll", "stream"],
    );
    assert.deepEqual(await states(page), ["connecting", "open", "reconnecting", "polling", "open"]);
  });
});

test("a proxy that holds the stream unanswered (buffering) sends the client to polling", async () => {
  await withPage([], async ({ hub, gateway, page }) => {
    gateway.mode.holdStreams = true;
    await hub.publish("a", { data: { n: 0 } });
    await page.evaluate(() => {
      window.client = track(
        new Herald.HeraldClient({
          channels: ["a"],
          connectTimeoutMs: 400,
          backoff: { initialDelayMs: 50, maxDelayMs: 100 },
          fallback: { afterFailures: 2, pollIntervalMs: 100, streamRetryMs: 60_000 },
        }),
      );
    });
    await waitInPage(page, () => client.state === "polling");
    await hub.publish("a", { event: "created", data: { n: 1 } });
    await countEvents(page, 1);
    const events = await pageEvents(page);
    assert.deepEqual(
      events.map((e) => [e.type, e.data.n, e.via]),
      [["created", 1, "poll"]],
      "polling starts at the live edge, not at the oldest event",
    );
  });
});

test("an id on the connected event (the wire where connected names its starting point) is resumed from", async () => {
  await withPage([], async ({ hub, gateway, page }) => {
    const before = await hub.publish("a", { data: { n: 0 } });
    gateway.mode.connectedId = before.id;
    await page.evaluate(() => {
      window.client = track(
        new Herald.HeraldClient({ channels: ["a"], fallback: false, backoff: { initialDelayMs: 50, maxDelayMs: 100 } }),
      );
    });
    await waitInPage(page, () => client.state === "open");
    assert.equal(await page.evaluate(() => client.lastEventId), before.id);

    gateway.mode.streamStatus = 503;
    gateway.cutStreams();
    await hub.publish("a", { data: { n: 1 } });
    await eventually(() => gateway.requests.some((r) => r.answeredWith === 503));
    gateway.mode.streamStatus = 0;
    await countEvents(page, 1);
    assert.deepEqual(
      (await pageEvents(page)).map((e) => e.data.n),
      [1],
      "nothing before the starting point, nothing missed after it",
    );
  });
});

test("the EventSource transport: named events listened to, a channel change and a cut, all without loss", async () => {
  await withPage([], async ({ hub, gateway, page }) => {
    await page.evaluate(() => {
      window.client = track(new Herald.HeraldClient({ channels: ["a"], transport: "eventsource", autoConnect: false }));
      client.on("tick", () => {});
      client.connect();
    });
    await waitInPage(page, () => client.state === "open");
    await hub.publish("a", { event: "tick", data: { n: 1 } });
    await hub.publish("a", { event: "unheard", data: { n: -1 } });
    await countEvents(page, 1);
    await page.evaluate(() => client.subscribe("b"));
    await eventually(async () => {
      const { clients } = await hub.get("/api/clients");
      return clients.length === 1 && clients[0].channels.length === 2;
    });
    await hub.publish("b", { event: "tick", data: { n: 2 } });
    await countEvents(page, 2);
    gateway.cutStreams();
    await hub.publish("a", { event: "tick", data: { n: 3 } });
    await countEvents(page, 3);
    await hub.publish("b", { data: { n: 4 } });
    await countEvents(page, 4);
    const events = await pageEvents(page);
    assert.deepEqual(
      events.map((e) => [e.type, e.data.n]),
      [
        ["tick", 1],
        ["tick", 2],
        ["tick", 3],
        ["message", 4],
      ],
    );
  });
});

test("the EventSource transport falls back to polling when streams are blocked, where the status is learned", async () => {
  await withPage([], async ({ hub, gateway, page }) => {
    gateway.mode.streamStatus = 503;
    await page.evaluate(() => {
      window.client = track(
        new Herald.HeraldClient({
          channels: ["a"],
          transport: "eventsource",
          backoff: { initialDelayMs: 50, maxDelayMs: 100 },
          fallback: { afterFailures: 2, pollIntervalMs: 100, streamRetryMs: 60_000 },
        }),
      );
    });
    await waitInPage(page, () => client.state === "polling");
    await hub.publish("a", { data: { n: 1 } });
    await countEvents(page, 1);
    gateway.mode.apiStatus = 403;
    await waitInPage(page, () => client.state === "closed");
    assert.equal(await page.evaluate(() => client.closedReason.status), 403);
  });
});
