"""The settings of ``bridge serve``: one table, three sources.

Each setting can be given as a command-line flag, a ``BRIDGE_*`` environment
variable or a key of a TOML config file (``--config`` / ``BRIDGE_CONFIG``), and the
first of those that is present wins: flags over environment over file over default.
:data:`OPTIONS` is the single table; ``bridge serve --help`` and docs/configuration.md
are written from it.

A config file may also hold the tables ``[grpc]`` and ``[oslo_messaging_rabbit]``,
passed to the drivers as their option groups.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

CONFIG_ENV = "BRIDGE_CONFIG"
_DISABLED = {"", "none", "off", "false", "no"}


class SettingsError(ValueError):
    """Settings that cannot be used; each problem names its source.

    ``problems`` lists every problem found (the message is the first, with a count of
    the others), so ``bridge check`` can report them all at once.
    """

    def __init__(self, problems: str | list[str]) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        #: The settings that did parse, when the problems are in values (else None).
        self.settings: ServeSettings | None = None
        more = len(self.problems) - 1
        super().__init__(self.problems[0] + (f" (and {more} more problem"
                                             f"{'s' if more > 1 else ''}: run bridge check)"
                                             if more else ""))


# -- value parsers (strings from flags and the environment; TOML values as they come) -------

def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, not {value!r}")
    return value


def _optional_text(value: Any) -> str | None:
    text = _text(value).strip()
    return None if text.lower() in _DISABLED else text


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, not {value!r}")
    if isinstance(value, int):
        return value
    try:
        return int(_text(value).strip())
    except ValueError:
        raise ValueError(f"expected an integer, not {value!r}") from None


def _positive_int(value: Any) -> int:
    number = _int(value)
    if number < 1:
        raise ValueError(f"must be at least 1, not {number}")
    return number


def _port_or_off(value: Any) -> int | None:
    if isinstance(value, str) and value.strip().lower() in _DISABLED:
        return None
    port = _int(value)
    if not 0 <= port <= 65535:
        raise ValueError(f"a port is 0..65535, not {port}")
    return port


def _seconds(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected seconds, not {value!r}")
    try:
        number = float(value) if isinstance(value, (int, float)) else float(_text(value).strip())
    except ValueError:
        raise ValueError(f"expected a number of seconds, not {value!r}") from None
    if not number >= 0 or number == float("inf"):
        raise ValueError(f"expected a finite number of seconds >= 0, not {value!r}")
    return number


def _positive_seconds(value: Any) -> float:
    number = _seconds(value)
    if number == 0:
        raise ValueError("must be more than 0 seconds")
    return number


_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2,
               "mib": 1024**2, "g": 1000**3, "gb": 1000**3, "gib": 1024**3}


def _size(value: Any) -> int:
    """Bytes: an integer, or a number with a unit (``4MiB``, ``512KiB``, ``1MB``)."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    else:
        match = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", _text(value))
        unit = match.group(2).lower() if match else None
        if match is None or unit not in _SIZE_UNITS:
            raise ValueError(f"expected a size such as 4194304, 4MiB or 512KiB, not {value!r}")
        size = int(match.group(1)) * _SIZE_UNITS[unit]
    if size < 1:
        raise ValueError(f"must be at least 1 byte, not {size}")
    return size


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _bool(value: Any) -> bool:
    """A boolean: TOML true/false, or one of true/false, yes/no, on/off, 1/0."""
    if isinstance(value, bool):
        return value
    text = _text(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"expected true or false, not {value!r}")


def _seconds_or_off(value: Any) -> float | None:
    """Seconds > 0, or none/off/empty for no limit."""
    if isinstance(value, str) and value.strip().lower() in _DISABLED:
        return None
    return _positive_seconds(value)


def _choice(*choices: str, lower: bool = True) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = _text(value).strip()
        text = text.lower() if lower else text.upper()
        if text not in choices:
            raise ValueError(f"choose one of {', '.join(choices)}, not {value!r}")
        return text
    return parse


