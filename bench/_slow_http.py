"""A local HTTP file server that waits before answering each request: a distant object store, on 127.0.0.1."""

from __future__ import annotations

import functools
import http.server
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class _DelayedHandler(http.server.SimpleHTTPRequestHandler):
    delay_s = 0.1

    def handle_one_request(self) -> None:
        # The wait comes before the request is even parsed, so HEAD, GET and listings all pay it.
        time.sleep(self.delay_s)
        super().handle_one_request()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
        pass


@contextmanager
def slow_http_server(root: Path, delay_s: float) -> Iterator[str]:
    """Serve `root` on 127.0.0.1 (a free port, one thread per connection), `delay_s` before each answer."""
    handler = type("Handler", (_DelayedHandler,), {"delay_s": delay_s})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
