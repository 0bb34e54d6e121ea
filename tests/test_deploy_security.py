"""The chart's defences (issue 23), rendered with helm-python-sdk like tests/test_deploy.py:

- who can reach the ext_proc workers in each mode (Unix sockets beside Envoy; mutual TLS and a
  NetworkPolicy in mesh mode), with the chart's generated certificates tried on a real worker;
- Envoy's heap cap below its container's memory limit, so the overload manager acts before the OOM killer;
- the Istio buffer patch on the virtual hosts' ports only.
"""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any

import grpc
import helm_python as helm
import pytest
import yaml
from cryptography import x509

from extproc import envoy_config
from tests.test_deploy import (
    CHART,
    NS,
    RELEASE,
    VARIANTS,
    by_kind,
    chart_config,
    container,
    manifests,
    one,
    pod_spec,
    validate_with_envoy,
)
from tests.test_extproc_auth import Worker, first_reply, metrics_answered, request_headers, worker_config

MIB = 1024 * 1024


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    with helm.Chart.load(CHART) as chart:
        out = chart.render(copy.deepcopy(values), name=RELEASE, namespace=NS)
    return [d for path, text in out.items() if not path.endswith("NOTES.txt") for d in yaml.safe_load_all(text) if d]


def render_error(values: dict[str, Any]) -> str:
    with pytest.raises(helm.HelmError) as err:
        render(values)
    return str(err.value)


def _secret(docs: list[dict[str, Any]], name: str, namespace: str = NS) -> dict[str, bytes]:
    (found,) = [d for d in by_kind(docs, "Secret") if d["metadata"]["name"] == name
                and d["metadata"]["namespace"] == namespace]
    return {k: base64.b64decode(v) for k, v in found["data"].items()}


# -- where the workers listen, per mode ------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["gateway", "gateway-keys", "sidecar"])
def test_beside_envoy_the_workers_listen_on_unix_sockets_only(variant: str) -> None:
    cfg = chart_config(manifests(variant))
    assert cfg.extproc.socket_dir == "/run/lunaroute"
    assert cfg.extproc.tls is None and cfg.extproc.bind_host is None  # `listen()` opens no TCP port
    assert not [d for d in manifests(variant) if d["kind"] == "Service" and "grpc" in str(d["spec"]["ports"])]


@pytest.mark.parametrize("variant", ["mesh-istio", "mesh-istio-tuned", "mesh-envoy-gateway"])
def test_in_a_mesh_the_workers_listen_on_tcp_with_mutual_tls(variant: str) -> None:
    docs = manifests(variant)
    cfg = chart_config(docs)
    assert cfg.extproc.listen_host == "0.0.0.0" and cfg.extproc.tls is not None
    spec = pod_spec(one(docs, "Deployment"))
    extproc = container(spec, "lunaroute-extproc")
    mounts = {m["name"]: m["mountPath"] for m in extproc["volumeMounts"]}
    tls_dir = Path(cfg.extproc.tls.cert_file).parent
    assert mounts["lunaroute-extproc-tls"] == str(tls_dir)
    assert {Path(cfg.extproc.tls.key_file).parent, Path(cfg.extproc.tls.client_ca_file).parent} == {tls_dir}
    volume = next(v for v in spec["volumes"] if v["name"] == "lunaroute-extproc-tls")
    assert set(_secret(docs, volume["secret"]["secretName"])) == {"tls.crt", "tls.key", "ca.crt"}
    # the probe comes in over the container's own socket: kubelet's gRPC probe cannot do mutual TLS
    assert extproc["readinessProbe"]["exec"]["command"][-1] == f"unix:{cfg.extproc.socket_dir}/worker-0.sock"


def test_mutual_tls_can_be_switched_off_and_then_nothing_is_trusted_over_tcp() -> None:
    docs = render({**VARIANTS["mesh-istio"], "extProc": {"mtls": {"enabled": False}}})
    assert chart_config(docs).extproc.tls is None
    assert not by_kind(docs, "Secret") and not by_kind(docs, "DestinationRule")
    assert by_kind(docs, "NetworkPolicy")  # the port stays fenced


