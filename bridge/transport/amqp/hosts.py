"""Which broker a connection goes to next, when, and how it is opened.

The URL's hosts are shuffled once when there are several (as oslo.messaging does);
each (re)connection then takes the next one (``round-robin``) or a random one
(``kombu_failover_strategy=shuffle``). After a lost connection the first attempt waits
``kombu_reconnect_delay``; a failed attempt moves on to the next host at once until
every host of the round failed, and only then backs off (``rabbit_retry_interval``,
``rabbit_retry_backoff``, ``rabbit_interval_max``): one node of a cluster going down
costs a reconnection, not a back-off.
"""

from __future__ import annotations

import random
from typing import Any

import kombu

from bridge.transport.amqp.options import AmqpOptions, connection_name


class Hosts:
    """The hosts of one connection, and the one it is on (or trying)."""

    def __init__(self, hosts: list[dict[str, Any]], options: AmqpOptions) -> None:
        self.hosts = list(hosts)
        self.options = options
        self._index = 0
        self.current = self.hosts[0]
        if len(self.hosts) > 1:
            random.shuffle(self.hosts)

    @property
    def label(self) -> str:
        """``host:port`` of the current host."""
        return f"{self.current['hostname']}:{self.current['port']}"

    def delay(self, failed: int) -> float:
        """Seconds before the next attempt, after ``failed`` attempts in a row failed (0:
        the connection was just lost)."""
        opts = self.options
        if failed == 0:
            return opts.kombu_reconnect_delay
        if failed % len(self.hosts):
            return 0.0  # the next host of this round, at once
        return opts.kombu_reconnect_delay + opts.backoff(failed // len(self.hosts))

    def next(self) -> dict[str, Any]:
        """The host to try now."""
        host = self.current = self.hosts[self._index % len(self.hosts)]
        if len(self.hosts) > 1:
            if self.options.kombu_failover_strategy == "shuffle":
                self._index = random.randrange(len(self.hosts))
            else:
                self._index += 1
        return host

    def open(self, host: dict[str, Any]) -> kombu.Connection:
        """A connected kombu connection to ``host`` with the transport's options."""
        opts = self.options
        heartbeat = opts.heartbeat_timeout_threshold
        kconn = kombu.Connection(
            transport="pyamqp", heartbeat=heartbeat, ssl=opts.ssl_params(host["hostname"]),
            login_method=opts.rabbit_login_method,
            connect_timeout=max(1.0, min(heartbeat or 30, 30)),
            transport_options={"client_properties": {
                "capabilities": {"authentication_failure_close": True,
                                 "connection.blocked": True,
                                 "consumer_cancel_notify": True},
                "connection_name": connection_name(),
                "product": "rpc-bridge", "platform": "Python",
            }},
            **host)
        kconn.connect()
        return kconn
