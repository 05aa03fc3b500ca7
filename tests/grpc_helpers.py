"""Helpers for the gRPC tests: raw requests and status details."""

from __future__ import annotations

import grpc
from grpc_status import rpc_status

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