async def test_the_charts_certificates_make_a_working_mutual_tls_pair(tmp_path: Path) -> None:
    """The generated Secrets, on a real worker: the proxies' client certificate gets a sealed stream
    to the host name the mesh dials; a certificate the chart did not make gets no stream at all."""
    docs = manifests("mesh-istio")
    cfg = chart_config(docs)
    rule = one(docs, "DestinationRule")
    server = _secret(docs, f"{RELEASE}-lunaroute-extproc-tls")
    client = _secret(docs, rule["spec"]["trafficPolicy"]["tls"]["credentialName"])
    for name, data in server.items():
        (tmp_path / name).write_bytes(data)
    tls = {"cert_file": str(tmp_path / "tls.crt"), "key_file": str(tmp_path / "tls.key"),
           "client_ca_file": str(tmp_path / "ca.crt")}
    host = cfg.extproc.host
    assert rule["spec"]["host"] == host and rule["spec"]["trafficPolicy"]["tls"]["subjectAltNames"] == [host]
    cert = x509.load_pem_x509_certificate(server["tls.crt"])
    assert host in cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName)

    local = worker_config(tls=tls, socket_dir=str(tmp_path))
    options = (("grpc.ssl_target_name_override", host),)
    async with Worker(local):
        target = f"127.0.0.1:{local.extproc.port}"
        creds = grpc.ssl_channel_credentials(client["ca.crt"], client["tls.key"], client["tls.crt"])
        async with grpc.aio.secure_channel(target, creds, options=options) as channel:
            assert metrics_answered(await first_reply(channel, request_headers("/metrics")))
        # a second install of the same values: a CA of its own
        other = _secret(render(VARIANTS["mesh-istio"]), rule["spec"]["trafficPolicy"]["tls"]["credentialName"])
        creds = grpc.ssl_channel_credentials(client["ca.crt"], other["tls.key"], other["tls.crt"])
        async with grpc.aio.secure_channel(target, creds, options=options) as channel:
            with pytest.raises(grpc.aio.AioRpcError):
                await first_reply(channel, request_headers("/metrics"))


def test_each_mesh_gets_its_client_certificate_where_its_proxies_run() -> None:
    istio = manifests("mesh-istio-tuned")  # EnvoyFilter in istio-system, sidecar context
    rule = one(istio, "DestinationRule")
    assert rule["metadata"]["namespace"] == "istio-system" and rule["spec"]["exportTo"] == ["."]
    selected = one(istio, "EnvoyFilter")["spec"]["workloadSelector"]["labels"]  # the proxies with the filter
    assert rule["spec"]["workloadSelector"]["matchLabels"] == selected  # sidecars read credentialName only so
    assert _secret(istio, rule["spec"]["trafficPolicy"]["tls"]["credentialName"], "istio-system")
    assert "workloadSelector" not in one(manifests("mesh-istio"), "DestinationRule")["spec"]  # a gateway

    eg = manifests("mesh-envoy-gateway")
    policy = one(eg, "BackendTLSPolicy")
    svc = one(eg, "Service")
    assert policy["spec"]["targetRefs"][0]["name"] == svc["metadata"]["name"]
    assert policy["spec"]["validation"]["hostname"] == chart_config(eg).extproc.host
    (ca_map,) = [d for d in by_kind(eg, "ConfigMap") if d["metadata"]["name"] ==
                 policy["spec"]["validation"]["caCertificateRefs"][0]["name"]]
    server = _secret(eg, f"{RELEASE}-lunaroute-extproc-tls")
    assert ca_map["data"]["ca.crt"].encode() == server["ca.crt"]
    assert _secret(eg, f"{RELEASE}-lunaroute-extproc-client", "envoy-gateway-system")
    assert "tls.key" not in str(ca_map)


def test_a_users_own_certificates_replace_the_generated_ones() -> None:
    values = {**VARIANTS["mesh-istio"], "extProc": {"mtls": {"existingSecret": "my-tls", "clientSecret": "my-client"}}}
    docs = render(values)
    assert not by_kind(docs, "Secret")
    volume = next(v for v in pod_spec(one(docs, "Deployment"))["volumes"] if v["name"] == "lunaroute-extproc-tls")
    assert volume["secret"]["secretName"] == "my-tls"
    assert one(docs, "DestinationRule")["spec"]["trafficPolicy"]["tls"]["credentialName"] == "my-client"
    eg = {**VARIANTS["mesh-envoy-gateway"], "extProc": {"mtls": {"existingSecret": "my-tls"}}}
    assert "extProc.mtls.caConfigMap" in render_error(eg)


# -- the NetworkPolicy -----------------------------------------------------------------------------------


def test_only_the_mesh_proxies_reach_the_grpc_port() -> None:
    docs = manifests("mesh-istio-tuned")
    policy = one(docs, "NetworkPolicy")["spec"]
    deploy = one(docs, "Deployment")
    assert policy["podSelector"]["matchLabels"].items() <= deploy["spec"]["template"]["metadata"]["labels"].items()
    assert policy["policyTypes"] == ["Ingress"]
    (rule,) = policy["ingress"]
    assert rule["ports"] == [{"port": "lr-grpc", "protocol": "TCP"}]
    selected = one(docs, "EnvoyFilter")["spec"]["workloadSelector"]["labels"]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "istio-system"}},
                             "podSelector": {"matchLabels": selected}}]
    (eg,) = one(manifests("mesh-envoy-gateway"), "NetworkPolicy")["spec"]["ingress"]
    assert eg["from"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "envoy-gateway-system"}
    for variant in ("gateway", "sidecar"):  # no gRPC port on the pod network at all
        assert not by_kind(manifests(variant), "NetworkPolicy")
    # no mesh integration rendered: no peer known, and an empty `from` would shut everyone out
    assert not by_kind(render({"mode": "mesh"}), "NetworkPolicy")
    extra = [{"podSelector": {"matchLabels": {"app": "my-envoy"}}}]
    (own,) = one(render({"mode": "mesh", "networkPolicy": {"extraFrom": extra}}), "NetworkPolicy")["spec"]["ingress"]
    assert own["from"] == extra


