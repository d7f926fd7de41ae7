"""deploy/: the Compose file and Kubernetes manifests parse and agree with the code."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
# The Secrets an operator creates (deploy/README.md, "Kubernetes"), and their keys.
SECRETS = {
    "hub-secrets": {"HUB_DATABASE_URL", "POSTGRES_PASSWORD", "master.key"},
    "hub-kafka": {"sasl-password", "ca.pem"},
}
HUB_COMMANDS = {"serve", "relay", "inbox", "worker"}
HUB_VAR = re.compile(r"^HUB_[A-Z0-9_]+$")


@cache  # parsed once: the tests only read them
def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


@cache
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
    secrets: dict[str, dict[str, str]] = {}
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
                wanted = {item["key"] for item in volume["secret"].get("items", [])}
                assert wanted <= SECRETS[volume["secret"]["secretName"]], volume
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps
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
            # Secrets are made by hand (deploy/README.md), never shipped with values.
            assert ref["key"] in SECRETS[ref["name"]], ref
    for mount in container.get("volumeMounts", []):
        assert mount["name"] in volumes


@pytest.mark.parametrize("command", ["relay", "inbox"])
def test_the_kafka_commands_exist(command: str) -> None:
    from services.cli import app

    names = {c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands}
    assert command in names
    assert {command} <= HUB_COMMANDS


# ---- hardening: what every manifest must hold ----------------------------------------


def workloads() -> list[dict[str, Any]]:
    return of_kind("Deployment") + of_kind("StatefulSet")


def pods() -> dict[str, dict[str, Any]]:
    return {w["metadata"]["name"]: w["spec"]["template"] for w in workloads()}


def hub_workloads() -> list[dict[str, Any]]:
    return [
        w
        for w in workloads()
        if any(
            c["image"].startswith("handover-hub")
            for c in w["spec"]["template"]["spec"]["containers"]
        )
    ]


def all_containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def project_version() -> str:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_the_namespace_enforces_restricted_pod_security() -> None:
    (namespace,) = of_kind("Namespace")
    labels = namespace["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("name", sorted(pods()))
def test_every_pod_is_restricted(name: str) -> None:
    """What Pod Security "restricted" demands, plus a read-only root filesystem with
    the writable places as emptyDirs and no service account token."""
    pod = pods()[name]
    spec = pod["spec"]
    context = spec["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] > 0
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(key)
    empty_dirs = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
    for volume in spec.get("volumes", []):
        assert "hostPath" not in volume, volume
    for container in all_containers(pod):
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False, container["name"]
        assert security["readOnlyRootFilesystem"] is True, container["name"]
        assert security["capabilities"] == {"drop": ["ALL"]}, container["name"]
        assert not security.get("privileged")
        assert security.get("runAsUser", context["runAsUser"]) != 0
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
        assert mounts.get("/tmp") in empty_dirs, f"{name}: /tmp is no emptyDir"


_UNITS = {"m": 0.001, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "": 1}


def quantity(text: str | int) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(m|Ki|Mi|Gi|)", str(text))
    assert match, f"unreadable quantity {text!r}"
    return float(match[1]) * _UNITS[match[2]]


@pytest.mark.parametrize("name", sorted(pods()))
def test_every_container_has_requests_within_limits(name: str) -> None:
    for container in all_containers(pods()[name]):
        resources = container["resources"]
        for kind in ("cpu", "memory"):
            requested = quantity(resources["requests"][kind])
            limit = quantity(resources["limits"][kind])
            assert 0 < requested <= limit, (name, container["name"], kind)


def test_images_are_pinned_and_the_hub_image_is_this_version() -> None:
    version = project_version()
    images = [c["image"] for pod in pods().values() for c in all_containers(pod)]
    images += [service["image"] for service in compose()["services"].values()]
    for image in images:
        name, _, tag = image.rpartition(":")
        assert name, f"{image} has no tag"
        assert tag != "latest", image
        assert re.fullmatch(r"\d+\.\d+(\.\d+)?(-[a-z0-9.]+)?", tag), f"{image}: not a version"
        if name == "handover-hub":
            assert tag == version, f"{image}: the project is {version}"
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    (base,) = re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base), base
    (user,) = re.findall(r"^USER (\S+)", dockerfile, re.MULTILINE)
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", user), f"USER {user}: numeric and not root"
    assert f"handover-hub:{version}" in (DEPLOY / "README.md").read_text()


# A small evaluator of the NetworkPolicies (matchLabels only; the manifests use no
# expressions, asserted below): can a pod with these labels, in a namespace with
# those, open this TCP port on that pod?
NAMESPACE = "handover-hub"


def _matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    if selector is None:
        return True
    assert "matchExpressions" not in selector
    return selector.get("matchLabels", {}).items() <= labels.items()


def _peer(peer: dict[str, Any], pod: dict[str, str], namespace: dict[str, str]) -> bool:
    assert "ipBlock" not in peer
    if "namespaceSelector" not in peer:  # a podSelector alone: this namespace only
        return namespace.get("kubernetes.io/metadata.name") == NAMESPACE and _matches(
            peer.get("podSelector"), pod
        )
    return _matches(peer["namespaceSelector"], namespace) and _matches(peer.get("podSelector"), pod)


def _allowed(
    direction: str, subject: dict[str, str], other: tuple[dict[str, str], dict[str, str]], port: int
) -> bool:
    """Whether the policies selecting ``subject`` (a pod here) let ``direction``
    traffic to/from ``other`` (pod labels, namespace labels) on ``port`` pass."""
    kind = "Ingress" if direction == "ingress" else "Egress"
    peers_key = "from" if direction == "ingress" else "to"
    selecting = [
        p["spec"]
        for p in of_kind("NetworkPolicy")
        if kind in p["spec"]["policyTypes"] and _matches(p["spec"]["podSelector"], subject)
    ]
    if not selecting:
        return True
    for spec in selecting:
        for rule in spec.get(direction, []):
            peers = rule.get(peers_key)
            ports = rule.get("ports")
            if (peers is None or any(_peer(peer, *other) for peer in peers)) and (
                ports is None
                or any(p["port"] == port and p.get("protocol", "TCP") == "TCP" for p in ports)
            ):
                return True
    return False


def can_connect(source: str, target: str, port: int) -> bool:
    """``source``/``target``: a workload's name, or ``pod@namespace`` for a pod outside."""
    here = {"kubernetes.io/metadata.name": NAMESPACE}

    def where(name: str) -> tuple[dict[str, str], dict[str, str]]:
        if "@" in name:
            pod, namespace = name.split("@")
            labels = {"kubernetes.io/metadata.name": namespace}
            if namespace == "agency":
                labels["handover-hub/kafka-client"] = "true"
            return {"k8s-app": pod}, labels
        return pods()[name]["metadata"]["labels"], here

    src, dst = where(source), where(target)
    outgoing = "@" in source or _allowed("egress", src[0], dst, port)
    incoming = "@" in target or _allowed("ingress", dst[0], src, port)
    return outgoing and incoming


