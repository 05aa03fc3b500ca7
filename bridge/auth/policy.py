"""The authorization policy: a TOML file of ordered deny and allow rules (docs/security.md).

It has the shape of gRPC's authorization policy (gRFC A43): every ``[[deny]]`` rule is
checked first, in order, and the first that matches denies; then the ``[[allow]]``
rules, in order, and the first that matches allows; a request no rule allows is denied.
A rule matches when every field it sets matches the request; a field it leaves out
matches anything. Every field takes a string or a list of strings (any may match);
values are globs (``*``, ``?``, ``[abc]``, matched case-sensitively) except in
``principals``::

    [groups]
    operators = ["spiffe://example.org/ns/ops/*", "alice"]

    [[deny]]
    name = "nobody stops the server from AMQP"
    wire = "amqp"
    namespace = "control"

    [[allow]]
    name = "operators control the server"
    principals = ["group:operators"]
    namespace = "control"
    method = ["stop", "status"]

    [[allow]]
    name = "compute reads"
    principals = ["nova-*", "spiffe://example.org/ns/nova/*"]
    kind = "call"
    topic = "compute"
    method = "get_*"

``principals`` entries: ``group:NAME`` (a member of the identity's groups, from its token
or JWT, or a principal matching one of the patterns of ``[groups]`` NAME);
``anonymous`` (exactly the callers nobody identified); any other entry is a glob over
the principal of an identified caller (``*`` is every identified caller).

Request fields: ``wire`` (``grpc``, ``amqp``, ``memory``...), ``kind`` (``call``,
``cast`` or ``fanout``), ``exchange`` (the exchange the server uses when the caller
named none), ``topic``, ``server`` (the server's name, or empty when the wire does not
tell), ``namespace`` (empty for the null namespace) and ``method``.
"""

from __future__ import annotations

import fnmatch
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bridge.auth.identity import Identity

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

#: The request fields a rule may match, besides ``principals``.
FIELDS = ("wire", "kind", "exchange", "topic", "server", "namespace", "method")
KINDS = ("call", "cast", "fanout")
_GROUP_PREFIX = "group:"
_ANONYMOUS = "anonymous"


class PolicyError(ValueError):
    """A policy file that cannot be used; the message says where and why."""


@dataclass(frozen=True)
class Request:
    """What the policy decides about: one incoming message, as the server sees it."""

    wire: str
    kind: str
    exchange: str
    topic: str
    server: str
    namespace: str
    method: str

    def describe(self) -> str:
        """A one-line description for audit logs (values cut, never a credential)."""
        return (f"wire={self.wire} kind={self.kind} target={_cut(self.exchange)}/"
                f"{_cut(self.topic)}/{_cut(self.server) or '*'} "
                f"namespace={_cut(self.namespace) or '-'} method={_cut(self.method)}")


def _cut(text: str, limit: int = 100) -> str:
    """Caller-sent text made safe for one log line: printable, bounded."""
    text = "".join(ch if ch.isprintable() else "?" for ch in text[:limit])
    return repr(text) if (" " in text or not text.isascii()) else text


@dataclass(frozen=True)
class Rule:
    """One rule of a policy: a name, principals and request fields (globs)."""

    name: str
    #: Principal entries (see the module doc); None matches every caller, anonymous too.
    principals: tuple[str, ...] | None = None
    #: Field name -> globs; a field not present matches anything.
    fields: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def matches(self, identity: Identity, request: Request,
                groups: Mapping[str, tuple[str, ...]]) -> bool:
        """True when the identity and every field set by the rule match."""
        for name, patterns in self.fields.items():
            value = getattr(request, name)
            if not any(fnmatch.fnmatchcase(value, pattern) for pattern in patterns):
                return False
        if self.principals is None:
            return True
        return any(_principal_matches(entry, identity, groups) for entry in self.principals)

    def names_callers_of(self, request: Request) -> bool:
        """True when this rule lets only named callers make ``request`` (every field it
        sets matches, and its principals are neither absent nor every caller)."""
        for name, patterns in self.fields.items():
            if not any(fnmatch.fnmatchcase(getattr(request, name), p) for p in patterns):
                return False
        return bool(self.principals) and not any(entry in ("*", _ANONYMOUS)
                                                 for entry in self.principals or ())


def _principal_matches(entry: str, identity: Identity,
                       groups: Mapping[str, tuple[str, ...]]) -> bool:
    if entry == _ANONYMOUS:
        return identity.anonymous
    if identity.anonymous:
        return False
    if entry.startswith(_GROUP_PREFIX):
        group = entry[len(_GROUP_PREFIX):]
        if group in identity.groups:
            return True
        return any(fnmatch.fnmatchcase(identity.principal, pattern)
                   for pattern in groups.get(group, ()))
    return fnmatch.fnmatchcase(identity.principal, entry)


