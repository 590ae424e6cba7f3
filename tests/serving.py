"""Run an ASGI app under a real uvicorn server on a free loopback port, for tests.

    with serve(app) as base_url:
        httpx.post(base_url + "/xds", ...)

The server runs in a daemon thread with its own event loop; ``serve`` returns only once the socket accepts
connections and, on exit, asks uvicorn to stop and waits for the thread (bounded), so tests neither race
the start-up nor leak servers.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn

__all__ = ["serve"]


class _ThreadedServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # older uvicorn; newer ones skip this off the main thread
        pass


@contextlib.contextmanager
def serve(app: Any, *, host: str = "127.0.0.1", startup_timeout: float = 15.0, **config: Any) -> Iterator[str]:
    """Serve *app* on ``host`` at a free port and yield ``http://host:port``.

    Extra keyword arguments go to :class:`uvicorn.Config` (e.g. ``http="h11"``, ``loop="asyncio"``).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    config.setdefault("log_level", "warning")
    config.setdefault("lifespan", "auto")
    config.setdefault("timeout_graceful_shutdown", 3)
    server = _ThreadedServer(uvicorn.Config(app, **config))
    failure: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as err:  # surfaced to the test below
            failure.append(err)

    thread = threading.Thread(target=run, name="uvicorn-%d" % port, daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if failure or not thread.is_alive():
            sock.close()
            raise RuntimeError("uvicorn did not start: %r" % (failure[0] if failure else "thread exited"))
        if time.monotonic() > deadline:
            server.should_exit = True
            thread.join(5)
            sock.close()
            raise RuntimeError("uvicorn did not start within %.0f s" % startup_timeout)
        time.sleep(0.01)
    try:
        yield "http://%s:%d" % (host, port)
    finally:
        server.should_exit = True
        thread.join(startup_timeout)
        if thread.is_alive():  # a stuck connection: force it
            server.force_exit = True
            thread.join(5)
        sock.close()
