"""The classic oslo.messaging server example runs unchanged but for its import line."""

from __future__ import annotations

import contextlib
import ctypes
import io
import pathlib
import runpy
import threading
import uuid

import pytest

import bridge

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "server.py"


def test_example_imports_only_bridge_as_oslo_messaging():
    text = EXAMPLE.read_text()
    assert "import bridge as oslo_messaging" in text
    assert "from oslo_config import cfg" in text
    assert "import oslo_messaging" not in text.replace("import bridge as oslo_messaging", "")


def test_example_serves_on_the_memory_transport(monkeypatch):
    from oslo_config import cfg
    url = f"memory://example-{uuid.uuid4().hex}"
    monkeypatch.setenv("BRIDGE_TRANSPORT_URL", url)
    with contextlib.suppress(cfg.NoSuchOptError):
        cfg.CONF.set_override("transport_url", url)  # when another test registered it
    output = io.StringIO()
    finished = threading.Event()

    def run_example():
        with contextlib.redirect_stdout(output):
            runpy.run_path(str(EXAMPLE), run_name="__main__")
        finished.set()

    thread = threading.Thread(target=run_example, daemon=True)
    thread.start()
    transport = bridge.get_transport(None, url)
    client = bridge.get_rpc_client(transport, bridge.Target(topic="test"), timeout=2)
    for _ in range(25):  # the example needs a moment to start listening
        try:
            assert client.call({}, "test", arg={"hello": [1, 2.5]}) == {"hello": [1, 2.5]}
            break
        except bridge.MessagingTimeout:
            continue
    else:
        pytest.fail("the example never answered")
    control = client.prepare(namespace="control", version="2.0")
    assert control.call({}, "stop") is None  # its ServerControlEndpoint(None) stops nothing
    # Interrupt the example as Ctrl-C would: it prints, stops and waits.
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident),
                                               ctypes.py_object(KeyboardInterrupt))
    assert finished.wait(10)
    assert "Stopping server" in output.getvalue()
    transport.cleanup()
