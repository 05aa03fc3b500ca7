"""bridge serve on HTTP: the OpenAPI document (validated, fuzzed with schemathesis), the
explorer page in a real headless chromium, and the curl examples of docs/http.md."""

from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import urllib.request

import pytest
from serving import ROOT, ServeProcess

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"]


def _serve(*args: str) -> ServeProcess:
    proc = ServeProcess(["--grpc-url", "none", "--http-url", "http://127.0.0.1:0",
                         "--amqp-url", "none", *args])
    proc.wait_ready()
    return proc


def _stop(proc: ServeProcess) -> None:
    proc.signal(signal.SIGTERM)
    proc.wait()
    proc.close()


@pytest.fixture(scope="module")
def test_server():
    """bridge serve with the HTTP tests' endpoints (http_endpoints), HTTP only."""
    proc = _serve("--endpoint", "http_endpoints", "--no-default-endpoints", "--topic", "bridge")
    try:
        yield proc.address("http")
    finally:
        _stop(proc)


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_openapi_document_validates(test_server):
    from openapi_spec_validator import validate

    document = _get_json(test_server + "/v1/openapi.json")
    validate(document)
    assert document["openapi"] == "3.1.0"
    paths = document["paths"]
    assert {"/v1/bridge/add", "/v1/bridge/mul", "/v1/bridge/greet", "/v1/bridge/echo",
            "/v1/call", "/v1/cast"} <= set(paths)
    add = paths["/v1/bridge/add"]["post"]
    assert add["requestBody"]["content"]["application/json"]["schema"] == {
        "type": "object", "additionalProperties": False, "required": ["a"],
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer", "default": 0}}}
    assert {"name": "namespace", "in": "query", "required": True,
            "schema": {"type": "string", "enum": ["calc"]},
            "description": "The endpoint's namespace (absent: the null namespace)."} in \
        add["parameters"]
    assert add["summary"] == "Add two integers."


def test_schemathesis_finds_no_server_error(test_server, tmp_path):
    """Property-based requests from the document: no 5xx, every response as documented.

    Positive data only: a request that breaks a method's schema still reaches the method,
    and the method's own exception is a 500 (UNKNOWN), as on gRPC."""
    checks = ",".join(["not_a_server_error", "status_code_conformance",
                       "content_type_conformance", "response_schema_conformance",
                       "response_headers_conformance"])
    done = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", test_server + "/v1/openapi.json",
         "--max-examples", "50", "--mode", "positive", "--checks", checks, "--seed", "1",
         "--phases", "coverage,fuzzing", "--request-timeout", "10", "--workers", "1"],
        capture_output=True, text=True, timeout=240, cwd=tmp_path,
        env={**os.environ, "SCHEMATHESIS_TELEMETRY": "false", "NO_COLOR": "1"})
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "No issues found" in done.stdout


def _chromium_or_skip() -> None:
    if os.path.exists(CHROMIUM):
        try:
            import playwright  # noqa: F401
            return
        except ImportError:
            reason = "the Python package playwright is not installed"
    else:
        reason = f"{CHROMIUM} is missing (apt-get install -y chromium)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI=true requires the explorer's browser test")
    pytest.skip(reason)


def test_explorer_page_in_chromium(test_server):
    _chromium_or_skip()
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            page.goto(test_server + "/")
            # The page lists the served endpoints and their methods.
            expect(page.locator("nav")).to_contain_text("namespace calc, version 1.2")
            for method in ("bridge/calc/add", "bridge/calc/mul", "bridge//greet",
                           "bridge//lookup"):
                expect(page.locator(f'button[data-method="{method}"]')).to_be_visible()
            # A call shows its result.
            page.click('button[data-method="bridge/calc/add"]')
            page.fill('[data-arg="a"]', "2")
            page.fill('[data-arg="b"]', "40")
            page.click("#call")
            expect(page.locator("#result")).to_have_text("42")
            page.click('button[data-method="bridge//greet"]')
            page.fill('[data-arg="name"]', "Ada")
            page.click("#call")
            expect(page.locator("#result")).to_have_text('"Hello, Ada!"')
            # An error shows its class and message.
            page.click('button[data-method="bridge//lookup"]')
            page.fill('[data-arg="key"]', "green")  # a bare word for a string parameter
            page.click("#call")
            expect(page.locator("#error-class")).to_have_text("KeyError:")
            expect(page.locator("#error-message")).to_have_text("'green'")
            expect(page.locator("#result")).to_be_hidden()
        finally:
            browser.close()


