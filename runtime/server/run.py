"""Running the application under uvicorn: in the foreground (`babel-edge serve`), or on a
thread of this process (tests, benchmarks).

Stopping (Ctrl-C or SIGTERM) is graceful: no new connections or requests are accepted,
the requests in flight get up to `shutdown_timeout` seconds to finish, then the ones still
generating are cancelled at their next token (they answer 503, or end their stream with an
error event); then the engine thread is waited for and the engine closed. A second Ctrl-C
cancels them at once; a third forces uvicorn out, and even then the engine is closed only
after its thread has stopped.
"""
from __future__ import annotations

import contextlib
import signal
import socket
import sys
import threading
import time

import uvicorn
from uvicorn.server import HANDLED_SIGNALS

from babel_edge.errors import UserError


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: a free one), or a UserError saying why not."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(2048)
    except OSError as e:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror}; choose another --port "
                        f"or --host") from None
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class _Server(uvicorn.Server):
    """uvicorn, with the application's graceful stop: when uvicorn starts shutting down
    (it stops accepting connections and waits for the requests in flight), the service
    refuses new work and, after `grace` seconds, cancels what still runs, so every request
    ends with an answer (a 503, or an error event in a stream) instead of a cancelled task,
    and the application's shutdown (engine thread, engine) always runs. uvicorn's own
    timeout is only a backstop."""

    def __init__(self, app, grace: float, verbose: bool, on_ready=None):
        super().__init__(uvicorn.Config(
            app, lifespan="on", log_level="info" if verbose else "warning", access_log=verbose,
            timeout_graceful_shutdown=grace + 5, ws="none", server_header=False))
        self.app, self.grace, self._signals, self._on_ready = app, grace, 0, on_ready

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if self.started and self._on_ready is not None:
            self._on_ready()

    async def shutdown(self, sockets=None) -> None:
        self.app.state.service.begin_shutdown(self.grace)
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self):
        # uvicorn's version raises the signals again once it has stopped (a KeyboardInterrupt
        # or a kill after a graceful stop); here a stop asked for is simply a return
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in HANDLED_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig, frame) -> None:
        self._signals += 1
        if self._signals == 1:
            print(f"stopping: requests in flight get up to {self.grace:g} s to finish "
                  f"(Ctrl-C again to cancel them now)", file=sys.stderr, flush=True)
            self.should_exit = True
        elif self._signals == 2:       # cancel at the next token; the shutdown stays orderly
            self.app.state.service.worker.cancel_all("shutdown")
        else:                          # uvicorn's forced exit; the engine is still closed
            self.force_exit = True     # after its thread stops (serve's finally)


def serve(app, sock: socket.socket, shutdown_timeout: float = 10.0, verbose: bool = False,
          on_ready=None) -> None:
    """Serve until Ctrl-C or SIGTERM; returns after the engine is closed. `on_ready()` is
    called once requests are answered."""
    try:
        _Server(app, shutdown_timeout, verbose, on_ready).run(sockets=[sock])
    finally:
        sock.close()
        app.state.service.close()     # a no-op after an orderly stop


class BackgroundServer:
    """The application served on a thread of this process:

        with BackgroundServer(create_app(engine)) as server:
            openai.OpenAI(base_url=server.url + "/v1", api_key=...)
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0,
                 shutdown_timeout: float = 10.0):
        self.app = app
        self.sock = bind(host, port)
        self.url = url_of(self.sock)
        self.server = _Server(app, shutdown_timeout, verbose=False)
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                        name="babel-edge-server", daemon=True)

    def start(self, timeout: float = 60.0) -> "BackgroundServer":
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Graceful stop, as on Ctrl-C; returns when the engine is closed."""
        self.server.should_exit = True
        self._thread.join()
        self.sock.close()
        self.app.state.service.close()

    def __enter__(self) -> "BackgroundServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
