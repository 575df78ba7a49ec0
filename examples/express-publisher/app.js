// The Express app: its routes change state, then tell Herald, which delivers to the browsers.
// No clients array, no broadcast loop, no heartbeat timer: the hub holds the connections.

import express from "express";
import { createHerald } from "./herald.js";

export function createApp(herald = createHerald()) {
  const app = express();
  app.use(express.json());
  let nextOrder = 1;

  // To a channel: everyone watching `orders` sees the new order. The event id is derived from the
  // order, so a retried request (Idempotency-Key header) is published once.
  app.post("/orders", async (req, res) => {
    const key = req.get("idempotency-key");
    const order = { id: nextOrder++, item: req.body.item };
    const result = await herald.toChannel("orders", {
      event: "order.created",
      data: order,
      id: key ? `order-${key}` : undefined,
    });
    res.status(result.duplicate ? 200 : 201).json({ order, herald: result });
  });

  // To one user: what used to be `sendToUser(userId, ...)` over a hand-kept clients map.
  app.post("/users/:userId/notify", async (req, res) => {
    const result = await herald.toUser(req.params.userId, {
      event: "notification",
      data: { text: req.body.text },
    });
    res.json(result);
  });

  // The hub's refusal of bad input is the caller's 4xx; anything else is a 502.
  app.use((error, req, res, next) => {
    const status =
      error.status >= 400 && error.status < 500 ? error.status : 502;
    res
      .status(status)
      .json({
        error: {
          code: error.code ?? "herald_unreachable",
          message: error.message,
        },
      });
  });

  return app;
}