def _words(separators: str) -> Callable[[Any], list[str]]:
    """A list: a TOML array of strings, or a string split on ``separators``."""
    def parse(value: Any) -> list[str]:
        if isinstance(value, (list, tuple)):
            items = [_text(item).strip() for item in value]
        else:
            items = re.split(f"[{separators}]+", _text(value))
        return [item for item in (i.strip() for i in items) if item]
    return parse


def _url_list(value: Any) -> list[str]:
    urls = _words(r"\s")(value)
    if len(urls) == 1 and urls[0].lower() in _DISABLED:
        return []
    return urls


# -- the table -------------------------------------------------------------------------------

def _routes(value: Any) -> list[dict[str, Any]]:
    """Gateway routes: TOML tables, or ``TOPIC=URL`` words (flags and environment)."""
    items = value if isinstance(value, list) else str(value).split()
    routes: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, dict):
            routes.append(dict(item))
            continue
        for word in str(item).split():
            topic, sep, url = word.partition("=")
            if not sep or not topic or "://" not in url:
                raise ValueError(f"a route is TOPIC=URL (for example "
                                 f"compute=rabbit://host:5672/), not {word!r}")
            routes.append({"topic": topic, "url": url})
    from bridge.gateway.routes import routes_from_config

    routes_from_config(routes)  # refuse unknown keys and missing fields now
    return routes


@dataclass(frozen=True)
class Option:
    """One setting of ``bridge serve``: its name (also its TOML key), flag and variable."""

    name: str
    help: str
    default: Any
    parse: Callable[[Any], Any]
    metavar: str = "VALUE"
    repeatable: bool = False
    env_format: str = ""  # how a list is written in the environment variable
    default_text: str | None = None
    flag_name: str | None = None  # the flag's name when not the option's (singular lists)
    const: str | None = None  # the flag takes no value and stands for this one

    @property
    def flag(self) -> str:
        return "--" + (self.flag_name or self.name).replace("_", "-")

    @property
    def env(self) -> str:
        return "BRIDGE_" + self.name.upper()

    def describe_default(self) -> str:
        if self.default_text is not None:
            return self.default_text
        if self.default is None:
            return "unset"
        if isinstance(self.default, list):
            return " ".join(self.default) or "none"
        return str(self.default)


