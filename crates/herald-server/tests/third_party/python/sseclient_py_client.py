"""Python `sseclient-py` over a streaming `requests` response, as its README shows.

sseclient-py parses; it does not reconnect, so the loop in report.py does. Its `Event.id` is the
event's own `id:` field (None without one), and `Event.retry` the block's `retry:` (None without).
It reads the response by iterating it, which `requests` does in blocks of 128 bytes.
"""

import requests
import sseclient

from report import reconnect_forever, report, stream_url

url = stream_url()
session = requests.Session()


def connect_once(last_event_id):
    headers = {"Accept": "text/event-stream"}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    response = session.get(url, stream=True, headers=headers, timeout=(10, None))
    response.raise_for_status()
    report("open")
    try:
        for event in sseclient.SSEClient(response).events():
            yield event.event, event.id, event.data, event.retry
    finally:
        response.close()


reconnect_forever(connect_once)
