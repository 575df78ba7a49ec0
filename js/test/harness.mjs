// Test harness: a real `herald serve` on a free port, a gateway in front of it that serves the test
// pages and the built package and can misbehave like a proxy (answer 502/503, hold streams
// unanswered, cut them), and a real headless Chromium (Debian's) driven by playwright-core.
//
// Every process and server a test starts is stopped by the test's `after`/`finally`, also when it
// fails. Nothing here downloads a browser: `/usr/bin/chromium` must exist (scripts/setup installs it).

import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { createServer, request as httpRequest } from "node:http";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, extname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
export const packageRoot = resolve(here, "..");
const repoRoot = resolve(packageRoot, "..");
/** The hub binary: `HERALD_BIN`, or the workspace's debug build. */
export const heraldBin = process.env.HERALD_BIN ?? join(repoRoot, "target/debug/herald");
const chromiumPath = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
/** Longest wait for something a test expects to happen soon. */
export const PATIENCE_MS = 20_000;

/** Starts `herald serve` on 127.0.0.1:0 with extra flags; resolves once it says where it listens. */
export function startHub(args = [], env = {}) {
  const child = spawn(heraldBin, ["serve", "--listen", "127.0.0.1:0", ...args], {
    env: { ...process.env, HERALD_LOG: "info", ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  const log = [];
  return new Promise((resolveStart, rejectStart) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      rejectStart(new Error(`herald did not start: ${log.join("\n")}`));
    }, PATIENCE_MS);
    child.on("error", (error) => {
      clearTimeout(timer);
      rejectStart(new Error(`cannot run ${heraldBin} (build it with cargo build -p herald-server): ${error.message}`));
    });
    let pending = "";
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (chunk) => {
      pending += chunk;
      const lines = pending.split("\n");
      pending = lines.pop();
      for (const line of lines) {
        log.push(line);
        const found = line.match(/herald listening on (http:\/\/[^\s]+)/);
        if (found) {
          clearTimeout(timer);
          const base = found[1];
          resolveStart({
            base,
            log,
            publish: (channel, body) => post(`${base}/api/channels/${encodeURIComponent(channel)}/events`, body),
            post: (path, body, headers) => post(`${base}${path}`, body, headers),
            get: async (path) => (await fetch(`${base}${path}`)).json(),
            stop: () => stopChild(child),
          });
        }
      }
    });
  });
}

async function post(url, body, headers = {}) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`POST ${url}: ${response.status} ${text}`);
  return JSON.parse(text);
}

function stopChild(child) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((done) => {
    child.once("exit", done);
    child.kill("SIGKILL");
  });
}

const contentTypes = { ".js": "text/javascript", ".html": "text/html", ".map": "application/json" };

/**
 * A gateway on 127.0.0.1:0: serves `/` (the test page), `/dist/*` (the built package) and
 * `/bundles/*` (from `bundleDir`), and passes `/api/*` to the hub. Its `mode` makes it misbehave
 * like a proxy: `streamStatus` answers stream requests with that status; `apiStatus` answers every
 * API request with it; `holdStreams` answers streams with headers and then nothing (a buffering
 * proxy). `cutStreams()` ends the streams passing through.
 */
