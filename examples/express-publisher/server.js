// Runs the example: HERALD_URL (default http://127.0.0.1:8080), HERALD_API_KEY (when the hub has
// --api-keys), PORT (default 3000).
import { createApp } from "./app.js";

const port = Number(process.env.PORT ?? 3000);
createApp().listen(port, () =>
  console.log(`express publisher on http://127.0.0.1:${port}`),
);