OPTIONS: tuple[Option, ...] = (
    Option("endpoints", "endpoints to serve: module:Class, module:factory, or a module "
           "with an ENDPOINTS list (repeatable)", [], _words(r"\s,"), "SPEC", repeatable=True,
           env_format="comma- or space-separated", flag_name="endpoint",
           default_text="the shipped endpoints (echo, test, counter)"),
    Option("topic", "the target topic", "bridge", _text, "TOPIC"),
    Option("server", "the server name (the target's server)", None, _optional_text, "NAME",
           default_text="the host name"),
    Option("exchange", "the AMQP exchange of the target", None, _optional_text, "EXCHANGE",
           default_text="openstack (control_exchange)"),
    Option("grpc_url", "where gRPC listens: grpc://HOST:PORT (on several addresses: "
           "grpc://HOST1:PORT1,HOST2:PORT2), or grpcs://... with the TLS files; port 0 picks "
           "a free port; 'none' turns gRPC off",
           "grpc://127.0.0.1:50051", _optional_text, "URL"),
    Option("http_url", "where HTTP/JSON listens (docs/http.md): http://HOST:PORT, or "
           "https://... with the TLS files; port 0 picks a free port; 'none' or an empty "
           "value turns HTTP off", "http://127.0.0.1:8080", _optional_text, "URL"),
    Option("amqp_urls", "an AMQP transport URL to serve on, such as "
           "rabbit://user:pass@host:5672/ (repeatable); memory:// is the in-process "
           "stand-in; 'none' turns AMQP off", ["memory://"], _url_list, "URL",
           repeatable=True, env_format="space-separated", flag_name="amqp_url"),
    Option("routes", "a gateway route: requests for TOPIC that no local endpoint serves go "
           "to URL (rabbit:// for gRPC callers, grpc:// for AMQP callers); the config "
           "file's [[routes]] tables take every key of docs/gateway.md (repeatable)", [],
           _routes, "TOPIC=URL", repeatable=True, env_format="space-separated",
           flag_name="route", default_text="none"),
    Option("gateway_max_in_flight", "forwarded calls in flight at most; past it a call "
           "gets RESOURCE_EXHAUSTED", 1024, _positive_int, "N"),
    Option("executor", "how messages are run: threading, blocking or asyncio", "threading",
           _choice("threading", "blocking", "asyncio"), "NAME"),
    Option("pool_size", "executor threads, shared by every wire", 64, _positive_int, "N"),
    Option("max_message_size", "the largest gRPC message (or HTTP body) accepted or sent, in bytes "
           "(units allowed: 4MiB, 512KiB)", 4 * 1024 * 1024, _size, "BYTES",
           default_text="4MiB"),
    Option("tls_cert_file", "PEM certificate chain of the gRPC server (needs grpcs://), "
           "and of the HTTP server when http_url is https://", None, _optional_text, "FILE"),
    Option("tls_key_file", "PEM key of the gRPC/HTTPS server", None, _optional_text, "FILE"),
    Option("tls_ca_file", "PEM CA bundle; when set, gRPC (and HTTPS) clients must present a "
           "certificate it signed (mutual TLS)", None, _optional_text, "FILE"),
    # -- authentication and authorization (docs/security.md) --
    Option("auth_token_file", "TOML file of static bearer tokens, each by its SHA-256 only "
           "([[tokens]] principal, sha256, groups; python3 -m bridge.auth.tokens NAME makes "
           "one); SIGHUP reloads it", None, _optional_text, "FILE"),
    Option("auth_jwt_issuer", "accept JWT bearer tokens from this issuer (the iss claim)",
           None, _optional_text, "ISSUER"),
    Option("auth_jwt_audience", "an audience JWTs must name in aud (repeatable)", [],
           _words(r"\s,"), "AUDIENCE", repeatable=True,
           env_format="comma- or space-separated", default_text="none"),
    Option("auth_jwt_key_file", "PEM public key, certificate or JWKS file of the JWT "
           "signing keys", None, _optional_text, "FILE"),
    Option("auth_jwt_jwks_url", "https URL of the JWKS of the JWT signing keys (fetched and "
           "cached for 5 minutes)", None, _optional_text, "URL"),
    Option("auth_jwt_algorithms", "JWT signature algorithms allowed (asymmetric only: RS*, "
           "PS*, ES*, EdDSA) (repeatable)", ["RS256", "ES256"], _words(r"\s,"), "ALG",
           repeatable=True, env_format="comma- or space-separated"),
    Option("auth_policy_file", "TOML authorization policy: [[deny]] then [[allow]] rules; "
           "once set, anything not allowed is denied; SIGHUP reloads it (an invalid file "
           "keeps the previous policy)", None, _optional_text, "FILE",
           default_text="none: identified callers only when tokens or JWTs are set, "
                        "else everyone"),
    Option("auth_amqp_identity", "the principal of AMQP messages that carry no user_id "
           "property", None, _optional_text, "NAME", default_text="anonymous"),
    Option("auth_trusted_forwarders", "principals (globs) of gateways whose callers' "
           "forwarded identity is taken as the caller's (repeatable)", [], _words(r"\s,"),
           "PRINCIPAL", repeatable=True, env_format="comma- or space-separated",
           default_text="none"),
    Option("log_level", "DEBUG, INFO, WARNING, ERROR or CRITICAL", "INFO",
           _choice("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", lower=False), "LEVEL"),
    Option("log_format", "text, or json (one object per line, with request_id when the "
           "context has one)", "text", _choice("text", "json"), "FORMAT"),
    Option("metrics_port", "serve Prometheus metrics on http://METRICS_HOST:PORT/metrics; "
           "0 picks a free port; unset or 'none' serves none", None, _port_or_off, "PORT",
           default_text="none"),
    Option("metrics_host", "the address the metrics port binds", "127.0.0.1", _text, "HOST"),
    Option("grace_period", "seconds to wait for calls in flight after SIGTERM/SIGINT",
           30.0, _seconds, "SECONDS"),
    Option("health_interval", "seconds between copies of the server's health (AMQP broker "
           "reachable) into the gRPC health service", 2.0, _positive_seconds, "SECONDS"),
    # -- operations: endpoints, connection age, tracing (docs/configuration.md) ------------
    Option("default_endpoints", "serve the shipped endpoints after those named with "
           "--endpoint; false (flag --no-default-endpoints) serves only the named ones",
           True, _bool, "BOOL", flag_name="no_default_endpoints", const="false",
           default_text="true"),
    Option("max_connection_age", "seconds after which the gRPC server asks each client "
           "connection to reconnect, so long-lived clients spread over new replicas; "
           "none: never", None, _seconds_or_off, "SECONDS", default_text="none"),
    Option("max_connection_age_grace", "seconds a connection past max_connection_age keeps "
           "for its calls in flight before it is closed; none: no limit", None,
           _seconds_or_off, "SECONDS", default_text="none"),
    Option("tracing", "OpenTelemetry tracing (pip install rpc-bridge[tracing]): off, otlp "
           "(exported as the OTEL_EXPORTER_OTLP_* variables say) or console (spans on "
           "stderr)", "off", _choice("off", "otlp", "console"), "EXPORTER"),
)

