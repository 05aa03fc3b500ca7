"""bridge serve's settings: flags over BRIDGE_* over the TOML file over defaults; help and docs."""

from __future__ import annotations

import pathlib

import pytest

from bridge.app import cli
from bridge.app.settings import OPTIONS, SettingsError, resolve

ROOT = pathlib.Path(__file__).resolve().parents[2]


def write_config(tmp_path: pathlib.Path, text: str) -> str:
    path = tmp_path / "bridge.toml"
    path.write_text(text)
    return str(path)


def test_defaults_serve_grpc_on_localhost_and_memory():
    settings = resolve({}, environ={})
    assert settings.grpc_url == "grpc://127.0.0.1:50051"
    assert settings.http_url == "http://127.0.0.1:8080"
    assert settings.amqp_urls == ["memory://"]
    assert settings.urls == ["grpc://127.0.0.1:50051", "http://127.0.0.1:8080", "memory://"]
    assert settings.endpoints == [] and settings.topic == "bridge"
    assert settings.grace_period == 30.0 and settings.metrics_port is None
    assert set(settings.sources.values()) == {"default"}


def test_flag_beats_env_beats_file_beats_default(tmp_path):
    config = write_config(tmp_path, 'topic = "from-file"\nserver = "file-server"\n'
                                    'exchange = "file-exchange"\npool_size = 3\n')
    environ = {"BRIDGE_CONFIG": config, "BRIDGE_TOPIC": "from-env", "BRIDGE_SERVER": "env-srv"}
    settings = resolve({"topic": "from-flag"}, environ=environ)
    assert settings.topic == "from-flag" and settings.sources["topic"] == "flag"
    assert settings.server == "env-srv" and settings.sources["server"] == "env"
    assert settings.exchange == "file-exchange" and settings.sources["exchange"] == "config"
    assert settings.pool_size == 3 and settings.sources["pool_size"] == "config"
    assert settings.grace_period == 30.0 and settings.sources["grace_period"] == "default"
    assert settings.config_file == config


def test_config_flag_beats_config_env(tmp_path):
    first = write_config(tmp_path, 'topic = "first"\n')
    other = tmp_path / "other.toml"
    other.write_text('topic = "second"\n')
    settings = resolve({"config": str(other)}, environ={"BRIDGE_CONFIG": first})
    assert settings.topic == "second"


def test_lists_from_each_source(tmp_path):
    multi = "rabbit://u:p@h1:5672,u:p@h2:5672/vhost"
    env = resolve({}, environ={"BRIDGE_AMQP_URLS": f"{multi}  memory://x",
                               "BRIDGE_ENDPOINTS": "endpoints.echo:EchoEndpoint, endpoints.test:"
                                                   "TestEndpoint"})
    assert env.amqp_urls == [multi, "memory://x"]
    assert env.endpoints == ["endpoints.echo:EchoEndpoint", "endpoints.test:TestEndpoint"]
    flags = resolve({"amqp_urls": [multi, "memory://"]}, environ={})
    assert flags.amqp_urls == [multi, "memory://"]
    config = write_config(tmp_path, f'amqp_urls = ["{multi}"]\nendpoints = ["a:B"]\n')
    from_file = resolve({}, environ={"BRIDGE_CONFIG": config})
    assert from_file.amqp_urls == [multi] and from_file.endpoints == ["a:B"]


def test_turning_wires_off():
    only_memory = resolve({}, environ={"BRIDGE_GRPC_URL": "none", "BRIDGE_HTTP_URL": ""})
    assert only_memory.urls == ["memory://"]
    only_grpc = resolve({"amqp_urls": ["none"], "http_url": "none"}, environ={})
    assert only_grpc.urls == ["grpc://127.0.0.1:50051"]
    only_http = resolve({"amqp_urls": ["none"], "grpc_url": "none"}, environ={})
    assert only_http.urls == ["http://127.0.0.1:8080"]
    with pytest.raises(SettingsError, match="nothing to listen on"):
        resolve({"amqp_urls": ["none"], "grpc_url": "none", "http_url": "none"}, environ={})
    with pytest.raises(SettingsError, match="http_url must start with"):
        resolve({"http_url": "grpc://x:1"}, environ={})
    with pytest.raises(SettingsError, match="https:// needs tls_cert_file"):
        resolve({"http_url": "https://127.0.0.1:0"}, environ={})


