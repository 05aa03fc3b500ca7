"""The service names of the gRPC health service (grpc.health.v1) and their statuses.

A Kubernetes gRPC probe, ``bridge health --service NAME`` and any grpc.health.v1
client ask by service name:

* ``liveness``: SERVING while the gRPC server runs and some listener takes messages
  (the process serves). A lost AMQP broker does not change it, so a liveness probe
  never restarts a replica that waits for its broker.
* ``readiness``: SERVING only while the process can serve everything it is configured
  for: liveness, and :meth:`~bridge.transport.base.Listener.set_serving` last said
  True (``bridge serve`` says so while every wire and route is connected).
* ``""`` (the whole server) and ``bridge.v1.Bridge``: the same as ``readiness``.

Every name is NOT_SERVING once the server stops taking messages.
"""

from __future__ import annotations

from grpc_health.v1 import health_pb2

SERVICE_NAME = "bridge.v1.Bridge"
LIVENESS = "liveness"
READINESS = "readiness"
#: Every name the health service answers for.
NAMES = ("", SERVICE_NAME, LIVENESS, READINESS)

_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def health_statuses(listening: bool, process_serving: bool) -> dict[str, int]:
    """The status of each name: ``listening`` (some listener takes messages) and
    ``process_serving`` (what the process last published through ``set_serving``)."""
    live = _SERVING if listening else _NOT_SERVING
    ready = _SERVING if listening and process_serving else _NOT_SERVING
    return {"": ready, SERVICE_NAME: ready, LIVENESS: live, READINESS: ready}


def initial_statuses() -> dict[str, int]:
    """NOT_SERVING for every name: the statuses of a server before its first listener."""
    return dict.fromkeys(NAMES, _NOT_SERVING)
