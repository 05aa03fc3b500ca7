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
    #: An oslo.config ConfigOpts whose groups are read when a driver asks for one.
    config_opts: Any = None

    def group(self, name: str) -> dict[str, Any]:
        """The options of one group (empty when not configured)."""
        if name not in self.groups and self.config_opts is not None:
            self.groups[name] = _read_group(self.config_opts, name)
        return self.groups.get(name, {})


_SCALAR_OPTIONS = ("transport_url", "control_exchange", "rpc_response_timeout",
                   "executor_thread_pool_size", "rpc_ping_enabled")


def _read_config_opts(conf: Any) -> dict[str, Any]:
    """Read the registered top-level options of an oslo.config ConfigOpts."""
    values: dict[str, Any] = {}
    for name in _SCALAR_OPTIONS:
        try:
            value = getattr(conf, name)
        except Exception:  # NoSuchOptError and friends: not registered
            continue
        if value is not None:
            values[name] = value
    return values


def _read_group(conf: Any, name: str) -> dict[str, Any]:
    """The registered options of group ``name`` of a ConfigOpts (empty if none)."""
    try:
        group = getattr(conf, name)
        return {key: getattr(group, key) for key in group}
    except Exception:  # NoSuchOptError and friends: not registered
        return {}


TRUE_WORDS = ("true", "yes", "on", "1")
FALSE_WORDS = ("false", "no", "off", "0")
ACCEPTED_BOOLEANS = "true/false, yes/no, on/off or 1/0"


def parse_bool(value: Any, name: str = "value") -> bool:
    """A strict boolean: the spellings oslo.config accepts, in any case; anything else is
    a ``ValueError`` naming ``name`` and the accepted values (a typo never means false)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise ValueError(f"{name} must be {ACCEPTED_BOOLEANS}, not {value!r}")


def load_settings(conf: Any = None) -> Settings:
    """Build :class:`Settings` from ``conf`` (ConfigOpts, mapping or None)."""
    config_opts = None
    if conf is None:
        values: dict[str, Any] = {}
        groups: dict[str, dict[str, Any]] = {}
    elif isinstance(conf, Settings):
        return conf
    elif isinstance(conf, Mapping):
        values = {k: v for k, v in conf.items() if k in _SCALAR_OPTIONS and v is not None}
        groups = {k: dict(v) for k, v in conf.items() if isinstance(v, Mapping)}
    else:
        values, groups, config_opts = _read_config_opts(conf), {}, conf
    if "transport_url" not in values and os.environ.get(URL_ENV):
        values["transport_url"] = os.environ[URL_ENV]
    settings = Settings(groups=groups, config_opts=config_opts)
    for name, value in values.items():
        current = getattr(settings, name)
        if isinstance(current, bool):
            value = parse_bool(value, name)
        setattr(settings, name, type(current)(value))
    return settings
