"""What a listener did with the requests it took, by ``_unique_id``: the rule that keeps a
request from running twice on this wire.

A request is acknowledged before it is handed to the server, so a broker that lost
the acknowledgement (a connection closed at that moment, a node stopped) delivers it
again, marked ``redelivered``: it may have run. A listener remembers the last
requests it took, so it can tell

* a request it ran (or is running): a duplicate, dropped; its first delivery answers;
* a request whose acknowledgement never left (the connection dropped first), so it
  never ran: run now;
* a redelivered request it never saw: it may have run on another server, so it is
  refused (a call gets :class:`RequestRedelivered`; a cast is dropped);
* a new request reusing the ``_unique_id`` of another (a different ``_msg_id``):
  refused.
"""

from __future__ import annotations

import enum
from collections import OrderedDict


class Verdict(enum.Enum):
    """What to do with a request just taken."""

    RUN = "run"
    DUPLICATE = "duplicate"
    REUSED_ID = "reused id"
    REDELIVERED = "redelivered"


_TAKEN, _RAN, _DECLINED = "taken", "ran", "declined"


class History:
    """The states of the last ``size`` requests taken, by ``_unique_id`` (I/O thread only)."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._items: OrderedDict[str, list] = OrderedDict()  # unique id -> [state, msg_id]

    def admit(self, unique_id: str | None, msg_id: str | None, redelivered: bool) -> Verdict:
        """The verdict on a request just taken; a request to run is remembered as taken."""
        if unique_id is None:
            return Verdict.REDELIVERED if redelivered else Verdict.RUN
        item = self._items.get(unique_id)
        if item is None:
            if redelivered:
                return Verdict.REDELIVERED
            self._items[unique_id] = [_TAKEN, msg_id]
            if len(self._items) > self._size:
                self._items.popitem(last=False)
            return Verdict.RUN
        if item[0] != _DECLINED:
            return Verdict.DUPLICATE if item[1] == msg_id else Verdict.REUSED_ID
        item[:] = [_TAKEN, msg_id]
        return Verdict.RUN

    def ran(self, unique_id: str | None) -> None:
        """The request was handed to the server, after its acknowledgement left."""
        item = self._items.get(unique_id) if unique_id is not None else None
        if item is not None:
            item[0] = _RAN

    def declined(self, unique_id: str | None) -> None:
        """The request was not run here (and was put back in its queue)."""
        item = self._items.get(unique_id) if unique_id is not None else None
        if item is not None:
            item[0] = _DECLINED

    def connection_lost(self) -> None:
        """A new connection: requests still taken never had their acknowledgement sent,
        so the broker delivers them again, and they may run."""
        for item in self._items.values():
            if item[0] == _TAKEN:
                item[0] = _DECLINED
