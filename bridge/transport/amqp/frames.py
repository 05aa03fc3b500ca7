"""The raw frames of a ``basic.publish``, built without py-amqp's per-message work.

A publish is three kinds of frame (method, content header, body chunks), built
here into one bytes object that the connection writes as it is; the content
header's properties, which repeat from message to message, are serialized once.
"""

from __future__ import annotations

from struct import pack
from typing import Any

import amqp
from amqp import spec
from amqp.serialization import dumps

_PUBLISH_ARGSIG = "Bssbb"
_METHOD_HEAD = pack(">HH", *spec.Basic.Publish)
_FRAME_END = b"\xce"
_CACHE_SIZE = 256
#: Bytes of a frame that are not payload: type, channel, size, and the end marker.
FRAME_OVERHEAD = 8


class PublishFrames:
    """Builds the frames of publishes; keeps the serialized properties it has seen."""

    def __init__(self) -> None:
        self._properties: dict[Any, bytes] = {}

    def build(self, channel_id: int, frame_max: int, exchange: str, routing_key: str,
              body: bytes, mandatory: bool, expiration: str | None,
              headers: dict[str, Any] | None) -> bytes:
        """The method, header and body frames of one publish, ready for the socket."""
        properties = self._serialized_properties(expiration, headers)
        method = _METHOD_HEAD + dumps(_PUBLISH_ARGSIG, (0, exchange, routing_key, mandatory,
                                                        False))
        header = pack(">HHQ", 60, 0, len(body)) + properties
        parts = [pack(">BHI", 1, channel_id, len(method)), method, _FRAME_END,
                 pack(">BHI", 2, channel_id, len(header)), header, _FRAME_END]
        chunk = frame_max - FRAME_OVERHEAD
        for offset in range(0, len(body), chunk):
            piece = body[offset:offset + chunk]
            parts += [pack(">BHI", 3, channel_id, len(piece)), piece, _FRAME_END]
        return b"".join(parts)

    def _serialized_properties(self, expiration: str | None,
                               headers: dict[str, Any] | None) -> bytes:
        """oslo.messaging's message properties, with ``expiration`` and ``headers``."""
        key = (expiration, tuple(sorted(headers.items())) if headers else None)
        properties = self._properties.get(key)
        if properties is None:
            values: dict[str, Any] = {
                "content_type": "application/json", "content_encoding": "utf-8",
                "application_headers": headers or {}, "delivery_mode": 2, "priority": 0,
            }
            if expiration is not None:
                values["expiration"] = expiration
            properties = amqp.Message(b"", **values)._serialize_properties()
            if len(self._properties) < _CACHE_SIZE:
                self._properties[key] = properties
        return properties