export function startGateway(hubBase, { bundleDir } = {}) {
  let hub = new URL(hubBase);
  const open = new Set();
  const stalled = new WeakSet();
  const gateway = {
    mode: { streamStatus: 0, apiStatus: 0, holdStreams: false, connectedId: "" },
    /** Every API request seen: `{ path, answeredWith }`. */
    requests: [],
    cutStreams() {
      for (const response of open) response.destroy();
      open.clear();
    },
    /** Sends API requests to another hub from now on (a hub restarted elsewhere). */
    setHub(base) {
      hub = new URL(base);
    },
    /** Keeps the open streams open but lets nothing more through them (a black-holed network). */
    stallStreams() {
      for (const response of open) stalled.add(response);
    },
  };
  const server = createServer((req, res) => {
    const url = new URL(req.url, "http://gateway");
    if (url.pathname === "/") {
      res.writeHead(200, { "content-type": "text/html" });
      res.end(PAGE);
      return;
    }
    if (url.pathname.startsWith("/app/")) {
      const name = url.pathname.slice("/app/".length).replace(/[^a-z]/g, "");
      res.writeHead(200, { "content-type": "text/html" });
      res.end(
        `<!doctype html><meta charset="utf-8"><div id="app"></div><script type="module" src="/bundles/${name}.js"></script>`,
      );
      return;
    }
    if (url.pathname.startsWith("/dist/") || url.pathname.startsWith("/bundles/")) {
      const root = url.pathname.startsWith("/dist/") ? join(packageRoot, "dist") : bundleDir;
      const file = join(root, url.pathname.replace(/^\/(dist|bundles)\//, ""));
      try {
        const body = readFileSync(file);
        res.writeHead(200, { "content-type": contentTypes[extname(file)] ?? "application/octet-stream" });
        res.end(body);
      } catch {
        res.writeHead(404).end();
      }
      return;
    }
    const isStream = url.pathname.endsWith("/stream");
    const record = { path: req.url, answeredWith: 0 };
    gateway.requests.push(record);
    const status = gateway.mode.apiStatus || (isStream ? gateway.mode.streamStatus : 0);
    if (status) {
      record.answeredWith = status;
      res.writeHead(status, { "content-type": "text/html" });
      res.end(`<html><body>${status} from the gateway</body></html>`);
      return;
    }
    if (isStream && gateway.mode.holdStreams) {
      record.answeredWith = 200;
      res.writeHead(200, { "content-type": "text/event-stream" });
      open.add(res);
      res.on("close", () => open.delete(res));
      return;
    }
    const upstream = httpRequest(
      {
        host: hub.hostname,
        port: hub.port,
        method: req.method,
        path: req.url,
        headers: { ...req.headers, host: hub.host },
      },
      (answer) => {
        record.answeredWith = answer.statusCode;
        res.writeHead(answer.statusCode, answer.headers);
        if (isStream) {
          open.add(res);
          res.on("close", () => open.delete(res));
        }
        const connectedId = isStream && gateway.mode.connectedId;
        if (isStream && !connectedId) {
          answer.on("data", (chunk) => stalled.has(res) || res.write(chunk));
          answer.on("close", () => res.end());
          return;
        }
        if (!connectedId) return answer.pipe(res);
        // Reshape the stream's start into the wire where `connected` carries an `id:` and comes in
        // the same block as `retry:`.
        let head = "";
        answer.setEncoding("utf8");
        answer.on("data", (chunk) => {
          if (head === null) return res.write(chunk);
          head += chunk;
          const end = head.indexOf("event: connected");
          if (end < 0) return;
          res.write(
            head.replace(/retry: (\d+)\n\nevent: connected/, `retry: $1\nid: ${connectedId}\nevent: connected`),
          );
          head = null;
        });
        answer.on("close", () => res.end());
      },
    );
    upstream.on("error", () => res.destroy());
    // The browser went away (or the gateway cut the stream): end the request to the hub too.
    res.on("close", () => upstream.destroy());
    req.pipe(upstream);
  });
  return new Promise((done) => {
    server.listen(0, "127.0.0.1", () => {
      gateway.base = `http://127.0.0.1:${server.address().port}`;
      gateway.stop = () =>
        new Promise((closed) => {
          gateway.cutStreams();
          server.closeAllConnections();
          server.close(closed);
        });
      done(gateway);
    });
  });
}

/** The test page: loads the package as `window.Herald` and gives `track(client)`, which logs into `window.log`. */
const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>herald-hub-client test</title></head>
<body><div id="app"></div>
<script type="module">
import * as Herald from "/dist/index.js";
window.Herald = Herald;
window.log = [];
window.track = (client) => {
  client.onState((state) => log.push({ kind: "state", state }));
  client.onConnected((info) => log.push({ kind: "connected", info }));
  client.onReset((info) => log.push({ kind: "reset", ...info }));
  client.onError((error) => log.push({ kind: "error", ...error }));
  client.on("*", (event) => log.push({ kind: "event", id: event.id, type: event.type, data: event.data, raw: event.raw, via: event.via }));
  return client;
};
window.ready = true;
</script></body></html>`;

/** Launches Debian's Chromium headless with a fresh profile. */
export async function launchBrowser() {
  const profile = mkdtempSync(join(tmpdir(), "herald-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  return {
    context,
    async newPage(url) {
      const page = await context.newPage();
      page.on("pageerror", (error) => console.error("page error:", error.message));
      await page.goto(url);
      await page.waitForFunction(() => window.ready === true || document.querySelector("#app")?.dataset.ready === "1");
      return page;
    },
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Waits until `predicate` (run in the page with `arg`) is true; fails with the page's log otherwise. */
export async function waitInPage(page, predicate, arg, timeout = PATIENCE_MS) {
  try {
    await page.waitForFunction(predicate, arg, { timeout, polling: 50 });
  } catch (error) {
    const log = await page.evaluate(() => JSON.stringify(window.log ?? document.body.innerText)).catch(() => "?");
    throw new Error(`${error.message}\npage log: ${log}`);
  }
}

/** Events the page logged so far. */
export function pageEvents(page) {
  return page.evaluate(() => window.log.filter((entry) => entry.kind === "event"));
}

/** Waits until `check()` is truthy (Node side). */
export async function eventually(check, timeout = PATIENCE_MS) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${check}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** An HS256 JWT for the hub's `--jwt-secret`. */
export function mintToken(secret, claims) {
  const b64 = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const body = `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}`;
  return `${body}.${createHmac("sha256", secret).update(body).digest("base64url")}`;
}