def test_network_policies_deny_by_default_and_allow_only_the_hubs_paths() -> None:
    default = [p for p in of_kind("NetworkPolicy") if p["spec"]["podSelector"] == {}]
    assert any(
        set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
        for p in default
    ), "no default-deny policy"
    hub = ["hub-api", "hub-relay", "hub-inbox", "hub-worker"]
    allowed = [
        *((name, "postgres", 5432) for name in hub),
        *((name, "kafka", 9092) for name in hub),
        ("kafka", "kafka", 9093),
        ("browser@anywhere", "hub-api", 8000),
        ("prometheus@monitoring", "hub-api", 8000),
        *(
            ("prometheus@monitoring", name, 9100)
            for name in ("hub-relay", "hub-inbox", "hub-worker")
        ),
        ("producer@agency", "kafka", 9092),
        *((name, "kube-dns@kube-system", 53) for name in [*hub, "kafka", "postgres"]),
    ]
    denied = [
        ("browser@anywhere", "postgres", 5432),
        ("browser@anywhere", "kafka", 9092),
        ("browser@anywhere", "hub-relay", 9100),
        ("producer@agency", "postgres", 5432),
        ("producer@agency", "kafka", 9093),
        ("postgres", "kafka", 9092),
        ("kafka", "postgres", 5432),
        ("hub-api", "hub-relay", 9100),
        ("hub-relay", "browser@anywhere", 443),  # no way out to the internet
        ("postgres", "browser@anywhere", 443),
    ]
    for connection in allowed:
        assert can_connect(*connection), f"blocked: {connection}"
    for connection in denied:
        assert not can_connect(*connection), f"open: {connection}"


