"""Our access-log stubs (a slice of Envoy's AccessLogService): every field we declare has Envoy's number
and kind, and an entry Envoy's own message classes serialize reads back through ours."""

from __future__ import annotations

import datetime

import pytest
from envoy_data_plane.envoy.config.core import v3 as edp_core
from envoy_data_plane.envoy.data.accesslog import v3 as edp_log
from envoy_data_plane.envoy.service.accesslog import v3 as edp
from envoy_data_plane.google import protobuf as edp_pb
from google.protobuf import descriptor as _descriptor

from extproc._proto import access_log_pb2 as pb

COUNTERPARTS = {
    "StreamAccessLogsResponse": edp.StreamAccessLogsResponse,
    "StreamAccessLogsMessage": edp.StreamAccessLogsMessage,
    "StreamAccessLogsMessage.Identifier": edp.StreamAccessLogsMessageIdentifier,
    "StreamAccessLogsMessage.HTTPAccessLogEntries": edp.StreamAccessLogsMessageHttpAccessLogEntries,
    "Metadata": edp_core.Metadata,
    "HTTPAccessLogEntry": edp_log.HttpAccessLogEntry,
    "AccessLogCommon": edp_log.AccessLogCommon,
    "HTTPRequestProperties": edp_log.HttpRequestProperties,
    "HTTPResponseProperties": edp_log.HttpResponseProperties,
}


def _ours() -> dict[str, _descriptor.Descriptor]:
    out: dict[str, _descriptor.Descriptor] = {}
    for msg in pb.DESCRIPTOR.message_types_by_name.values():
        out[msg.name] = msg
        for nested in msg.nested_types:
            if not nested.GetOptions().map_entry:
                out[f"{msg.name}.{nested.name}"] = nested
    return out


def test_service_method_path() -> None:
    service = pb.DESCRIPTOR.services_by_name["AccessLogService"]
    method = service.methods_by_name["StreamAccessLogs"]
    assert method.client_streaming and not method.server_streaming
    assert f"/{service.full_name}/{method.name}" == "/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs"


def test_every_message_has_an_envoy_counterpart() -> None:
    assert set(_ours()) == set(COUNTERPARTS)


@pytest.mark.parametrize("name", sorted(COUNTERPARTS))
def test_fields_are_envoys(name: str) -> None:
    """A slice: a subset of Envoy's fields, each with Envoy's number, kind and oneof."""
    theirs = COUNTERPARTS[name]._betterproto.meta_by_field_name
    for field in _ours()[name].fields:
        assert field.name in theirs, f"{name}.{field.name} is not Envoy's"
        meta = theirs[field.name]
        assert field.number == meta.number, f"{name}.{field.name}"
        map_entry = field.message_type is not None and field.message_type.GetOptions().map_entry
        kind = "map" if map_entry else "message" if field.type == field.TYPE_MESSAGE else "scalar"
        assert kind == (meta.proto_type if meta.proto_type in ("map", "message") else "scalar"), f"{name}.{field.name}"
        oneof = field.containing_oneof.name if field.containing_oneof is not None else None
        assert oneof == meta.group, f"{name}.{field.name}"


def test_an_envoy_entry_reads_back() -> None:
    struct = edp_pb.Struct.from_dict
    entry = edp_log.HttpAccessLogEntry(
        common_properties=edp_log.AccessLogCommon(
            route_name="fast/claude/v1/messages", upstream_cluster="provider_claude",
            time_to_first_upstream_rx_byte=datetime.timedelta(milliseconds=12),
            time_to_last_downstream_tx_byte=datetime.timedelta(milliseconds=80),
            sample_rate=1.0,  # a field we do not declare: skipped
            metadata=edp_core.Metadata(filter_metadata={
                "lunaroute": struct({"client": "alice"}), "lunaroute.usage": struct({"input_tokens": 12.0})})),
        request=edp_log.HttpRequestProperties(path="/v1/messages", user_agent="sdk"),
        response=edp_log.HttpResponseProperties(response_code=429, response_headers={"retry-after": "7"}))
    message = edp.StreamAccessLogsMessage(
        identifier=edp.StreamAccessLogsMessageIdentifier(log_name="lunaroute_usage"),
        http_logs=edp.StreamAccessLogsMessageHttpAccessLogEntries(log_entry=[entry]))
    ours = pb.StreamAccessLogsMessage.FromString(bytes(message))
    assert ours.identifier.log_name == "lunaroute_usage"
    (got,) = ours.http_logs.log_entry
    common = got.common_properties
    assert (common.route_name, common.upstream_cluster) == ("fast/claude/v1/messages", "provider_claude")
    assert common.time_to_first_upstream_rx_byte.ToMilliseconds() == 12
    assert common.time_to_last_downstream_tx_byte.ToMilliseconds() == 80
    assert common.metadata.filter_metadata["lunaroute"]["client"] == "alice"
    assert common.metadata.filter_metadata["lunaroute.usage"]["input_tokens"] == 12
    assert got.request.path == "/v1/messages"
    assert got.response.response_code.value == 429
    assert got.response.response_headers["retry-after"] == "7"
