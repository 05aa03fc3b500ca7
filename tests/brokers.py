"""The RabbitMQ brokers the suite talks to, and the RabbitMQ 4.3 ones scripts/rabbitmq makes.

- "rabbitmq-3.10": the machine's broker on 127.0.0.1:5672 (never started or stopped here).
- "rabbitmq-4.3": Debian forky's RabbitMQ 4.3 with upstream defaults on 127.0.0.1:5673,
  started by ``scripts/rabbitmq ensure`` (:func:`ensure_broker43`).
- a three-node 4.3 cluster on 127.0.0.1:5674, 5675 and 5676 (:func:`cluster_ensure`,
  :func:`cluster_urls`, :func:`stop_node`, :func:`start_node`).

The fixtures that use these live in conftest.py (``broker43_available``, ``amqp_broker``,
``rabbitmq43_cluster``).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import kombu

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "rabbitmq"
HOST = "127.0.0.1"


@dataclass(frozen=True)
class Broker:
    """One broker: ``url`` is the bridge's (oslo.messaging) transport URL."""

    name: str
    url: str
    port: int
    host: str = HOST
    version: str | None = None  # filled in by ``with_version``

    @property
    def kombu_url(self) -> str:
        """The same broker as a kombu/py-amqp URL (vhost "/")."""
        return f"amqp://guest:guest@{self.host}:{self.port}//"

    def with_version(self) -> Broker:
        return Broker(self.name, self.url, self.port, self.host, server_version(self))


def _broker(name: str, host: str, port: int) -> Broker:
    return Broker(name, f"rabbit://guest:guest@{host}:{port}/", port, host)


BROKER310 = _broker("rabbitmq-3.10", os.environ.get("BRIDGE_TEST_BROKER_HOST", HOST),
                    int(os.environ.get("BRIDGE_TEST_BROKER_PORT", "5672")))
BROKER43 = _broker("rabbitmq-4.3", HOST, 5673)
#: The two single brokers, by name.
BROKERS: dict[str, Broker] = {b.name: b for b in (BROKER310, BROKER43)}

#: The AMQP ports of the 4.3 cluster's nodes 1, 2 and 3.
CLUSTER_PORTS = (5674, 5675, 5676)
CLUSTER_NODES = tuple(f"rabbit43c{n}@localhost" for n in (1, 2, 3))


class BrokerUnavailable(RuntimeError):
    """scripts/rabbitmq could not make or start a 4.3 broker; the message says why."""


def cache_dir() -> Path:
    """Where scripts/rabbitmq keeps its root and nodes (the same rule as the script's)."""
    if os.environ.get("BRIDGE_CACHE_DIR"):
        base = Path(os.environ["BRIDGE_CACHE_DIR"])
    else:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        base = Path(xdg) / "rpc-bridge"
    return base / "rabbitmq-4.3"


def reachable(port: int, host: str = HOST, timeout: float = 2.0) -> bool:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def run_script(*args: str, timeout: float = 600.0) -> str:
    """Run ``scripts/rabbitmq ARGS``; return its stdout, or raise BrokerUnavailable with the
    end of its stderr (which names the log files to read)."""
    try:
        proc = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise BrokerUnavailable(f"scripts/rabbitmq {' '.join(args)}: no answer in "
                                f"{timeout:.0f} s") from exc
    except OSError as exc:
        raise BrokerUnavailable(f"scripts/rabbitmq {' '.join(args)}: {exc}") from exc
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
        raise BrokerUnavailable(f"scripts/rabbitmq {' '.join(args)} exited "
                                f"{proc.returncode}:\n{tail}")
    return proc.stdout


class _SessionLock:
    """An exclusive lock on a file in the cache, held across processes (fcntl.flock)."""

    def __init__(self, name: str) -> None:
        self.path = cache_dir() / name

    def __enter__(self) -> _SessionLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "w")  # closed in __exit__
        fcntl.flock(self._file, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()


_ensured: dict[str, BaseException | None] = {}
_ensure_lock = threading.Lock()


def ensure_broker43() -> Broker:
    """Start the 4.3 broker if it is not running (once per process; under a file lock, so
    parallel test processes do not race), and return it with its version.

    Raises BrokerUnavailable when it cannot be made or started (again on each call: the
    first failure is remembered).
    """
    with _ensure_lock:
        if "broker43" not in _ensured:
            try:
                with _SessionLock("pytest-ensure.lock"):
                    run_script("ensure")
                _ensured["broker43"] = None
            except BrokerUnavailable as exc:
                _ensured["broker43"] = exc
        error = _ensured["broker43"]
    if error is not None:
        raise BrokerUnavailable(str(error))
    return BROKER43.with_version()


_versions: dict[tuple[str, int], str] = {}


def server_version(broker: Broker) -> str:
    """The version the broker reports in connection.start (server_properties["version"])."""
    key = (broker.host, broker.port)
    if key not in _versions:
        with kombu.Connection(broker.kombu_url, connect_timeout=5) as conn:
            conn.connect()
            version = conn.connection.server_properties.get("version", "")
        if isinstance(version, bytes):
            version = version.decode()
        _versions[key] = str(version)
    return _versions[key]


# --- the three-node 4.3 cluster --------------------------------------------------------------
def cluster_urls() -> str:
    """The cluster as one transport URL with three hosts."""
    hosts = ",".join(f"guest:guest@{HOST}:{port}" for port in CLUSTER_PORTS)
    return f"rabbit://{hosts}/"


def cluster_running() -> bool:
    """All three nodes answer AMQP."""
    return all(reachable(port) for port in CLUSTER_PORTS)


def cluster_ensure() -> bool:
    """Start and join the cluster unless it runs; return True if this call started it."""
    with _SessionLock("pytest-cluster.lock"):
        was_running = cluster_running()
        run_script("cluster-ensure")
    return not was_running


def cluster_stop() -> None:
    with _SessionLock("pytest-cluster.lock"):
        run_script("cluster-stop")


def stop_node(n: int) -> None:
    """Stop cluster node ``n`` (1..3); the other two keep running."""
    run_script("cluster-node-stop", str(n), timeout=120)


def start_node(n: int) -> None:
    """Start cluster node ``n`` (1..3) again and wait for its AMQP port; it rejoins."""
    run_script("cluster-node-start", str(n), timeout=120)


def cluster_running_nodes(via: int = 1) -> list[str]:
    """The running nodes per ``rabbitmqctl cluster_status``, asked of node ``via``."""
    out = run_script("ctl", str(via), "-q", "cluster_status", "--formatter", "json",
                     timeout=120)
    return sorted(json.loads(out)["running_nodes"])