OPTIONS_BY_NAME = {option.name: option for option in OPTIONS}


@dataclass
class ServeSettings:
    """The resolved settings; ``sources`` says where each came from."""

    endpoints: list[str] = field(default_factory=list)
    topic: str = "bridge"
    server: str | None = None
    exchange: str | None = None
    grpc_url: str | None = "grpc://127.0.0.1:50051"
    http_url: str | None = "http://127.0.0.1:8080"
    amqp_urls: list[str] = field(default_factory=lambda: ["memory://"])
    routes: list[dict[str, Any]] = field(default_factory=list)
    gateway_max_in_flight: int = 1024
    executor: str = "threading"
    pool_size: int = 64
    max_message_size: int = 4 * 1024 * 1024
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_ca_file: str | None = None
    auth_token_file: str | None = None
    auth_jwt_issuer: str | None = None
    auth_jwt_audience: list[str] = field(default_factory=list)
    auth_jwt_key_file: str | None = None
    auth_jwt_jwks_url: str | None = None
    auth_jwt_algorithms: list[str] = field(default_factory=lambda: ["RS256", "ES256"])
    auth_policy_file: str | None = None
    auth_amqp_identity: str | None = None
    auth_trusted_forwarders: list[str] = field(default_factory=list)
    log_level: str = "INFO"
    log_format: str = "text"
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    grace_period: float = 30.0
    health_interval: float = 2.0
    default_endpoints: bool = True
    max_connection_age: float | None = None
    max_connection_age_grace: float | None = None
    tracing: str = "off"
    #: The drivers' option tables of the config file (``[grpc]``, ``[oslo_messaging_rabbit]``).
    driver_groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    config_file: str | None = None
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def urls(self) -> list[str]:
        """Every transport URL to listen on: gRPC first, then HTTP, then the AMQP ones."""
        return [url for url in (self.grpc_url, self.http_url) if url] + list(self.amqp_urls)

    def as_dict(self) -> dict[str, Any]:
        """The settings and their sources, for ``--print-settings`` (secrets masked)."""
        from bridge.auth.redact import redact_value

        values = {option.name: getattr(self, option.name) for option in OPTIONS}
        return redact_value({"settings": values, "sources": dict(self.sources),
                             "config_file": self.config_file,
                             "driver_groups": self.driver_groups})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--config`` and one flag per option to ``parser``; absent flags stay absent."""
    parser.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                        help=f"a TOML file with any of the settings below as top-level keys "
                             f"[env {CONFIG_ENV}]")
    for option in OPTIONS:
        help_text = (f"{option.help} [env {option.env}"
                     f"{' (' + option.env_format + ')' if option.env_format else ''}; "
                     f"config key {option.name}; default: {option.describe_default()}]")
        if option.const is not None:
            parser.add_argument(option.flag, dest=option.name, action="store_const",
                                const=option.const, default=argparse.SUPPRESS,
                                help=help_text.replace("%", "%%"))
            continue
        parser.add_argument(option.flag, dest=option.name, metavar=option.metavar,
                            action="append" if option.repeatable else "store",
                            default=argparse.SUPPRESS, help=help_text.replace("%", "%%"))


def driver_tables() -> tuple[str, ...]:
    """The drivers' option groups: the tables a config file may hold besides settings."""
    from bridge.transport import option_groups

    return tuple(option_groups())


