"""Server reflection as ``grpc.reflection.v1`` and ``grpc.reflection.v1alpha``.

grpcio-reflection serves ``v1alpha``; newer tools (grpcurl, Postman, grpcui) ask for
``v1`` first. The two services' messages are the same fields under another package
name, so their bytes are the same: ``v1`` is served by the ``v1alpha`` servicer
through a generic handler under the ``v1`` name.
"""

from __future__ import annotations

from typing import Any

import grpc
from grpc_reflection.v1alpha import reflection
from grpc_reflection.v1alpha import reflection_pb2 as pb

V1 = "grpc.reflection.v1.ServerReflection"
V1ALPHA = reflection.SERVICE_NAME


def enable_reflection(server: Any, service_names: list[str]) -> None:
    """Serve reflection of ``service_names`` (and of itself, both versions) on ``server``
    (grpc.server or grpc.aio)."""
    names = [*service_names, V1ALPHA, V1]
    if isinstance(server, grpc.aio.Server):
        servicer: Any = reflection.aio.ReflectionServicer(names)
    else:
        servicer = reflection.ReflectionServicer(names)
    reflection.enable_server_reflection(names, server)
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=pb.ServerReflectionRequest.FromString,
        response_serializer=pb.ServerReflectionResponse.SerializeToString)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        V1, {"ServerReflectionInfo": handler})])
