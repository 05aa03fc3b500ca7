"""The shipped manifests probe liveness and readiness apart, by the documented names."""

from __future__ import annotations

import yaml
from serving import ROOT

from bridge.transport.grpc.health import LIVENESS, READINESS


def test_kubernetes_probes_liveness_and_readiness_apart():
    docs = list(yaml.safe_load_all((ROOT / "deploy" / "kubernetes.yaml").read_text()))
    deployment = next(doc for doc in docs if doc["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item.get("value") for item in container["env"]}
    if env.get("BRIDGE_GRPC_URL", "").startswith("grpcs://"):
        # Native gRPC probes speak no TLS: the same states on the metrics port.
        assert container["readinessProbe"]["httpGet"] == {"port": "metrics", "path": "/readyz"}
        assert container["livenessProbe"]["httpGet"] == {"port": "metrics", "path": "/healthz"}
    else:
        assert container["readinessProbe"]["grpc"] == {"port": 50051, "service": READINESS}
        assert container["livenessProbe"]["grpc"] == {"port": 50051, "service": LIVENESS}
    assert float(env["BRIDGE_MAX_CONNECTION_AGE"]) > 0
    headless = [doc for doc in docs if doc["kind"] == "Service"
                and doc["spec"].get("clusterIP") == "None"]
    assert headless and headless[0]["spec"]["selector"] == {"app": "rpc-bridge"}


def test_compose_and_the_image_check_readiness():
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    test = compose["services"]["bridge"]["healthcheck"]["test"]
    assert test[:4] == ["CMD", "bridge", "health", "--service"] and test[4] == READINESS
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f'"--service", "{READINESS}"' in dockerfile