def test_replicated_workloads_have_a_disruption_budget_that_allows_a_drain() -> None:
    budgets = of_kind("PodDisruptionBudget")
    for workload in workloads():
        replicas = workload["spec"].get("replicas", 1)
        labels = workload["spec"]["template"]["metadata"]["labels"]
        covering = [b for b in budgets if _matches(b["spec"]["selector"], labels)]
        if replicas < 2:
            assert not covering, f"{workload['metadata']['name']}: a budget would block drains"
            continue
        assert len(covering) == 1, workload["metadata"]["name"]
        spec = covering[0]["spec"]
        assert 1 <= spec["minAvailable"] < replicas


def test_secrets_come_from_secrets_and_have_no_defaults() -> None:
    # No Secret with values is shipped: the operator creates them (deploy/README.md).
    assert not of_kind("Secret")
    readme = (DEPLOY / "README.md").read_text()
    for name, keys in SECRETS.items():
        assert name in readme
        for key in keys:
            assert key in readme, f"deploy/README.md does not say how to create {name}/{key}"
    sensitive = re.compile(r"PASSWORD|MASTER_KEY$|DATABASE_URL|SECRET")
    for pod in pods().values():
        for container in all_containers(pod):
            for item in container.get("env", []):
                if sensitive.search(item["name"]):
                    assert "value" not in item, f"{item['name']} has a literal value"
                    assert item["valueFrom"]["secretKeyRef"]["name"] in SECRETS
    for doc in of_kind("ConfigMap"):
        for key in doc["data"]:
            assert not sensitive.search(key) or key == "HUB_MASTER_KEY_FILE", key
    # Compose: the password is a required variable, the master key a secret file.
    text = (DEPLOY / "compose.yaml").read_text()
    assert "${HUB_DB_PASSWORD:-" not in text
    for service in ("postgres",):
        assert compose()["services"][service]["environment"]["POSTGRES_PASSWORD"].startswith(
            "${HUB_DB_PASSWORD:?"
        )
    for name, service in hub_services().items():
        env = service["environment"]
        assert "${HUB_DB_PASSWORD:?" in env["HUB_DATABASE_URL"], name
        assert "HUB_MASTER_KEY" not in env, name
        assert env["HUB_MASTER_KEY_FILE"] == "/run/secrets/hub_master_key"