# -- docs/http.md ----------------------------------------------------------------------------

DOC = ROOT / "docs" / "http.md"


def doc_examples(path: pathlib.Path = DOC) -> list[tuple[str, str | None]]:
    """(command, expected output or None) of each ``sh`` block of the doc: a command is a
    line that runs curl; the ``# `` lines right after it are its expected output."""
    examples: list[tuple[str, str | None]] = []
    for block in re.findall(r"```sh\n(.*?)```", path.read_text(), re.S):
        lines = block.splitlines()
        for index, line in enumerate(lines):
            if "curl " not in line or line.startswith("#"):
                continue
            expected = []
            for following in lines[index + 1:]:
                if not following.startswith("# "):
                    break
                expected.append(following[2:])
            examples.append((line, "\n".join(expected) if expected else None))
    return examples


def test_doc_has_curl_examples():
    examples = doc_examples()
    assert len(examples) >= 8
    assert sum(1 for _, expected in examples if expected is not None) >= 6


def test_doc_curl_examples_run_verbatim():
    """Each curl of docs/http.md against bridge serve's shipped endpoints, its printed
    output as the doc shows it (the doc's localhost:8080 pointed at this server)."""
    if not os.path.exists("/usr/bin/curl"):
        pytest.skip("curl is missing")
    proc = _serve()
    try:
        address = proc.address("http").split("://", 1)[1]
        for command, expected in doc_examples():
            done = subprocess.run(["bash", "-o", "pipefail", "-c",
                                   command.replace("localhost:8080", address)],
                                  capture_output=True, text=True, timeout=30)
            assert done.returncode == 0, (command, done.stderr)
            if expected is not None:
                assert done.stdout.strip() == expected, (command, done.stdout)
    finally:
        _stop(proc)


def test_bridge_describe_health_and_call_over_http(test_server):
    def cli(*argv: str) -> subprocess.CompletedProcess:
        from serving import source_env

        return subprocess.run([sys.executable, "-m", "bridge", *argv], capture_output=True,
                              text=True, env=source_env(), cwd=ROOT, timeout=60)

    done = cli("describe", test_server)
    assert done.returncode == 0, done.stderr
    assert "namespace 'calc', version 1.2" in done.stdout
    assert "    add(a: integer, b: integer = 0) -> integer" in done.stdout
    assert "        Add two integers." in done.stdout
    as_json = cli("describe", test_server, "--json")
    assert as_json.returncode == 0
    assert json.loads(as_json.stdout) == _get_json(test_server + "/v1/describe")
    health = cli("health", test_server)
    assert (health.returncode, health.stdout.strip()) == (0, "SERVING")
    call = cli("call", test_server, "bridge", "mul", "a=6", "b=7", "--namespace", "calc")
    assert (call.returncode, call.stdout.strip()) == (0, "42"), call.stderr
    failed = cli("call", test_server, "bridge", "lookup", 'key="green"')
    assert failed.returncode == 1 and "KeyError" in failed.stderr
    refused = cli("describe", "memory://")
    assert refused.returncode == 2 and "describe needs" in refused.stderr


def test_serve_settings_reach_the_http_driver():
    from bridge.app.serve import driver_conf
    from bridge.app.settings import SettingsError, resolve

    tls = {"tls_cert_file": "/c.pem", "tls_key_file": "/k.pem", "tls_ca_file": "/ca.pem"}
    settings = resolve({"http_url": "https://127.0.0.1:0", "grpc_url": "grpc://127.0.0.1:0",
                        "max_message_size": "1MiB", **tls}, environ={})
    conf = driver_conf(settings)
    assert conf["http"] == {"max_message_size": 1024 * 1024, **tls, "tls_client_auth": True}
    assert "tls_cert_file" not in conf["grpc"]  # plain gRPC beside HTTPS
    plain = driver_conf(resolve({"grpc_url": "grpcs://127.0.0.1:0", **tls}, environ={}))
    assert plain["http"] == {"max_message_size": 4 * 1024 * 1024}
    assert plain["grpc"]["tls_cert_file"] == "/c.pem"
    with pytest.raises(SettingsError, match="TLS files are set"):
        resolve({"grpc_url": "grpc://127.0.0.1:0", **tls}, environ={})
