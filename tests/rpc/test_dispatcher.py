"""The dispatch rules of docs/wire.md 1.4, as a scenario table, plus access policies."""

from __future__ import annotations

import pytest

import bridge
from bridge.rpc.dispatcher import RPCDispatcher, version_is_compatible


def make_endpoint(name, namespace=None, version=None, legacy=None, methods=("foo",)):
    attrs = {m: (lambda self, ctxt, _n=name, **kw: _n) for m in methods}
    cls = type(f"Endpoint_{name}", (), attrs)
    endpoint = cls()
    if namespace is not None or version is not None or legacy is not None:
        endpoint.target = bridge.Target(namespace=namespace, version=version,
                                        legacy_namespaces=legacy)
    return endpoint


# (description, endpoints as (name, namespace, version, legacy, methods), message, expected)
# expected: the name of the endpoint that serves, or an exception class.
SCENARIOS = [
    ("default endpoint, no version asked", [("a", None, None, None, ("foo",))],
     {"method": "foo"}, "a"),
    ("default endpoint is 1.0, 1.0 asked", [("a", None, None, None, ("foo",))],
     {"method": "foo", "version": "1.0"}, "a"),
    ("default endpoint is 1.0, 1.1 asked", [("a", None, None, None, ("foo",))],
     {"method": "foo", "version": "1.1"}, bridge.UnsupportedVersion),
    ("explicit null version matches nothing", [("a", None, "1.0", None, ("foo",))],
     {"method": "foo", "version": None}, bridge.UnsupportedVersion),
    ("first match in list order", [("a", None, "1.0", None, ("foo",)),
                                   ("b", None, "1.0", None, ("foo",))],
     {"method": "foo"}, "a"),
    ("first compatible endpoint that has the method", [("a", None, "1.0", None, ("bar",)),
                                                      ("b", None, "1.0", None, ("foo",))],
     {"method": "foo"}, "b"),
    ("compatible endpoint without the method", [("a", None, "1.0", None, ("bar",))],
     {"method": "foo"}, bridge.NoSuchMethod),
    ("higher minor serves a lower request", [("a", None, "1.5", None, ("foo",)),
                                            ("b", None, "3.4", None, ("foo",))],
     {"method": "foo", "version": "3.2"}, "b"),
    ("no endpoint of the major", [("a", None, "1.5", None, ("foo",)),
                                  ("b", None, "3.0", None, ("foo",))],
     {"method": "foo", "version": "3.2"}, bridge.UnsupportedVersion),
    ("major must match", [("a", None, "2.5", None, ("foo",))],
     {"method": "foo", "version": "1.0"}, bridge.UnsupportedVersion),
    ("third part: equal minor, lower rev asked", [("a", None, "1.2.3", None, ("foo",))],
     {"method": "foo", "version": "1.2.1"}, "a"),
    ("third part: equal minor, higher rev asked", [("a", None, "1.2.3", None, ("foo",))],
     {"method": "foo", "version": "1.2.4"}, bridge.UnsupportedVersion),
    ("third part ignored when the endpoint minor is higher",
     [("a", None, "1.3", None, ("foo",))], {"method": "foo", "version": "1.2.9"}, "a"),
    ("missing rev counts as 0", [("a", None, "1.2", None, ("foo",))],
     {"method": "foo", "version": "1.2.1"}, bridge.UnsupportedVersion),
    ("namespace selects the endpoint", [("a", None, "1.0", None, ("foo",)),
                                        ("b", "ns", "1.0", None, ("foo",))],
     {"method": "foo", "namespace": "ns"}, "b"),
    ("null namespace does not reach a named one", [("b", "ns", "1.0", None, ("foo",))],
     {"method": "foo"}, bridge.UnsupportedVersion),
    ("unknown namespace is UnsupportedVersion, not NoSuchMethod",
     [("a", None, "1.0", None, ("foo",))], {"method": "foo", "namespace": "other"},
     bridge.UnsupportedVersion),
    ("legacy namespace accepted", [("a", "new", "1.0", ["old"], ("foo",))],
     {"method": "foo", "namespace": "old"}, "a"),
    ("current namespace still accepted with legacy ones",
     [("a", "new", "1.0", ["old"], ("foo",))], {"method": "foo", "namespace": "new"}, "a"),
    ("private method refused by the default policy: NoSuchMethod",
     [("a", None, "1.0", None, ("_secret",))], {"method": "_secret"}, bridge.NoSuchMethod),
    ("compatible namespace, wrong version, other namespace has method",
     [("a", "ns", "2.0", None, ("foo",)), ("b", None, "1.0", None, ("bar",))],
     {"method": "foo", "namespace": "ns", "version": "1.0"}, bridge.UnsupportedVersion),
]


@pytest.mark.parametrize("description,endpoints,message,expected", SCENARIOS,
                         ids=[s[0] for s in SCENARIOS])
def test_dispatch_scenarios(description, endpoints, message, expected):
    dispatcher = RPCDispatcher([make_endpoint(*spec) for spec in endpoints])
    message = dict(message, args={})
    if isinstance(expected, str):
        assert dispatcher.dispatch({}, message) == expected
    else:
        with pytest.raises(expected) as info:
            dispatcher.dispatch({}, message)
        assert type(info.value) is expected  # NoSuchMethod must not pass for UnsupportedVersion


