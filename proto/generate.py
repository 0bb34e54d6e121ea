"""Regenerate the Python stubs for the protos under ``proto/extproc/_proto/`` (ext_proc, access log).

The proto lives under ``proto/`` at the same relative path as the package it
generates, so with ``-I proto`` the stubs import each other as
``extproc._proto.ext_proc_pb2``. Google's well-known types come from the
include directory bundled with grpcio-tools (and, at runtime, from protobuf).

Usage: ``python proto/generate.py [OUT_ROOT]`` (default: the repository root).
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

PROTO_ROOT = Path(__file__).resolve().parent
REPO_ROOT = PROTO_ROOT.parent
PROTO_FILES = ("extproc/_proto/ext_proc.proto", "extproc/_proto/access_log.proto")
OUTPUTS = tuple(f"{proto.removesuffix('.proto')}{suffix}" for proto in PROTO_FILES
                for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"))


def _well_known_include() -> str:
    return str(resources.files("grpc_tools") / "_proto")


def generate(out_root: Path = REPO_ROOT) -> list[Path]:
    """Run protoc into ``out_root`` and return the paths of the generated files."""
    out_root = Path(out_root).resolve()
    (out_root / PROTO_FILES[0]).parent.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"--proto_path={PROTO_ROOT}",
        f"--proto_path={_well_known_include()}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *PROTO_FILES,
    ]
    rc = protoc.main(args)
    if rc != 0:
        raise RuntimeError(f"protoc failed with exit code {rc}: {' '.join(args)}")
    paths = [out_root / rel for rel in OUTPUTS]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise RuntimeError(f"protoc did not produce: {', '.join(missing)}")
    return paths


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) > 1:
        print("usage: generate.py [OUT_ROOT]", file=sys.stderr)
        return 2
    out_root = Path(argv[0]) if argv else REPO_ROOT
    for path in generate(out_root):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
