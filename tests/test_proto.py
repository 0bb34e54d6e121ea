"""Our ext_proc stubs: regenerable from the .proto, and wire-compatible with Envoy's API.

Envoy's side is represented by ``envoy-data-plane`` (betterproto2 dataclasses generated from
the real Envoy protos), so every check here compares against Envoy's own field numbers.
"""

from __future__ import annotations

import datetime
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from envoy_data_plane.envoy.config.core import v3 as edp_core
from envoy_data_plane.envoy.extensions.filters.http.ext_proc import v3 as edp_mode
from envoy_data_plane.envoy.service.ext_proc import v3 as edp
from envoy_data_plane.envoy.type import v3 as edp_type
from envoy_data_plane.google import protobuf as edp_pb
from google.protobuf import descriptor as _descriptor
from google.protobuf import struct_pb2

from extproc._proto import ext_proc_pb2 as pb
from extproc._proto import ext_proc_pb2_grpc as pb_grpc

REPO_ROOT = Path(__file__).resolve().parents[1]
ATTR_NS = "envoy.filters.http.ext_proc"


def _load_generate() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_proto_generate", REPO_ROOT / "proto" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------
# Generated code is up to date
# ---------------------------------------------------------------------------


def test_checked_in_stubs_match_regeneration(tmp_path: Path) -> None:
    generated = _load_generate().generate(tmp_path)
    assert {p.name for p in generated} == {f"{stem}{suffix}" for stem in ("ext_proc", "access_log")
                                           for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")}
    for path in generated:
        rel = path.relative_to(tmp_path)
        checked_in = REPO_ROOT / rel
        assert checked_in.is_file(), f"{rel} is not checked in; run python proto/generate.py"
        assert checked_in.read_bytes() == path.read_bytes(), (
            f"{rel} differs from the output of proto/generate.py; regenerate instead of editing by hand"
        )


def test_service_method_path() -> None:
    service = pb.DESCRIPTOR.services_by_name["ExternalProcessor"]
    assert service.full_name == "envoy.service.ext_proc.v3.ExternalProcessor"
    method = service.methods_by_name["Process"]
    assert method.client_streaming and method.server_streaming
    assert method.input_type is pb.ProcessingRequest.DESCRIPTOR
    assert method.output_type is pb.ProcessingResponse.DESCRIPTOR
    assert f"/{service.full_name}/{method.name}" == "/envoy.service.ext_proc.v3.ExternalProcessor/Process"
    assert hasattr(pb_grpc, "ExternalProcessorServicer")
    assert hasattr(pb_grpc, "add_ExternalProcessorServicer_to_server")


# ---------------------------------------------------------------------------
# Schema: every field and enum value matches Envoy's numbering
# ---------------------------------------------------------------------------

MESSAGE_COUNTERPARTS = {
    "ProtocolConfiguration": edp.ProtocolConfiguration,
    "ProcessingRequest": edp.ProcessingRequest,
    "HttpHeaders": edp.HttpHeaders,
    "HttpBody": edp.HttpBody,
    "HttpTrailers": edp.HttpTrailers,
    "ProcessingResponse": edp.ProcessingResponse,
    "HeadersResponse": edp.HeadersResponse,
    "BodyResponse": edp.BodyResponse,
    "TrailersResponse": edp.TrailersResponse,
    "StreamedImmediateResponse": edp.StreamedImmediateResponse,
    "CommonResponse": edp.CommonResponse,
    "ImmediateResponse": edp.ImmediateResponse,
    "GrpcStatus": edp.GrpcStatus,
    "HeaderMutation": edp.HeaderMutation,
    "StreamedBodyResponse": edp.StreamedBodyResponse,
    "BodyMutation": edp.BodyMutation,
    "ProcessingMode": edp_mode.ProcessingMode,
    "Metadata": edp_core.Metadata,
    "HeaderValue": edp_core.HeaderValue,
    "HeaderValueOption": edp_core.HeaderValueOption,
    "HeaderMap": edp_core.HeaderMap,
    "HttpStatus": edp_type.HttpStatus,
}

ENUM_COUNTERPARTS = {
    "StatusCode": edp_type.StatusCode,
    "CommonResponse.ResponseStatus": edp.CommonResponseResponseStatus,
    "ProcessingMode.HeaderSendMode": edp_mode.ProcessingModeHeaderSendMode,
    "ProcessingMode.BodySendMode": edp_mode.ProcessingModeBodySendMode,
    "HeaderValueOption.HeaderAppendAction": edp_core.HeaderValueOptionHeaderAppendAction,
}

_FD = _descriptor.FieldDescriptor
_SCALAR_KINDS = {
    _FD.TYPE_BOOL: "bool",
    _FD.TYPE_BYTES: "bytes",
    _FD.TYPE_STRING: "string",
    _FD.TYPE_UINT32: "uint32",
    _FD.TYPE_ENUM: "enum",
    _FD.TYPE_MESSAGE: "message",
}


def _our_messages() -> dict[str, _descriptor.Descriptor]:
    return dict(pb.DESCRIPTOR.message_types_by_name)


def _our_enums() -> dict[str, _descriptor.EnumDescriptor]:
    enums = dict(pb.DESCRIPTOR.enum_types_by_name)
    for msg in pb.DESCRIPTOR.message_types_by_name.values():
        for enum in msg.enum_types:
            enums[f"{msg.name}.{enum.name}"] = enum
    return enums


def _kind(field: _descriptor.FieldDescriptor) -> str:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        return "map"
    return _SCALAR_KINDS[field.type]


def test_every_message_has_an_envoy_counterpart() -> None:
    assert set(_our_messages()) == set(MESSAGE_COUNTERPARTS)
    assert set(_our_enums()) == set(ENUM_COUNTERPARTS)


@pytest.mark.parametrize("name", sorted(MESSAGE_COUNTERPARTS))
def test_message_fields_match_envoy(name: str) -> None:
    ours = _our_messages()[name]
    theirs = MESSAGE_COUNTERPARTS[name]._betterproto.meta_by_field_name
    assert set(ours.fields_by_name) == set(theirs), name
    for field in ours.fields:
        meta = theirs[field.name]
        assert field.number == meta.number, f"{name}.{field.name}"
        kind = _kind(field)
        # betterproto2 unwraps well-known wrappers/Duration but still records them as messages.
        assert kind == meta.proto_type, f"{name}.{field.name}: {kind} != {meta.proto_type}"
        if kind != "map":
            assert field.is_repeated == meta.repeated, f"{name}.{field.name}"
        oneof = field.containing_oneof.name if field.containing_oneof is not None else None
        assert oneof == meta.group, f"{name}.{field.name}"


@pytest.mark.parametrize("name", sorted(ENUM_COUNTERPARTS))
def test_enum_values_match_envoy(name: str) -> None:
    ours = {v.name: v.number for v in _our_enums()[name].values}
    theirs = {member.name: int(member.value) for member in ENUM_COUNTERPARTS[name]}
    assert ours == theirs


# ---------------------------------------------------------------------------
# Envoy -> us: ProcessingRequest built with envoy-data-plane, parsed with our stubs
# ---------------------------------------------------------------------------


def _edp_struct(**values: str | float | bool) -> edp_pb.Struct:
    fields: dict[str, edp_pb.Value] = {}
    for key, value in values.items():
        if isinstance(value, bool):
            fields[key] = edp_pb.Value(bool_value=value)
        elif isinstance(value, str):
            fields[key] = edp_pb.Value(string_value=value)
        else:
            fields[key] = edp_pb.Value(number_value=value)
    return edp_pb.Struct(fields=fields)


def test_request_headers_from_envoy() -> None:
    envoy_msg = edp.ProcessingRequest(
        request_headers=edp.HttpHeaders(
            headers=edp_core.HeaderMap(
                headers=[
                    edp_core.HeaderValue(key=":method", raw_value=b"POST"),
                    edp_core.HeaderValue(key=":path", raw_value=b"/v1/chat/completions"),
                    edp_core.HeaderValue(key="x-bin", raw_value=b"\xff\x00ok"),
                    edp_core.HeaderValue(key="x-legacy", value="plain"),
                ]
            ),
            end_of_stream=True,
        ),
        attributes={
            ATTR_NS: _edp_struct(**{"request.id": "abc-123", "request.size": 42.0, "connection.mtls": True})
        },
        metadata_context=edp_core.Metadata(filter_metadata={"lunaroute": _edp_struct(tenant="t1")}),
        observability_mode=True,
        protocol_config=edp.ProtocolConfiguration(
            request_body_mode=edp_mode.ProcessingModeBodySendMode.FULL_DUPLEX_STREAMED,
            response_body_mode=edp_mode.ProcessingModeBodySendMode.BUFFERED_PARTIAL,
            send_body_without_waiting_for_header_response=True,
        ),
    )

    msg = pb.ProcessingRequest.FromString(bytes(envoy_msg))

    assert msg.WhichOneof("request") == "request_headers"
    assert msg.request_headers.end_of_stream is True
    headers = [(h.key, h.value, h.raw_value) for h in msg.request_headers.headers.headers]
    assert headers == [
        (":method", "", b"POST"),
        (":path", "", b"/v1/chat/completions"),
        ("x-bin", "", b"\xff\x00ok"),
        ("x-legacy", "plain", b""),
    ]
    attrs = msg.attributes[ATTR_NS]
    assert isinstance(attrs, struct_pb2.Struct)
    assert attrs["request.id"] == "abc-123"
    assert attrs["request.size"] == 42.0
    assert attrs["connection.mtls"] is True
    assert msg.metadata_context.filter_metadata["lunaroute"]["tenant"] == "t1"
    assert msg.observability_mode is True
    assert msg.protocol_config.request_body_mode == pb.ProcessingMode.FULL_DUPLEX_STREAMED
    assert msg.protocol_config.response_body_mode == pb.ProcessingMode.BUFFERED_PARTIAL
    assert msg.protocol_config.send_body_without_waiting_for_header_response is True
    assert not msg.HasField("request_body")


def test_request_body_from_envoy() -> None:
    body = b'{"model": "gpt-4o", "stream": true}'
    envoy_msg = edp.ProcessingRequest(
        request_body=edp.HttpBody(body=body, end_of_stream=True),
        attributes={ATTR_NS: _edp_struct(**{"request.id": "abc-123"})},
    )

    msg = pb.ProcessingRequest.FromString(bytes(envoy_msg))

    assert msg.WhichOneof("request") == "request_body"
    assert msg.request_body.body == body
    assert msg.request_body.end_of_stream is True
    assert msg.request_body.end_of_stream_without_message is False
    assert msg.attributes[ATTR_NS]["request.id"] == "abc-123"


def test_response_trailers_from_envoy() -> None:
    envoy_msg = edp.ProcessingRequest(
        response_trailers=edp.HttpTrailers(
            trailers=edp_core.HeaderMap(headers=[edp_core.HeaderValue(key="grpc-status", raw_value=b"0")])
        )
    )
    msg = pb.ProcessingRequest.FromString(bytes(envoy_msg))
    assert msg.WhichOneof("request") == "response_trailers"
    assert msg.response_trailers.trailers.headers[0].raw_value == b"0"


# ---------------------------------------------------------------------------
# Us -> Envoy: ProcessingResponse built with our stubs, parsed with envoy-data-plane
# ---------------------------------------------------------------------------


def _set_header(
    key: str, raw_value: bytes, action: int = pb.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
) -> pb.HeaderValueOption:
    return pb.HeaderValueOption(header=pb.HeaderValue(key=key, raw_value=raw_value), append_action=action)


def test_request_body_response_to_envoy() -> None:
    new_body = b'{"model": "claude-sonnet-4", "max_tokens": 1024}'
    ours = pb.ProcessingResponse(
        request_body=pb.BodyResponse(
            response=pb.CommonResponse(
                status=pb.CommonResponse.CONTINUE_AND_REPLACE,
                header_mutation=pb.HeaderMutation(
                    set_headers=[
                        _set_header(":path", b"/v1/messages"),
                        _set_header("content-length", str(len(new_body)).encode()),
                        _set_header("x-lunaroute-route", b"anthropic", pb.HeaderValueOption.ADD_IF_ABSENT),
                        pb.HeaderValueOption(
                            header=pb.HeaderValue(key="x-empty", raw_value=b""),
                            append_action=pb.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD,
                            keep_empty_value=True,
                        ),
                    ],
                    remove_headers=["authorization", "openai-organization"],
                ),
                body_mutation=pb.BodyMutation(body=new_body),
                clear_route_cache=True,
            )
        )
    )
    ours.dynamic_metadata.update({"provider": "anthropic", "attempt": 1})
    ours.override_message_timeout.FromTimedelta(datetime.timedelta(seconds=2, milliseconds=500))

    theirs = edp.ProcessingResponse.parse(ours.SerializeToString())

    assert theirs.request_body is not None
    assert theirs.immediate_response is None
    common = theirs.request_body.response
    assert common is not None
    assert common.status == edp.CommonResponseResponseStatus.CONTINUE_AND_REPLACE
    assert common.clear_route_cache is True
    assert common.body_mutation is not None
    assert common.body_mutation.body == new_body
    assert common.body_mutation.clear_body is None
    mutation = common.header_mutation
    assert mutation is not None
    set_headers = [
        (o.header.key, o.header.raw_value, o.append_action, o.keep_empty_value) for o in mutation.set_headers
    ]
    action = edp_core.HeaderValueOptionHeaderAppendAction
    assert set_headers == [
        (":path", b"/v1/messages", action.OVERWRITE_IF_EXISTS_OR_ADD, False),
        ("content-length", str(len(new_body)).encode(), action.OVERWRITE_IF_EXISTS_OR_ADD, False),
        ("x-lunaroute-route", b"anthropic", action.ADD_IF_ABSENT, False),
        ("x-empty", b"", action.APPEND_IF_EXISTS_OR_ADD, True),
    ]
    assert all(o.append is None for o in mutation.set_headers)
    assert mutation.remove_headers == ["authorization", "openai-organization"]
    assert theirs.dynamic_metadata is not None
    assert theirs.dynamic_metadata.fields["provider"].string_value == "anthropic"
    assert theirs.dynamic_metadata.fields["attempt"].number_value == 1.0
    assert theirs.override_message_timeout == datetime.timedelta(seconds=2, milliseconds=500)


def test_immediate_response_to_envoy() -> None:
    body = b'{"error": {"type": "request_too_large"}}'
    ours = pb.ProcessingResponse(
        immediate_response=pb.ImmediateResponse(
            status=pb.HttpStatus(code=pb.PayloadTooLarge),
            headers=pb.HeaderMutation(
                set_headers=[
                    _set_header("content-type", b"application/json"),
                    _set_header("x-lunaroute-error", b"body_too_large"),
                ]
            ),
            body=body,
            grpc_status=pb.GrpcStatus(status=8),
            details="lunaroute_body_too_large",
        )
    )

    theirs = edp.ProcessingResponse.parse(ours.SerializeToString())

    imm = theirs.immediate_response
    assert imm is not None
    assert theirs.request_body is None
    assert imm.status is not None
    assert imm.status.code == edp_type.StatusCode.PayloadTooLarge
    assert int(imm.status.code) == 413
    assert imm.headers is not None
    assert [(o.header.key, o.header.raw_value) for o in imm.headers.set_headers] == [
        ("content-type", b"application/json"),
        ("x-lunaroute-error", b"body_too_large"),
    ]
    assert imm.body == body
    assert imm.grpc_status is not None and imm.grpc_status.status == 8
    assert imm.details == "lunaroute_body_too_large"


def test_response_headers_with_mode_override_to_envoy() -> None:
    ours = pb.ProcessingResponse(
        response_headers=pb.HeadersResponse(
            response=pb.CommonResponse(
                header_mutation=pb.HeaderMutation(
                    set_headers=[_set_header("content-type", b"text/event-stream")],
                    remove_headers=["content-length"],
                )
            )
        ),
        mode_override=pb.ProcessingMode(
            response_body_mode=pb.ProcessingMode.STREAMED,
            response_trailer_mode=pb.ProcessingMode.SKIP,
        ),
    )

    theirs = edp.ProcessingResponse.parse(ours.SerializeToString())

    assert theirs.response_headers is not None
    assert theirs.request_headers is None
    common = theirs.response_headers.response
    assert common is not None
    assert common.status == edp.CommonResponseResponseStatus.CONTINUE
    assert common.header_mutation is not None
    assert common.header_mutation.set_headers[0].header.key == "content-type"
    assert common.header_mutation.set_headers[0].header.raw_value == b"text/event-stream"
    assert common.header_mutation.remove_headers == ["content-length"]
    mode = theirs.mode_override
    assert mode is not None
    assert mode.response_body_mode == edp_mode.ProcessingModeBodySendMode.STREAMED
    assert mode.response_trailer_mode == edp_mode.ProcessingModeHeaderSendMode.SKIP
    assert mode.request_body_mode == edp_mode.ProcessingModeBodySendMode.NONE
    assert mode.request_header_mode == edp_mode.ProcessingModeHeaderSendMode.DEFAULT


def test_round_trip_is_stable_through_envoy_types() -> None:
    """ours -> envoy-data-plane -> ours gives back an equal message."""
    ours = pb.ProcessingResponse(
        response_body=pb.BodyResponse(
            response=pb.CommonResponse(body_mutation=pb.BodyMutation(clear_body=True))
        ),
        request_drain=True,
    )
    back = pb.ProcessingResponse.FromString(bytes(edp.ProcessingResponse.parse(ours.SerializeToString())))
    assert back == ours
    assert back.response_body.response.body_mutation.WhichOneof("mutation") == "clear_body"