def test_error_texts_match_oslo():
    dispatcher = RPCDispatcher([make_endpoint("a", None, "1.0")])
    with pytest.raises(bridge.NoSuchMethod, match="^Endpoint does not support RPC method bar$"):
        dispatcher.dispatch({}, {"method": "bar", "args": {}})
    with pytest.raises(bridge.UnsupportedVersion,
                       match=r"^Endpoint does not support RPC version 2\.0\. "
                             r"Attempted method: foo$"):
        dispatcher.dispatch({}, {"method": "foo", "args": {}, "version": "2.0"})
    assert issubclass(bridge.NoSuchMethod, AttributeError)


@pytest.mark.parametrize("imp,req,ok", [
    (None, "9.9", True), ("1.0", None, False), ("1.5", "1.5", True), ("1.5", "1.6", False),
    ("1.5", "1.0", True), ("2.0", "1.0", False), ("1.2.3", "1.2.3", True),
    ("1.2.3", "1.2.4", False), ("1.3.0", "1.2.9", True), ("1.2", "1.2.0", True),
])
def test_version_is_compatible(imp, req, ok):
    assert version_is_compatible(imp, req) is ok


class Policies:
    def public(self, ctxt):
        return "public"

    def _private(self, ctxt):
        return "private"

    @bridge.expose
    def exposed(self, ctxt):
        return "exposed"


@pytest.mark.parametrize("policy,method,allowed", [
    (None, "public", True), (None, "_private", False),
    (bridge.DefaultRPCAccessPolicy, "_private", False),
    (bridge.LegacyRPCAccessPolicy, "_private", True),
    (bridge.LegacyRPCAccessPolicy, "public", True),
    (bridge.ExplicitRPCAccessPolicy, "public", False),
    (bridge.ExplicitRPCAccessPolicy, "exposed", True),
])
def test_access_policies(policy, method, allowed):
    dispatcher = RPCDispatcher([Policies()], access_policy=policy)
    message = {"method": method, "args": {}}
    if allowed:
        assert dispatcher.dispatch({}, message) == method.strip("_")
    else:
        with pytest.raises(bridge.NoSuchMethod):
            dispatcher.dispatch({}, message)


def test_access_policy_must_be_a_policy_class():
    with pytest.raises(TypeError):
        RPCDispatcher([Policies()], access_policy=bridge.LegacyRPCAccessPolicy())
    with pytest.raises(TypeError):
        RPCDispatcher([Policies()], access_policy=object)


def test_endpoint_target_must_be_a_target(transport):
    class Bad:
        target = "not a target"

    with pytest.raises(TypeError, match="target"):
        bridge.get_rpc_server(transport, bridge.Target(topic="t", server="s"), [Bad()])


def test_non_callable_attribute_fails_with_type_error():
    class WithAttribute:
        foo = 3

    with pytest.raises(TypeError):
        RPCDispatcher([WithAttribute()]).dispatch({}, {"method": "foo", "args": {}})


@pytest.mark.parametrize("message,match", [
    ({"args": {}}, "method"),
    ({"method": 5, "args": {}}, "method"),
    ({"method": "foo", "args": []}, "args"),
    ({"method": "foo", "args": {}, "version": 1.0}, "version"),
    ({"method": "foo", "args": {}, "version": "one"}, "version"),
    ({"method": "foo", "args": {}, "namespace": 3}, "namespace"),
    ("not a dict", "dict"),
])
def test_malformed_messages_are_clear_errors(message, match):
    dispatcher = RPCDispatcher([make_endpoint("a")])
    with pytest.raises(bridge.MalformedMessage, match=match):
        dispatcher.dispatch({}, message)


def test_context_and_arguments_pass_through():
    class Recorder:
        def record(self, ctxt, **kwargs):
            return {"ctxt": ctxt, "kwargs": kwargs}

    result = RPCDispatcher([Recorder()]).dispatch(
        {"user": "u1"}, {"method": "record", "args": {"a": 1, "b": [2]}})
    assert result == {"ctxt": {"user": "u1"}, "kwargs": {"a": 1, "b": [2]}}


def test_target_copy_keeps_legacy_namespaces():
    target = bridge.Target(topic="t", namespace="new", legacy_namespaces=["old"])
    copy = target(version="1.1")
    assert copy.legacy_namespaces == ["old"]
    assert copy.accepted_namespaces == ["new", "old"]
    assert copy.version == "1.1" and copy.topic == "t"
    assert target == bridge.Target(topic="t", namespace="new", legacy_namespaces=["old"])
    assert target != copy
    with pytest.raises(TypeError):
        target(colour="red")


def test_many_distinct_versions_and_namespaces_keep_the_rule():
    """The dispatcher remembers which endpoints accept a (namespace, version); past its
    bound it still decides each message by the rule, and the remembered answers stay right."""
    dispatcher = RPCDispatcher([make_endpoint("v1", version="1.5", methods=("hello",)),
                                make_endpoint("v2", "ns", "2.3", methods=("hello",))])
    for _ in range(2):  # the second round reads what the first remembered
        for minor in range(300):
            message = {"method": "hello", "args": {}, "version": f"1.{minor}"}
            if minor <= 5:
                assert dispatcher.dispatch({}, message) == "v1"
            else:
                with pytest.raises(bridge.UnsupportedVersion):
                    dispatcher.dispatch({}, message)
        message = {"method": "hello", "args": {}, "namespace": "ns", "version": "2.1"}
        assert dispatcher.dispatch({}, message) == "v2"
        with pytest.raises(bridge.NoSuchMethod):
            dispatcher.dispatch({}, dict(message, method="missing"))
