"""Remote exceptions, dispatch errors (NoSuchMethod, UnsupportedVersion), timeouts and size
limits: the same behaviour on every wire (tests/contract/conftest.py)."""

from __future__ import annotations

import logging
import threading

import pytest
from contract_endpoints import APP_MODULE, DISPATCHER_MODULE, AppError, Echo, Gate, Versioned

import bridge

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def topic_served(wire) -> str:
    """A topic served by one server of the plain and the versioned endpoint."""
    topic = f"{wire.exchange}-failures"
    wire.server(bridge.Target(topic=topic, server="s1"), [Echo("s1"), Versioned()],
                shared=True)
    return topic


# -- remote exceptions -------------------------------------------------------------------

def test_builtin_exception_is_rebuilt(wire, topic_served):
    client = wire.client(bridge.Target(topic=topic_served))
    with pytest.raises(ValueError, match="bad value 42"):
        client.call({}, "fail_builtin", text="bad value 42")


def test_app_exception_rebuilt_when_its_module_is_allowed(wire, topic_served):
    client = wire.client(bridge.Target(topic=topic_served), allowed_remote_exmods=[APP_MODULE])
    with pytest.raises(AppError) as info:
        client.call({}, "fail_app", code=7)
    assert (info.value.code, info.value.detail) == (7, "from the endpoint")
    assert "7" in str(info.value)


def test_app_exception_is_a_remote_error_otherwise(wire, topic_served):
    client = wire.client(bridge.Target(topic=topic_served))
    with pytest.raises(bridge.RemoteError) as info:
        client.call({}, "fail_app", code=7)
    assert info.value.exc_type == "AppError"
    assert "7" in info.value.value
    assert not isinstance(info.value, AppError)


def test_remote_traceback(wire, topic_served):
    """Whether a failure carries the server's traceback (conftest DIFFERENCES)."""
    client = wire.client(bridge.Target(topic=topic_served))
    with pytest.raises(bridge.RemoteError) as info:
        client.call({}, "fail_app", code=1)
    traceback = "".join(info.value.traceback or [])
    if wire.differences["remote_traceback"] == "sent":
        assert "fail_app" in traceback and "AppError" in traceback
    else:
        assert traceback == ""


def test_expected_exceptions_reach_the_caller_and_are_not_logged_as_errors(
        wire, topic_served, caplog):
    client = wire.client(bridge.Target(topic=topic_served), allowed_remote_exmods=[APP_MODULE])
    with caplog.at_level(logging.DEBUG, logger="bridge"):
        with pytest.raises(AppError) as info:
            client.call({}, "fail_expected", code=3)
        with pytest.raises(AppError):
            client.call({}, "fail_app", code=4)
    assert (info.value.code, info.value.detail) == (3, "expected")
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("fail_app" in text for text in errors), errors
    assert not any("fail_expected" in text for text in errors), errors


# -- dispatch errors ---------------------------------------------------------------------

@pytest.mark.parametrize("method", ["no_such_method", "_private"])
def test_no_such_method(wire, topic_served, method):
    allowed = wire.client(bridge.Target(topic=topic_served),
                          allowed_remote_exmods=[DISPATCHER_MODULE])
    with pytest.raises(bridge.NoSuchMethod) as info:
        allowed.call({}, method)
    assert info.value.method == method
    plain = wire.client(bridge.Target(topic=topic_served))
    with pytest.raises(bridge.RemoteError) as remote:
        plain.call({}, method)
    assert remote.value.exc_type == "NoSuchMethod"


@pytest.mark.parametrize(("namespace", "version"), [
    ("inventory", "1.0"), ("inventory", "1.3"), ("inventory", "1.3.0"), ("stock", "1.1"),
])
def test_compatible_namespace_and_version(wire, topic_served, namespace, version):
    client = wire.client(bridge.Target(topic=topic_served, namespace=namespace,
                                       version=version))
    assert client.call({}, "count") == 13


@pytest.mark.parametrize(("namespace", "version", "method", "error"), [
    ("inventory", "1.4", "count", bridge.UnsupportedVersion),
    ("inventory", "2.0", "count", bridge.UnsupportedVersion),
    ("elsewhere", "1.0", "count", bridge.UnsupportedVersion),
    (None, "2.0", "echo", bridge.UnsupportedVersion),
    (None, "1.0", "count", bridge.NoSuchMethod),  # null namespace: Echo, without count
    ("inventory", "1.0", "echo", bridge.NoSuchMethod),
], ids=["minor-above", "major-above", "unknown-namespace", "null-namespace-2.0",
        "null-namespace-no-method", "namespace-no-method"])
def test_incompatible_namespace_or_version(wire, topic_served, namespace, version, method,
                                           error):
    client = wire.client(bridge.Target(topic=topic_served, namespace=namespace,
                                       version=version),
                         allowed_remote_exmods=[DISPATCHER_MODULE])
    with pytest.raises(error) as info:
        client.call({}, method, value=1) if method == "echo" else client.call({}, method)
    if error is bridge.UnsupportedVersion:
        assert info.value.version == version


def test_version_cap_refuses_before_sending(wire, topic_served):
    client = wire.client(bridge.Target(topic=topic_served, namespace="inventory",
                                       version="1.3"), version_cap="1.2")
    assert not client.can_send_version()
    with pytest.raises(bridge.RPCVersionCapError):
        client.call({}, "count")


def test_value_no_wire_carries_is_refused_before_sending(wire, topic_served):
    client = wire.client(bridge.Target(topic=topic_served))
    with pytest.raises(bridge.NotPrimitiveError, match="argument 'value'"):
        client.call({}, "echo", value=object())
    with pytest.raises(bridge.NotPrimitiveError):
        client.call({}, "echo", value={1: "int key"})
    assert client.call({}, "echo", value="still served") == "still served"


# -- timeouts ----------------------------------------------------------------------------

@pytest.mark.parametrize("executor", ["threading", "blocking", "asyncio"])
def test_timeout_then_the_server_goes_on(wire, topic, executor):
    gate = Gate()
    wire.server(bridge.Target(topic=topic, server="s1"), [gate], executor=executor)
    client = wire.client(bridge.Target(topic=topic), timeout=0.5)
    with pytest.raises(bridge.MessagingTimeout):
        client.call({}, "hold", value="late")
    assert gate.entered.is_set()
    gate.open()
    # The late answer is dropped: the same client's next calls get their own answers.
    later = client.prepare(timeout=10)
    assert later.call({}, "hold", value="second") == "second"
    assert later.call({}, "quick") == "quick"


# -- size limits -------------------------------------------------------------------------

@pytest.mark.parametrize("direction", ["request", "reply"])
def test_five_mib(wire, topic_served, direction):
    """A 5 MiB request or reply (conftest DIFFERENCES: size_limit)."""
    client = wire.client(bridge.Target(topic=topic_served), timeout=20)

    def send():
        if direction == "request":
            return len(client.call({}, "echo", value="x" * (5 * MIB)))
        return len(client.call({}, "blob", size=5 * MIB))

    if wire.differences["size_limit"] == "none":
        assert send() == 5 * MIB
    else:
        with pytest.raises(bridge.MessageDeliveryFailure, match="RESOURCE_EXHAUSTED"):
            send()
    assert client.call({}, "whoami") == "s1"


def test_calls_in_parallel_each_get_their_own_answer(wire, topic_served):
    client = wire.client(bridge.Target(topic=topic_served))
    results: dict[int, object] = {}

    def call(index: int) -> None:
        results[index] = client.call({}, "echo", value=index)

    threads = [threading.Thread(target=call, args=(index,)) for index in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert results == {index: index for index in range(16)}
