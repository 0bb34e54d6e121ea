"""`python -m extproc.probe unix:/run/lunaroute/worker-0.sock`: exit 0 when that worker's gRPC health
says SERVING, 1 otherwise — the containers' liveness and readiness probe.

Kubelet's own gRPC probe cannot do it: it dials the pod's IP in plain text, and the workers listen on a
Unix socket (with Envoy in the pod) or on mutual TLS (mesh mode), so that no other pod can speak for the
gateway's gate (README: Security). Imports gRPC only, so a probe starts quickly.
"""

from __future__ import annotations

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def serving(address: str, timeout_s: float = 2.0) -> bool:
    """Whether the worker at `address` (a gRPC target, e.g. `unix:/path`) answers SERVING in time."""
    with grpc.insecure_channel(address) as channel:
        try:
            # typeshed's HealthStub omits the methods the generated code sets on the instance
            check = health_pb2_grpc.HealthStub(channel).Check  # pyright: ignore[reportAttributeAccessIssue]
            reply = check(health_pb2.HealthCheckRequest(), timeout=timeout_s)
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m extproc.probe <gRPC target, e.g. unix:/run/lunaroute/worker-0.sock>",
              file=sys.stderr)
        return 2
    return 0 if serving(argv[0]) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
