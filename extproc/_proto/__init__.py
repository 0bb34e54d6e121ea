"""Generated gRPC/protobuf stubs for Envoy's ext_proc v3 API (regenerate with proto/generate.py)."""