@pytest.mark.parametrize("text, value", [("4194304", 4194304), ("4MiB", 4 * 1024 * 1024),
                                         ("512KiB", 512 * 1024), ("1MB", 1_000_000)])
def test_message_size_units(text, value):
    assert resolve({}, environ={"BRIDGE_MAX_MESSAGE_SIZE": text}).max_message_size == value


@pytest.mark.parametrize("environ, where", [
    ({"BRIDGE_POOL_SIZE": "many"}, "BRIDGE_POOL_SIZE"),
    ({"BRIDGE_POOL_SIZE": "0"}, "BRIDGE_POOL_SIZE"),
    ({"BRIDGE_METRICS_PORT": "70000"}, "BRIDGE_METRICS_PORT"),
    ({"BRIDGE_GRACE_PERIOD": "-1"}, "BRIDGE_GRACE_PERIOD"),
    ({"BRIDGE_LOG_FORMAT": "xml"}, "BRIDGE_LOG_FORMAT"),
    ({"BRIDGE_EXECUTOR": "eventlet"}, "BRIDGE_EXECUTOR"),
    ({"BRIDGE_MAX_MESSAGE_SIZE": "4 parsecs"}, "BRIDGE_MAX_MESSAGE_SIZE"),
    ({"BRIDGE_GRPC_URL": "http://x:1"}, "grpc_url"),
    ({"BRIDGE_GRPC_URL": "grpcs://127.0.0.1:0"}, "grpcs:// needs"),
    ({"BRIDGE_TLS_CERT_FILE": "c.pem"}, "go together"),
])
def test_bad_values_name_their_source(environ, where):
    with pytest.raises(SettingsError, match=where):
        resolve({}, environ=environ)


def test_config_file_errors_are_clear(tmp_path):
    with pytest.raises(SettingsError, match="unknown key.*topik"):
        resolve({}, environ={"BRIDGE_CONFIG": write_config(tmp_path, 'topik = "x"\n')})
    with pytest.raises(SettingsError, match="not valid TOML"):
        resolve({}, environ={"BRIDGE_CONFIG": write_config(tmp_path, "topic = \n")})
    with pytest.raises(SettingsError, match="cannot read"):
        resolve({"config": str(tmp_path / "missing.toml")}, environ={})
    bad_type = write_config(tmp_path, "pool_size = true\n")
    with pytest.raises(SettingsError, match="pool_size in"):
        resolve({}, environ={"BRIDGE_CONFIG": bad_type})


def test_driver_tables_pass_through(tmp_path):
    config = write_config(tmp_path, '[oslo_messaging_rabbit]\nheartbeat_timeout_threshold = 30\n'
                                    '[grpc]\nkeepalive_time_ms = 10000\n')
    settings = resolve({}, environ={"BRIDGE_CONFIG": config})
    assert settings.driver_groups == {"oslo_messaging_rabbit": {"heartbeat_timeout_threshold": 30},
                                      "grpc": {"keepalive_time_ms": 10000}}


def serve_help() -> str:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return " ".join(sub.choices["serve"].format_help().split())


def test_help_documents_every_setting_with_env_and_key():
    text = serve_help()
    assert "--config FILE" in text and "BRIDGE_CONFIG" in text
    for option in OPTIONS:
        assert option.flag in text, option.name
        assert option.env in text, option.name
        assert f"config key {option.name}" in text, option.name


def test_configuration_doc_lists_every_setting():
    doc = (ROOT / "docs" / "configuration.md").read_text()
    for option in OPTIONS:
        flag = f"`{option.flag}`" if option.const else f"`{option.flag} {option.metavar}`"
        row = next((line for line in doc.splitlines() if flag in line), None)
        assert row is not None, f"{option.flag} missing from docs/configuration.md"
        assert f"`{option.env}`" in row and f"`{option.name}`" in row, row


def test_cli_reports_bad_settings_with_exit_2(capsys, monkeypatch):
    monkeypatch.setenv("BRIDGE_POOL_SIZE", "lots")
    assert cli.main(["serve", "--print-settings"]) == 2
    assert "BRIDGE_POOL_SIZE" in capsys.readouterr().err
