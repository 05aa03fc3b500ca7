"""Helpers for the gRPC tests: raw requests, status details, test endpoints."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import grpc
from grpc_status import rpc_status

import bridge
from bridge._proto.bridge.v1 import bridge_pb2 as pb
from bridge.transport.grpc.values import fill_map


def envelope(topic: str = "topic", method: str = "ping", server: str = "", exchange: str = "",
             fanout: bool = False, namespace: str | None = None, version: str | None = None,
             ctxt: dict | None = None, **args) -> pb.Envelope:
    env = pb.Envelope(target=pb.Target(topic=topic, server=server, exchange=exchange,
                                       fanout=fanout), method=method)
    if namespace is not None:
        env.namespace = namespace
    if version is not None:
        env.version = version
    fill_map(env.context, ctxt or {}, "context")
    fill_map(env.args, args, "argument")
    return env


def channel(address: str) -> grpc.Channel:
    """A plain channel to a grpc:// address reported by a server."""
    return grpc.insecure_channel(address.split("://", 1)[1])


def raw_call(chan: grpc.Channel, data: bytes, timeout: float = 10,
             method: str = "/bridge.v1.Bridge/Call") -> bytes:
    return chan.unary_unary(method)(data, timeout=timeout)


def failure_of(err: grpc.RpcError) -> pb.Failure | None:
    """The bridge.v1.Failure in an error's google.rpc.Status, or None."""
    status = rpc_status.from_call(err)
    if status is None:
        return None
    assert status.code == err.code().value[0]
    assert status.message == err.details()
    for detail in status.details:
        failure = pb.Failure()
        if detail.Unpack(failure):
            return failure
    return None


def status_error(chan: grpc.Channel, env: pb.Envelope | None,
                 method: str = "/bridge.v1.Bridge/Call", timeout: float | None = 10,
                 request: bytes | None = None):
    """(code, Failure or None, details) of a raw request that must fail."""
    import pytest

    data = request if request is not None else pb.CallRequest(envelope=env).SerializeToString()
    with pytest.raises(grpc.RpcError) as info:
        raw_call(chan, data, timeout=timeout, method=method)
    return info.value.code(), failure_of(info.value), info.value.details()


def health(chan: grpc.Channel, service: str = "") -> int:
    """The health status the server at ``chan`` reports for ``service``."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    stub = health_pb2_grpc.HealthStub(chan)
    return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


# -- endpoints of the gRPC tests ----------------------------------------------------------------

class AppError(Exception):
    """An application exception, rebuilt on the caller's side only when its module is allowed."""


class Failing:
    target = bridge.Target(namespace="failing")

    def app_error(self, ctxt, text="app"):
        raise AppError(text)

    @bridge.expected_exceptions(KeyError)
    def expected(self, ctxt, key="k"):
        raise KeyError(key)

    def builtin(self, ctxt):
        raise ValueError("bad value")

    def not_primitive(self, ctxt):
        return object()

    def huge(self, ctxt, size=0):
        return "x" * size


class Gate:
    """``wait`` returns only once the test opens the gate (or after 10 s)."""

    target = bridge.Target(namespace="gate")

    def __init__(self):
        self.event = threading.Event()

    def wait(self, ctxt):
        return "opened" if self.event.wait(10) else "gave up"


class Named:
    """``name`` returns its name; ``note`` records casts."""

    def __init__(self, name):
        self.name_value = name
        self.casts = []
        self.seen = threading.Event()

    def name(self, ctxt):
        return self.name_value

    def note(self, ctxt, value=None):
        self.casts.append(value)
        self.seen.set()


def make_endpoints():
    """Fresh endpoints (the counter keeps state) for each server."""
    from endpoints import default_endpoints

    return [*default_endpoints(), Failing()]


def wait_in_flight(srv) -> None:
    """Wait (at most 10 s) until the server runs a call."""
    from tests.waiting import wait_for

    wait_for(lambda: srv.in_flight, 10, interval=0.01)
    assert srv.in_flight


@contextlib.contextmanager
def default_endpoints_served(url: str, topic: str, server: str,
                             conf: dict | None = None) -> Iterator[str]:
    """Serve the default endpoints on ``topic`` over ``url`` (a grpc:// URL, with ``conf``
    the transport's); yield the listening HOST:PORT, then stop and clean up."""
    from endpoints import default_endpoints

    transport = bridge.get_transport(conf, url)
    srv = bridge.get_rpc_server(transport, bridge.Target(topic=topic, server=server),
                                default_endpoints())
    srv.start()
    try:
        yield srv.addresses[0].split("://", 1)[1]
    finally:
        srv.stop()
        srv.wait()
        transport.cleanup()