def read_config_file(path: str) -> dict[str, Any]:
    """Read a TOML config file; unknown keys are an error."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise SettingsError(f"cannot read config file {path!r}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {path!r} is not valid TOML: {exc}") from exc
    tables = driver_tables()
    unknown = sorted(set(data) - set(OPTIONS_BY_NAME) - set(tables))
    if unknown:
        raise SettingsError(f"config file {path!r}: unknown key(s) {', '.join(unknown)}; "
                            f"known: {', '.join(OPTIONS_BY_NAME)}, and the tables "
                            f"[{'], ['.join(tables)}]")
    for table in tables:
        if table in data and not isinstance(data[table], dict):
            raise SettingsError(f"config file {path!r}: {table} must be a table")
    return data


def resolve(flags: Mapping[str, Any] | None = None,
            environ: Mapping[str, str] | None = None) -> ServeSettings:
    """Resolve every setting: flags, then ``BRIDGE_*`` variables, then the config file."""
    flags = dict(flags or {})
    environ = os.environ if environ is None else environ
    config_path = flags.get("config") or environ.get(CONFIG_ENV) or None
    config = read_config_file(config_path) if config_path else {}
    settings = ServeSettings(config_file=config_path)
    problems: list[str] = []
    for option in OPTIONS:
        if option.name in flags:
            # A repeatable flag arrives as a list, one item per use of the flag.
            raw, source, where = flags[option.name], "flag", option.flag
        elif option.env in environ:
            raw, source, where = environ[option.env], "env", option.env
        elif option.name in config:
            raw, source, where = config[option.name], "config", f"{option.name} in {config_path}"
        else:
            settings.sources[option.name] = "default"
            continue
        try:
            value = option.parse(raw)
        except (ValueError, TypeError) as exc:
            problems.append(f"{where}: {exc}")
            settings.sources[option.name] = source
            continue
        setattr(settings, option.name, value)
        settings.sources[option.name] = source
    settings.driver_groups = {name: dict(config[name]) for name in driver_tables()
                              if name in config}
    problems.extend(_check(settings))
    if problems:
        error = SettingsError(problems)
        error.settings = settings  # what did parse (bad values left at their defaults)
        raise error
    return settings


def _check(settings: ServeSettings) -> list[str]:
    """The problems of settings that parsed one by one but do not go together."""
    problems = []
    if not settings.urls:
        problems.append("nothing to listen on: grpc_url, http_url and amqp_urls are off")
    if settings.grpc_url and not re.match(r"^grpcs?://", settings.grpc_url):
        problems.append(f"grpc_url must start with grpc:// or grpcs://, "
                        f"not {settings.grpc_url!r}")
    https = bool(settings.http_url and settings.http_url.startswith("https://"))
    if settings.http_url and not re.match(r"^https?://", settings.http_url):
        problems.append(f"http_url must start with http:// or https://, not {settings.http_url!r}")
    if https and not settings.tls_cert_file:
        problems.append("https:// needs tls_cert_file and tls_key_file")
    for url in settings.amqp_urls:
        if "://" not in url:
            problems.append(f"amqp_urls: {url!r} is not a URL (driver://host:port/vhost)")
    if bool(settings.tls_cert_file) != bool(settings.tls_key_file):
        problems.append("tls_cert_file and tls_key_file go together")
    if settings.tls_cert_file and settings.grpc_url and \
            not settings.grpc_url.startswith("grpcs://") and not https:
        problems.append("TLS files are set but grpc_url is not grpcs:// nor http_url https://")
    if settings.grpc_url and settings.grpc_url.startswith("grpcs://") and \
            not settings.tls_cert_file:
        problems.append("grpcs:// needs tls_cert_file and tls_key_file")
    if not settings.endpoints and not settings.default_endpoints:
        problems.append("nothing to serve: default_endpoints is false and no endpoint is "
                        "named (--endpoint module:Class)")
    return problems
