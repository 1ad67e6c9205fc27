"""A real uvicorn serving an app on a free loopback port in a background thread, and a
polling helper with a deadline (shared by the serving, contract and auth tests)."""

from __future__ import annotations

import threading
import time

import uvicorn


def poll(check, timeout: float, what: str, interval: float = 0.05):
    """Call ``check()`` until it returns a truthy value or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(interval)  # poll interval; the deadline bounds the wait


class ServerThread:
    """``with ServerThread(app, **uvicorn_config) as server: httpx.get(server.url + ...)``"""

    def __init__(self, app, **config) -> None:
        from hyena_serve.triton_local import free_port

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    **config))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        poll(lambda: self.server.started or not self.thread.is_alive(), 60, "uvicorn start")
        assert self.thread.is_alive(), "uvicorn exited during startup"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)
