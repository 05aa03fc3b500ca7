"""A listener of the gRPC wire: one target served on one shared :class:`GrpcServer`."""

from __future__ import annotations

from bridge.transport.shared_server import SharedServerListener


class GrpcListener(SharedServerListener):
    """One target on a shared gRPC server, whose health service follows its listeners.

    ``set_serving(False)`` holds the health service at NOT_SERVING: ``bridge serve`` sets
    it from ``server.healthy``, so the health service turns NOT_SERVING while an AMQP
    listener of the same server has lost its broker, and SERVING again once it is back.
    """

    def _start(self) -> None:
        self.server.update_health()

    def _stop(self) -> None:
        self.server.update_health()

    def _serving_changed(self) -> None:
        self.server.update_health()
