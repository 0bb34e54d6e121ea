"""envoy/reference/ holds what Envoy runs for each shipped config; it must equal the renderer's output
(regenerate with `python scripts/generate_envoy_references.py`), and Envoy must accept every one of them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from extproc.supervisor import find_envoy, validate_bootstrap

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "envoy" / "reference"


def _generator():
    script = ROOT / "scripts" / "generate_envoy_references.py"
    spec = importlib.util.spec_from_file_location("generate_envoy_references", script)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("references")
    _generator().generate(out)
    return out


@pytest.mark.parametrize("name", ["local", "compose", "helm-gateway", "helm-sidecar"])
def test_the_checked_in_reference_bootstrap_equals_the_renderers(regenerated: Path, name: str) -> None:
    checked_in = (REFERENCE / f"{name}.yaml").read_text(encoding="utf-8")
    assert checked_in == (regenerated / f"{name}.yaml").read_text(encoding="utf-8"), (
        f"envoy/reference/{name}.yaml is stale: run `python scripts/generate_envoy_references.py`")


@pytest.mark.parametrize("name", ["local", "compose", "helm-gateway", "helm-sidecar"])
def test_envoy_accepts_every_reference_bootstrap(regenerated: Path, name: str) -> None:
    ok, last = validate_bootstrap(find_envoy(), regenerated / f"{name}.yaml")
    assert ok, last
