"""The FastAPI example against a real hub on a free port (run: python -m unittest)."""

import json
import os
import re
import socket
import subprocess
import threading
import time
import unittest
from pathlib import Path

import httpx
import uvicorn

from app import create_app

API_KEY = "example-publisher-key-0123456789"
HERALD_BIN = os.environ.get("HERALD_BIN", str(Path(__file__).resolve().parents[2] / "target/debug/herald"))


class FastApiPublisherTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.hub = subprocess.Popen(
            [HERALD_BIN, "serve", "--listen", "127.0.0.1:0", "--api-keys", API_KEY],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for line in cls.hub.stderr:
            found = re.search(r"herald listening on (http://\S+)", line)
            if found:
                cls.hub_url = found.group(1)
                break
        else:
            raise RuntimeError("herald did not start")
        cls.auth = {"authorization": f"Bearer {API_KEY}"}
        # The app itself, served by uvicorn on a socket bound to a free port.
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        cls.app_url = "http://127.0.0.1:%d" % listener.getsockname()[1]
        cls.server = uvicorn.Server(uvicorn.Config(create_app(cls.hub_url, API_KEY), log_level="warning"))
        cls.thread = threading.Thread(target=cls.server.run, kwargs={"sockets": [listener]})
        cls.thread.start()
        deadline = time.monotonic() + 10
        while not cls.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)

    @classmethod
    def tearDownClass(cls):
        cls.server.should_exit = True
        cls.thread.join()
        cls.hub.kill()
        cls.hub.wait()
        cls.hub.stderr.close()

    def app(self):
        return httpx.Client(base_url=self.app_url, timeout=10)

    def test_an_order_is_published_to_the_channel_once_even_when_retried(self):
        with self.app() as client:
            first = client.post("/orders", json={"item": "tea"}, headers={"idempotency-key": "k-1"})
            again = client.post("/orders", json={"item": "tea"}, headers={"idempotency-key": "k-1"})
        self.assertEqual(first.status_code, 201)
        self.assertTrue(again.json()["herald"]["duplicate"])
        events = httpx.get(f"{self.hub_url}/api/channels/orders/events", headers=self.auth).json()["events"]
        self.assertEqual([(e["id"], e["event"], e["data"]["item"]) for e in events], [("order-k-1", "order.created", "tea")])

    def test_a_notification_reaches_a_live_stream_of_that_user(self):
        with httpx.stream("GET", f"{self.hub_url}/api/channels/user:42/stream", headers=self.auth, timeout=10) as stream:
            lines = stream.iter_lines()
            while next(lines) != "event: connected":
                pass
            with self.app() as client:
                answer = client.post("/users/42/notify", json={"text": "your export is ready"}).json()
            self.assertEqual(answer["recipients"], 1)
            while (line := next(lines)) != "event: notification":
                pass
            self.assertEqual(json.loads(next(lines).removeprefix("data: ")), {"text": "your export is ready"})

    def test_an_event_the_hub_refuses_is_answered_with_its_code(self):
        with self.app() as client:
            refused = client.post("/users/bad%20id/notify", json={"text": "x"})
        self.assertEqual(refused.status_code, 400)
        self.assertEqual(refused.json()["error"]["code"], "invalid_channel")


if __name__ == "__main__":
    unittest.main()
