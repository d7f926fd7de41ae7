"""A loopback TCP proxy for tests: put it between the hub and a real server, then
make the server hang (``hang``: connections accepted, never answered), go away
(``refuse``: every connection dropped at once), come back (``forward``), or end
the line for good (``cut``). With ``tls`` it terminates TLS in front of a
plaintext server: the hub speaks TLS to the proxy, the proxy plaintext onward.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class TcpProxy:
    def __init__(self, target: tuple[str, int], *, tls: ssl.SSLContext | None = None) -> None:
        self.target = target
        self.tls = tls
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._mode = "forward"
        self._closed = False
        self._thread = threading.Thread(target=self._accept, name="tcp-proxy", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def hang(self) -> None:
        """From now on: accept, read, answer nothing (a server that hangs)."""
        self._mode = "hang"
        self._drop_all()

    def refuse(self) -> None:
        """From now on: drop every connection as it comes (a server that is gone)."""
        self._mode = "refuse"
        self._drop_all()

    def forward(self) -> None:
        """Back to passing traffic on (the server is back)."""
        self._mode = "forward"

    def cut(self) -> None:
        """Close the listener and every connection: the server is gone."""
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()
        self._drop_all()
        self._thread.join(timeout=5)

    def _drop_all(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def _keep(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._keep(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            if self.tls is not None:
                client = self.tls.wrap_socket(client, server_side=True)
                self._keep(client)
            if self._mode == "refuse":
                client.close()
                return
            if self._mode == "hang":
                while client.recv(65536):
                    pass
                return
            upstream = socket.create_connection(self.target, timeout=5)
            upstream.settimeout(None)
            self._keep(upstream)
        except (OSError, ssl.SSLError):
            with contextlib.suppress(OSError):
                client.close()
            return
        threading.Thread(target=_pump, args=(upstream, client), daemon=True).start()
        _pump(client, upstream)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@contextmanager
def proxy_to(host: str, port: int, *, tls: ssl.SSLContext | None = None) -> Iterator[TcpProxy]:
    proxy = TcpProxy((host, port), tls=tls)
    try:
        yield proxy
    finally:
        proxy.cut()