@dataclass(frozen=True)
class Decision:
    """The outcome of :meth:`Policy.decide`: allowed or not, and the rule that said so
    (None when no rule matched)."""

    allowed: bool
    rule: str | None


@dataclass(frozen=True)
class Policy:
    """Deny rules, then allow rules, then deny (see the module doc)."""

    deny: tuple[Rule, ...] = ()
    allow: tuple[Rule, ...] = ()
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: Where it was read from, for logs.
    source: str = "<policy>"

    def decide(self, identity: Identity, request: Request) -> Decision:
        """Whether ``identity`` may make ``request``."""
        for rule in self.deny:
            if rule.matches(identity, request, self.groups):
                return Decision(False, rule.name)
        for rule in self.allow:
            if rule.matches(identity, request, self.groups):
                return Decision(True, rule.name)
        return Decision(False, None)

    def names_callers_of(self, request: Request) -> bool:
        """True when some allow rule lets only named callers make ``request``, and no
        allow rule lets everyone (or every identified caller) make it."""
        named = False
        for rule in self.allow:
            if rule.names_callers_of(request):
                named = True
            elif rule.matches(_SOMEONE, request, {}) or rule.matches(_NOBODY, request, {}):
                return False
        return named


_SOMEONE = Identity("\x00someone", "token")
_NOBODY = Identity("anonymous", "anonymous")

#: The implicit policy while authenticators are configured but no policy file is: every
#: identified caller may do anything, anonymous callers nothing.
AUTHENTICATED_ONLY = Policy(allow=(Rule("any identified caller", principals=("*",)),),
                            source="<implicit: identified callers only>")


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise PolicyError(f"{where} must be a string or a non-empty list of strings, "
                          f"not {value!r}")
    return tuple(value)


def _rule(data: Any, where: str) -> Rule:
    if not isinstance(data, dict):
        raise PolicyError(f"{where} must be a table")
    known = {"name", "principals", *FIELDS}
    unknown = sorted(set(data) - known)
    if unknown:
        raise PolicyError(f"{where}: unknown key(s) {', '.join(unknown)}; known: "
                          f"{', '.join(sorted(known))}")
    name = data.get("name", where)
    if not isinstance(name, str):
        raise PolicyError(f"{where}: name must be a string")
    principals = (_strings(data["principals"], f"{where}.principals")
                  if "principals" in data else None)
    fields = {key: _strings(data[key], f"{where}.{key}") for key in FIELDS if key in data}
    for kind in fields.get("kind", ()):
        if not any(fnmatch.fnmatchcase(choice, kind) for choice in KINDS):
            raise PolicyError(f"{where}.kind: {kind!r} matches none of {', '.join(KINDS)}")
    return Rule(name, principals, fields)


def _groups(data: Any, where: str) -> dict[str, tuple[str, ...]]:
    if not isinstance(data, dict):
        raise PolicyError(f"{where} must be a table of name = [principal patterns]")
    return {str(name): _strings(value, f"{where}.{name}") for name, value in data.items()}


def parse_policy(data: Mapping[str, Any], source: str = "<policy>") -> Policy:
    """A policy from the tables of a parsed policy file; :class:`PolicyError` if invalid."""
    unknown = sorted(set(data) - {"deny", "allow", "groups"})
    if unknown:
        raise PolicyError(f"{source}: unknown key(s) {', '.join(unknown)}; a policy has "
                          "[groups], [[deny]] and [[allow]]")
    rules: dict[str, tuple[Rule, ...]] = {}
    for section in ("deny", "allow"):
        items = data.get(section, [])
        if not isinstance(items, list):
            raise PolicyError(f"{source}: {section} must be an array of tables "
                              f"([[{section}]])")
        rules[section] = tuple(_rule(item, f"{section}[{index}]")
                               for index, item in enumerate(items))
    groups = _groups(data.get("groups", {}), "groups")
    for rule in (*rules["deny"], *rules["allow"]):
        for entry in rule.principals or ():
            name = entry[len(_GROUP_PREFIX):] if entry.startswith(_GROUP_PREFIX) else None
            if name is not None and not name:
                raise PolicyError(f"{source}: rule {rule.name!r} names an empty group")
    return Policy(rules["deny"], rules["allow"], groups, source)


def load_policy(path: str) -> Policy:
    """Read and check the policy file at ``path``; :class:`PolicyError` says what is wrong."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise PolicyError(f"cannot read policy file {path!r}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"policy file {path!r} is not valid TOML: {exc}") from None
    try:
        return parse_policy(data, path)
    except PolicyError as exc:
        raise PolicyError(f"policy file {path!r}: {exc}") from None


def merge_groups(*sources: Iterable[str]) -> tuple[str, ...]:
    """Group names from several sources, in order, without repeats."""
    seen: dict[str, None] = {}
    for source in sources:
        for name in source:
            seen.setdefault(name, None)
    return tuple(seen)
