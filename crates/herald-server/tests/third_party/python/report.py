"""What every client script prints, and the reconnect loop an application writes around a client
that does not reconnect by itself.

One JSON object per line on standard output, read by
crates/herald-server/tests/third_party_clients.rs; `t` is the wall clock in milliseconds:
  {"t":…,"kind":"open"}                                     a connection opened
  {"t":…,"kind":"event","type":…,"id":…,"data":…,"retry":…}   an event handed to the application
  {"t":…,"kind":"error","message":…}                        the connection failed or ended
"""

import json
import sys
import time

# How long the application waits before reconnecting when the library never handed it a `retry:`.
RECONNECT_WITHOUT_RETRY_S = 0.25


def report(kind, **fields):
    sys.stdout.write(json.dumps({"t": time.time() * 1000, "kind": kind, **fields}) + "\n")
    sys.stdout.flush()


def stream_url():
    if len(sys.argv) != 2:
        sys.stderr.write(f"usage: {sys.argv[0]} STREAM_URL\n")
        sys.exit(2)
    return sys.argv[1]


def reconnect_forever(connect_once):
    """Calls `connect_once(last_event_id)` again and again, as an application would.

    `connect_once` yields `(type, id, data, retry)` per event; `id` is None when the library says
    nothing about it (the last id is kept), `retry` is None when the event carried none. Between
    connections it waits the last `retry:` the library handed over, in milliseconds.
    """
    last_event_id = None
    retry_ms = None
    while True:
        try:
            for event_type, event_id, data, retry in connect_once(last_event_id):
                report("event", type=event_type, id=event_id, data=data, retry=retry)
                if event_id is not None:
                    last_event_id = event_id
                if retry is not None:
                    retry_ms = int(retry)
            report("error", message="the stream ended")
        except Exception as error:  # noqa: BLE001 - any failure means: reconnect
            report("error", message=repr(error))
        time.sleep(RECONNECT_WITHOUT_RETRY_S if retry_ms is None else retry_ms / 1000)
