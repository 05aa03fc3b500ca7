"""Reading configuration from an oslo.config ConfigOpts, a mapping, or nothing.

oslo.config is optional: a ``ConfigOpts`` is read through ``getattr`` only, and only
the options it has registered are used.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_URL = "memory://"
URL_ENV = "BRIDGE_TRANSPORT_URL"


@dataclass
class Settings:
    """What the transports, servers and clients read from ``conf``."""

    transport_url: str = DEFAULT_URL
    control_exchange: str = "openstack"
    rpc_response_timeout: float = 60.0
    executor_thread_pool_size: int = 64
    #: Append the built-in endpoint whose ``oslo_rpc_server_ping`` answers ``"pong"``.
    rpc_ping_enabled: bool = False
    #: Option groups for drivers, such as ``oslo_messaging_rabbit`` or ``grpc``.
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)

    def group(self, name: str) -> dict[str, Any]:
        """The options of one group (empty when not configured)."""
        return self.groups.get(name, {})


_SCALAR_OPTIONS = ("transport_url", "control_exchange", "rpc_response_timeout",
                   "executor_thread_pool_size", "rpc_ping_enabled")


def _read_config_opts(conf: Any) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Read the registered options of an oslo.config ConfigOpts."""
    values: dict[str, Any] = {}
    for name in _SCALAR_OPTIONS:
        try:
            value = getattr(conf, name)
        except Exception:  # NoSuchOptError and friends: not registered
            continue
        if value is not None:
            values[name] = value
    groups: dict[str, dict[str, Any]] = {}
    for group_name in ("oslo_messaging_rabbit", "grpc"):
        try:
            group = getattr(conf, group_name)
            groups[group_name] = {key: getattr(group, key) for key in group}
        except Exception:
            continue
    return values, groups


def load_settings(conf: Any = None) -> Settings:
    """Build :class:`Settings` from ``conf`` (ConfigOpts, mapping or None)."""
    if conf is None:
        values: dict[str, Any] = {}
        groups: dict[str, dict[str, Any]] = {}
    elif isinstance(conf, Settings):
        return conf
    elif isinstance(conf, Mapping):
        values = {k: v for k, v in conf.items() if k in _SCALAR_OPTIONS and v is not None}
        groups = {k: dict(v) for k, v in conf.items() if isinstance(v, Mapping)}
    else:
        values, groups = _read_config_opts(conf)
    if "transport_url" not in values and os.environ.get(URL_ENV):
        values["transport_url"] = os.environ[URL_ENV]
    settings = Settings(groups=groups)
    for name, value in values.items():
        current = getattr(settings, name)
        if isinstance(current, bool) and isinstance(value, str):
            value = value.strip().lower() in ("1", "true", "yes", "on")
        setattr(settings, name, type(current)(value))
    return settings
