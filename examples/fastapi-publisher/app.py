"""The FastAPI app: its routes change state, then tell Herald, which delivers to the browsers.

No clients list, no broadcast loop, no heartbeat task: the hub holds the connections.
Run: ``HERALD_URL=http://127.0.0.1:8080 uvicorn app:app``.
"""

from contextlib import asynccontextmanager
from itertools import count

from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from herald import Herald, HeraldError


class NewOrder(BaseModel):
    item: str


class Notification(BaseModel):
    text: str


def create_app(herald_url: str | None = None, api_key: str | None = None) -> FastAPI:
    order_ids = count(1)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.herald = Herald(herald_url, api_key)
        yield
        await app.state.herald.aclose()

    app = FastAPI(lifespan=lifespan)

    @app.exception_handler(HeraldError)
    async def refused(request: Request, error: HeraldError):
        """The hub's refusal of bad input is the caller's 4xx; anything else is a 502."""
        status = error.status if 400 <= error.status < 500 else 502
        return JSONResponse({"error": {"code": error.code, "message": str(error)}}, status_code=status)

    @app.post("/orders", status_code=201)
    async def create_order(body: NewOrder, idempotency_key: str | None = Header(default=None)):
        """To a channel; the event id comes from the Idempotency-Key, so a retry publishes once."""
        order = {"id": next(order_ids), "item": body.item}
        result = await app.state.herald.to_channel(
            "orders", order, event="order.created", id=f"order-{idempotency_key}" if idempotency_key else None
        )
        return {"order": order, "herald": result}

    @app.post("/users/{user_id}/notify")
    async def notify(user_id: str, body: Notification):
        """To one user: what used to be ``send_to_user(user_id, ...)`` over a hand-kept dict."""
        return await app.state.herald.to_user(user_id, {"text": body.text}, event="notification")

    return app


app = create_app()
