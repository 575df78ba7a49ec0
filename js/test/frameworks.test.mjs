// A React component and a Vue component render live events in a real Chromium, through the
// package's `react` and `vue` entry points, bundled here with esbuild as an application would.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { build } from "esbuild";
import { eventually, launchBrowser, packageRoot, startGateway, startHub } from "./harness.mjs";

let browser;
let bundleDir;
before(async () => {
  bundleDir = mkdtempSync(join(tmpdir(), "herald-bundles-"));
  await build({
    entryPoints: {
      react: join(packageRoot, "test/fixtures/react-app.jsx"),
      vue: join(packageRoot, "test/fixtures/vue-app.js"),
    },
    bundle: true,
    format: "esm",
    outdir: bundleDir,
    jsx: "automatic",
    define: {
      "process.env.NODE_ENV": '"development"',
      __VUE_OPTIONS_API__: "true",
      __VUE_PROD_DEVTOOLS__: "false",
      __VUE_PROD_HYDRATION_MISMATCH_DETAILS__: "false",
    },
    logLevel: "error",
  });
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  if (bundleDir) rmSync(bundleDir, { recursive: true, force: true });
});

for (const framework of ["react", "vue"]) {
  test(`a ${framework} component renders live events, follows its channels and closes on unmount`, async () => {
    const hub = await startHub();
    const gateway = await startGateway(hub.base, { bundleDir });
    const page = await browser.newPage(`${gateway.base}/app/${framework}`);
    try {
      await page.locator("#state", { hasText: "open" }).waitFor();
      await hub.publish("news", { event: "created", data: { title: "first" } });
      await hub.publish("news", { event: "ignored", data: { title: "not listed" } });
      await page.locator("li", { hasText: "first" }).waitFor();

      await page.evaluate(() => window.setChannels(["news", "sports"]));
      await eventually(async () => {
        const { clients } = await hub.get("/api/clients");
        return clients.length === 1 && clients[0].channels.length === 2;
      });
      await hub.publish("sports", { event: "created", data: { title: "second" } });
      await page.locator("li", { hasText: "second" }).waitFor();
      assert.deepEqual(await page.locator("li").allTextContents(), ["first", "second"]);
      // useHeraldEvent heard every event, the one the list leaves out included.
      assert.equal(await page.locator("#heard").textContent(), "3");

      await page.evaluate(() => window.unmount());
      await eventually(async () => (await hub.get("/api/clients")).clients.length === 0);
    } finally {
      await page.close();
      await gateway.stop();
      await hub.stop();
    }
  });
}
