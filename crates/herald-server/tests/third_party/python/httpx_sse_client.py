"""Python `httpx-sse` (used by the MCP Python SDK) over `httpx`.

httpx-sse parses; it does not reconnect, so the loop in report.py does, with the `retry` and `id`
httpx-sse hands over. Its `ServerSentEvent.id` is the stream's last event id (kept across events
of one connection, as the standard's lastEventId), so the application stores it as given.
"""

import httpx
from httpx_sse import connect_sse

from report import reconnect_forever, report, stream_url

url = stream_url()
client = httpx.Client(timeout=httpx.Timeout(10.0, read=None))


def connect_once(last_event_id):
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    with connect_sse(client, "GET", url, headers=headers) as source:
        source.response.raise_for_status()
        report("open")
        for sse in source.iter_sse():
            yield sse.event, sse.id, sse.data, sse.retry


reconnect_forever(connect_once)