# -- Envoy's heap cap under its memory limit -------------------------------------------------------------


@pytest.mark.parametrize(("limit", "heap"), [("512Mi", 384 * MIB), ("2Gi", 1536 * MIB)])
def test_envoys_heap_cap_sits_below_its_memory_limit(limit: str, heap: int, tmp_path: Path) -> None:
    """The overload manager watches the heap cap: it must fire (reset the largest streams from 85 %,
    refuse new requests at 95 %) before the kernel OOM-kills Envoy at the container's limit."""
    values = {**VARIANTS["gateway"], "envoy": {"resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                                                              "limits": {"memory": limit}}}}
    docs = render(values)
    cfg = chart_config(docs)
    assert cfg.limits.envoy_max_heap_bytes == heap
    boot = envoy_config.render(cfg, ca_file="/etc/ssl/certs/ca-certificates.crt", gate_path="/envoy/gate.yaml")
    (monitor,) = [m for m in boot["overload_manager"]["resource_monitors"] if m["name"].endswith("fixed_heap")]
    assert monitor["typed_config"]["max_heap_size_bytes"] == heap
    ok, last = validate_with_envoy(boot, tmp_path)
    assert ok, last


def test_the_default_envoy_limit_gets_a_heap_cap_below_it() -> None:
    cfg = chart_config(manifests("gateway"))
    assert cfg.limits.envoy_max_heap_bytes < 512 * MIB  # values.yaml: limits.memory 512Mi


def test_a_heap_cap_at_or_over_the_limit_is_refused_with_the_fix() -> None:
    values = {**VARIANTS["gateway"], "config": {**VARIANTS["gateway"]["config"],
                                                "limits": {"envoy_max_heap_bytes": 1024 * MIB}}}
    assert "config.limits.envoy_max_heap_bytes" in render_error(values)
    assert "envoy.resources.limits.memory" in render_error({**values, "envoy": {"resources": {
        "limits": {"memory": "80Mi"}}}, "config": VARIANTS["gateway"]["config"]})
    assert "not a memory quantity" in render_error({**VARIANTS["gateway"], "envoy": {"resources": {
        "limits": {"memory": "lots"}}}})
    lower = {**values, "config": {**values["config"], "limits": {"envoy_max_heap_bytes": 256 * MIB}}}
    assert chart_config(render(lower)).limits.envoy_max_heap_bytes == 256 * MIB


# -- the Istio buffer patch ------------------------------------------------------------------------------


def test_istio_buffer_patch_names_its_ports() -> None:
    bare = {**VARIANTS["mesh-istio"], "mesh": {"istio": {"enabled": True, "virtualHosts": ["llm.example.com"]}}}
    assert "mesh.istio.listenerPorts" in render_error(bare)
    bare["mesh"]["istio"]["listenerPorts"] = [8443]
    listeners = [p for p in one(render(bare), "EnvoyFilter")["spec"]["configPatches"] if p["applyTo"] == "LISTENER"]
    assert [p["match"] for p in listeners] == [{"context": "GATEWAY", "listener": {"portNumber": 8443}}]


@pytest.mark.parametrize("variant", ["gateway", "gateway-keys"])
def test_the_workers_write_the_spent_file_where_their_envoy_watches_it(variant: str) -> None:
    """Spent budgets and token windows are refused by Envoy itself from a file the workers rewrite: in
    the pod both containers mount the volume render-envoy wrote it to, and the workers are told where.
    (Sidecar mode includes the same container templates into the user's pods.)"""
    spec = pod_spec(one(manifests(variant), "Deployment"))
    workers, envoy = container(spec, "lunaroute-extproc"), container(spec, "lunaroute-envoy")
    env = {e["name"]: e.get("value") for e in workers.get("env", [])}
    spent = Path(env["LUNAROUTE_SPENT_FILE"])
    mounted = {m["mountPath"]: m["name"] for m in workers["volumeMounts"]}
    envoy_mounted = {m["mountPath"]: m["name"] for m in envoy["volumeMounts"]}
    assert mounted[str(spent.parent)] == envoy_mounted[str(spent.parent)] == "lunaroute-envoy-config"
    assert spent.name == envoy_config.spent.SPENT_FILE


@pytest.mark.parametrize("variant", ["gateway", "gateway-keys"])
def test_the_pool_state_is_shared_by_the_renderer_envoy_and_the_workers(variant: str) -> None:
    """Credential pools: render-envoy writes the pool file, Envoy watches it and logs every attempt
    beside it, the workers learn cooldowns from that log and rewrite the file — one volume for the three."""
    docs = manifests(variant)
    state = chart_config(docs).pools.state_dir
    spec = pod_spec(one(docs, "Deployment"))
    for name in ("lunaroute-render", "lunaroute-envoy", "lunaroute-extproc"):
        mounts = {m["mountPath"]: m for m in container(spec, name)["volumeMounts"]}
        assert mounts[state]["name"] == "lunaroute-pools" and not mounts[state].get("readOnly"), name