def test_every_hub_pod_mounts_the_policy_and_capacity_files() -> None:
    from domain.policy import PolicyBook

    config = of_kind("ConfigMap")
    settings = next(d for d in config if d["metadata"]["name"] == "hub-config")["data"]
    policy = next(d for d in config if d["metadata"]["name"] == "hub-policy")["data"]
    files = {
        "HUB_DEADLINE_POLICY_FILE": settings["HUB_DEADLINE_POLICY_FILE"],
        "HUB_CAPACITY_FILE": settings["HUB_CAPACITY_FILE"],
    }
    folders = {Path(path).parent for path in files.values()}
    assert len(folders) == 1
    (folder,) = folders
    assert {Path(path).name for path in files.values()} <= set(policy)
    for workload in hub_workloads():
        spec = workload["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        (container,) = spec["containers"]
        mounts = {Path(m["mountPath"]): m["name"] for m in container["volumeMounts"]}
        assert volumes[mounts[folder]]["configMap"]["name"] == "hub-policy", workload["metadata"]
    # The files load as the hub loads them, and Compose mounts the same ones.
    PolicyBook.from_mapping(json.loads(policy["deadline-policy.json"]))
    for name, target in (
        ("deadline-policy.json", files["HUB_DEADLINE_POLICY_FILE"]),
        ("capacity.json", files["HUB_CAPACITY_FILE"]),
    ):
        assert json.loads((DEPLOY / "policy" / name).read_text()) == json.loads(policy[name])
        for service in hub_services().values():
            assert target in {c["target"] for c in service["configs"]}
            assert (
                service["environment"][
                    "HUB_DEADLINE_POLICY_FILE"
                    if name.startswith("deadline")
                    else "HUB_CAPACITY_FILE"
                ]
                == target
            )
    loaded = Settings(capacity_file=DEPLOY / "policy" / "capacity.json")
    # The demo programmes' places: Trier 150 over four sites, G-A-L 70.
    assert sum(loaded.capacity["Inklusionsinitiative Trier"].values()) == 150
    assert sum(loaded.capacity["G-A-L"].values()) == 70


def test_probes_readiness_on_readyz_liveness_everywhere() -> None:
    for workload in hub_workloads():
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        assert "livenessProbe" in container, workload["metadata"]["name"]
        if container["args"][0] == "serve":
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert container["readinessProbe"]["timeoutSeconds"] > 2  # HUB_READY_TIMEOUT_S
    api = compose()["services"]["api"]
    assert "/readyz" in " ".join(api["healthcheck"]["test"])


def test_metrics_ports_are_declared_and_open_to_monitoring_only() -> None:
    for workload in hub_workloads():
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        if container["args"][0] == "serve":
            continue  # the API serves /metrics on its own port
        env = {item["name"]: item.get("value") for item in container["env"]}
        port = int(env["HUB_METRICS_PORT"])
        assert env["HUB_METRICS_HOST"] == "0.0.0.0"
        assert {"name": "metrics", "containerPort": port} in container["ports"]
        name = workload["metadata"]["name"]
        assert can_connect("prometheus@monitoring", name, port)
        assert not can_connect("browser@anywhere", name, port)
    for name in ("relay", "inbox", "worker"):
        assert compose()["services"][name]["environment"]["HUB_METRICS_PORT"] == "9100"
        assert "ports" not in compose()["services"][name]  # not published on the host


def test_kafka_security_settings_are_wired_and_the_password_is_a_secret() -> None:
    config = next(d for d in of_kind("ConfigMap") if d["metadata"]["name"] == "hub-config")
    Settings(**{k[len("HUB_") :].lower(): v for k, v in config["data"].items()})
    for workload in hub_workloads():
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        password = next(i for i in container["env"] if i["name"] == "HUB_KAFKA_SASL_PASSWORD")
        assert password["valueFrom"]["secretKeyRef"] == {
            "name": "hub-kafka",
            "key": "sasl-password",
            "optional": True,
        }
    for name in ("HUB_KAFKA_SECURITY_PROTOCOL", "HUB_KAFKA_SASL_PASSWORD", "HUB_KAFKA_SSL_CAFILE"):
        assert name in (ROOT / "README.md").read_text(), f"README does not document {name}"


def test_compose_hardens_every_hub_process_and_limits_every_service() -> None:
    for name, service in hub_services().items():
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        uid, gid = service["user"].split(":")
        assert int(uid) > 0
        assert int(gid) > 0
        assert any(mount.startswith("/tmp") for mount in service["tmpfs"])
    for name, service in compose()["services"].items():
        resources = service["deploy"]["resources"]
        assert resources["limits"]["memory"], name
        assert resources["limits"]["cpus"], name
        assert resources["reservations"]["memory"], name
        assert "no-new-privileges:true" in service["security_opt"], name
