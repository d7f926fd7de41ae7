"""deploy/: the Compose file and Kubernetes manifests parse and agree with the code."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
HUB_COMMANDS = {"serve", "relay", "inbox", "worker"}
HUB_VAR = re.compile(r"^HUB_[A-Z0-9_]+$")


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def manifests() -> list[dict[str, Any]]:
    docs = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in manifests() if d["kind"] == kind]


def hub_services() -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose()["services"].items()
        if service.get("image", "").startswith("handover-hub")
    }


def containers() -> list[dict[str, Any]]:
    return [
        c
        for d in manifests()
        if d["kind"] in ("Deployment", "StatefulSet")
        for c in d["spec"]["template"]["spec"]["containers"]
    ]


def env_names_set() -> dict[str, str]:
    """Every HUB_* variable the deploy files set, with where it is set."""
    found: dict[str, str] = {}
    for name, service in compose()["services"].items():
        env = service.get("environment") or {}
        items = env if isinstance(env, dict) else dict(e.split("=", 1) for e in env)
        found.update({key: f"compose:{name}" for key in items if key.startswith("HUB_")})
    for container in containers():
        for item in container.get("env", []):
            if item["name"].startswith("HUB_"):
                found[item["name"]] = f"k8s:{container['name']}"
    for doc in of_kind("ConfigMap") + of_kind("Secret"):
        data = {**doc.get("data", {}), **doc.get("stringData", {})}
        found.update(
            {key: f"k8s:{doc['metadata']['name']}" for key in data if key.startswith("HUB_")}
        )
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    found.update(dict.fromkeys(re.findall(r"\b(HUB_[A-Z0-9_]+)=", dockerfile), "Dockerfile"))
    return found


def test_every_hub_variable_is_a_setting() -> None:
    found = env_names_set()
    assert len(found) >= 8
    fields = set(Settings.model_fields)
    unknown = {
        name: where for name, where in found.items() if name[len("HUB_") :].lower() not in fields
    }
    assert not unknown, f"HUB_ variables the settings do not know: {unknown}"
    for name in found:
        assert HUB_VAR.match(name), name


def test_settings_read_the_values_the_deploy_files_give() -> None:
    env = dict(hub_services()["relay"]["environment"])
    env["HUB_DATABASE_URL"] = "postgresql://hub:secret@postgres:5432/hub"
    settings = Settings(**{k[len("HUB_") :].lower(): v for k, v in env.items()})
    assert settings.kafka_bootstrap == "kafka:9092"
    assert settings.kafka_events_partitions == 6
    assert settings.health_file is not None
    config = of_kind("ConfigMap")[0]["data"]
    Settings(**{k[len("HUB_") :].lower(): v for k, v in config.items()})


def test_compose_runs_every_process_from_the_hub_image() -> None:
    services = compose()["services"]
    assert {"postgres", "kafka", "api", "relay", "inbox", "worker"} <= set(services)
    commands = {name: service["command"][0] for name, service in hub_services().items()}
    assert commands == {"api": "serve", "relay": "relay", "inbox": "inbox", "worker": "worker"}
    assert "apache/kafka" in services["kafka"]["image"]
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    for name, service in services.items():
        assert "healthcheck" in service, f"{name} has no health check"
        for dependency in service.get("depends_on", {}):
            assert dependency in services
    for name in ("relay", "inbox"):
        env = services[name]["environment"]
        assert env["HUB_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert env["HUB_HEALTH_FILE"] in " ".join(services[name]["healthcheck"]["test"])
    assert services["api"]["environment"]["HUB_SERVE_KAFKA"] == "false"
    assert services["relay"]["deploy"]["replicas"] == 1
    for secret in next(iter(hub_services().values()))["secrets"]:
        assert secret in compose()["secrets"]


def test_kubernetes_manifests_cross_reference() -> None:
    docs = manifests()
    assert all(d.get("apiVersion") and d.get("kind") and d["metadata"].get("name") for d in docs)
    namespaces = {d["metadata"]["name"] for d in of_kind("Namespace")}
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] in namespaces
    config_maps = {d["metadata"]["name"] for d in of_kind("ConfigMap")}
    secrets = {d["metadata"]["name"]: d.get("stringData", {}) for d in of_kind("Secret")}
    workloads = of_kind("Deployment") + of_kind("StatefulSet")
    names = {d["metadata"]["name"] for d in workloads}
    assert {"postgres", "kafka", "hub-api", "hub-relay", "hub-inbox", "hub-worker"} <= names

    hub_args = {}
    for workload in workloads:
        spec = workload["spec"]
        labels = spec["template"]["metadata"]["labels"]
        assert spec["selector"]["matchLabels"].items() <= labels.items()
        pod = spec["template"]["spec"]
        volumes = {v["name"] for v in pod.get("volumes", [])}
        volumes |= {v["metadata"]["name"] for v in spec.get("volumeClaimTemplates", [])}
        for container in pod["containers"]:
            _check_container(container, volumes, config_maps, secrets)
            if container["image"].startswith("handover-hub"):
                hub_args[workload["metadata"]["name"]] = container["args"][0]
        for volume in pod.get("volumes", []):
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secrets
    assert hub_args == {
        "hub-api": "serve",
        "hub-relay": "relay",
        "hub-inbox": "inbox",
        "hub-worker": "worker",
    }
    relay = next(d for d in workloads if d["metadata"]["name"] == "hub-relay")
    assert relay["spec"]["replicas"] == 1
    assert relay["spec"]["strategy"]["type"] == "Recreate"

    for service in of_kind("Service"):
        selector = service["spec"]["selector"]
        assert any(
            selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
            for w in workloads
        ), service["metadata"]["name"]


def _check_container(
    container: dict[str, Any],
    volumes: set[str],
    config_maps: set[str],
    secrets: dict[str, dict[str, str]],
) -> None:
    assert "livenessProbe" in container or "readinessProbe" in container, container["name"]
    ports = {p["name"] for p in container.get("ports", [])}
    for probe in ("livenessProbe", "readinessProbe"):
        checks = container.get(probe, {})
        target = checks.get("httpGet") or checks.get("tcpSocket")
        if target and isinstance(target["port"], str):
            assert target["port"] in ports
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            assert source["configMapRef"]["name"] in config_maps
    for item in container.get("env", []):
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            assert ref["key"] in secrets[ref["name"]]
    for mount in container.get("volumeMounts", []):
        assert mount["name"] in volumes


@pytest.mark.parametrize("command", ["relay", "inbox"])
def test_the_kafka_commands_exist(command: str) -> None:
    from services.cli import app

    names = {c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands}
    assert command in names
    assert {command} <= HUB_COMMANDS
