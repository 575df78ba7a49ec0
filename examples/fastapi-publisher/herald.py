"""A Herald publisher in a few lines: POST JSON to the hub with the API key, retry what is safe.

Every publish can carry an id; publishing an id again while it is in the hub's history delivers
nothing and answers the first result with ``"duplicate": true``, so a retry never delivers twice.
"""

import asyncio
import os
from typing import Any
from urllib.parse import quote

import httpx

RETRY_STATUSES = {502, 503, 504}


class HeraldError(Exception):
    """The hub refused the event (``status`` and the stable ``code`` say why)."""

    def __init__(self, status: int, code: str | None, message: str | None):
        super().__init__(f"herald: {status} {code}: {message}")
        self.status = status
        self.code = code


class Herald:
    def __init__(self, url: str | None = None, api_key: str | None = None, attempts: int = 3):
        headers = {}
        api_key = api_key or os.environ.get("HERALD_API_KEY")
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        self._client = httpx.AsyncClient(
            base_url=url or os.environ.get("HERALD_URL", "http://127.0.0.1:8080"), headers=headers, timeout=10
        )
        self._attempts = attempts

    async def to_channel(self, channel: str, data: Any, event: str | None = None, id: str | None = None) -> dict:
        """Every subscriber of ``channel``."""
        return await self._post(f"/api/channels/{quote(channel, safe='')}/events", data, event, id)

    async def to_user(self, user_id: str, data: Any, event: str | None = None, id: str | None = None) -> dict:
        """One user: every stream on the channel ``user:{user_id}``."""
        return await self._post(f"/api/users/{quote(user_id, safe='')}/events", data, event, id)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _post(self, path: str, data: Any, event: str | None, id: str | None) -> dict:
        body = {"data": data}
        if event is not None:
            body["event"] = event
        if id is not None:
            body["id"] = id
        for attempt in range(1, self._attempts + 1):
            try:
                response = await self._client.post(path, json=body)
            except httpx.TransportError:
                if attempt == self._attempts:
                    raise
                continue  # the network failed: with an id, retrying is safe
            if response.is_success:
                return response.json()  # {"id", "recipients", "duplicate"?}
            if response.status_code in RETRY_STATUSES and attempt < self._attempts:
                await asyncio.sleep(0.2 * attempt)
                continue
            is_json = response.headers.get("content-type", "").startswith("application/json")
            error = response.json().get("error", {}) if is_json else {}
            raise HeraldError(response.status_code, error.get("code"), error.get("message"))
        raise AssertionError("the loop returns or raises")
