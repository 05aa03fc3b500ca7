"""The W3C trace context of a gRPC request's metadata reaches its IncomingMessage."""

from __future__ import annotations

import queue

from bridge._proto.bridge.v1 import bridge_pb2 as pb
from tests.grpc_helpers import channel, envelope

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class _Seen:
    def __init__(self) -> None:
        self.headers: queue.SimpleQueue = queue.SimpleQueue()

    def on_start(self, incoming) -> None:
        self.headers.put(incoming.headers)

    def on_finish(self, incoming, outcome, seconds) -> None:
        pass


def test_traceparent_and_tracestate_reach_the_incoming_message(grpc_server):
    srv = grpc_server()
    seen = _Seen()
    srv.add_observer(seen)
    data = pb.CallRequest(envelope=envelope(method="ping")).SerializeToString()
    with channel(srv.addresses[0]) as chan:
        call = chan.unary_unary("/bridge.v1.Bridge/Call")
        call(data, timeout=10, metadata=(("traceparent", TRACEPARENT),
                                         ("tracestate", "vendor=1"), ("other", "x")))
        assert seen.headers.get(timeout=5) == {"traceparent": TRACEPARENT,
                                               "tracestate": "vendor=1"}
        call(data, timeout=10)
        assert seen.headers.get(timeout=5) is None
        # An oversized value is not trace context.
        call(data, timeout=10, metadata=(("traceparent", "0" * 600),))
        assert seen.headers.get(timeout=5) is None
