"""Run one emulated server's WinRM app on a background thread, for tests.

The lab process serves WinRM on its own ports; tests of the WinRM emulation itself (and
product tests that want one Windows server with their own twins) can instead start just the
app here, over HTTPS with a certificate from :func:`asr_lab.pki.ensure_pki`, and point the
real pypsrp client or PsrpHook at it.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn

START_TIMEOUT = 10.0


@dataclass(frozen=True)
class RunningServer:
    host: str
    port: int
    scheme: str

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}/wsman"


@contextmanager
def running_winrm_server(app, *, certfile: Path | None = None, keyfile: Path | None = None,
                         host: str = "127.0.0.1") -> Iterator[RunningServer]:
    """Serve ``app`` on a free port (HTTPS when given a certificate) until the block exits."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    tls = {"ssl_certfile": str(certfile), "ssl_keyfile": str(keyfile)} if certfile else {}
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1, server_header=False,
                                          **tls))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="winrm-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the WinRM test server did not start")
        time.sleep(0.01)
    try:
        yield RunningServer(host, sock.getsockname()[1], "https" if certfile else "http")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
