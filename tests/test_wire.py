"""The Envoy ↔ Python contract has one home (extproc/wire.py): the Lua filters hold no copy of a name,
and every internal name they mention is one of wire.py's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from extproc import wire

LUA = sorted((Path(__file__).resolve().parent.parent / "envoy").glob("*.lua"))
INTERNAL = re.compile(r"x-lunaroute-[a-z0-9*-]*")


def _wire_names() -> set[str]:
    names = {v for k, v in vars(wire).items() if k.isupper() and isinstance(v, str)}
    return names | {wire.FALLBACK_HEADER.format("N"), wire.INTERNAL_PREFIX + "*"}


def _code(source: str) -> str:
    """The Lua source without its comments (the code that runs)."""
    return "\n".join(line.split("--", 1)[0] for line in source.splitlines())


@pytest.mark.parametrize("path", LUA, ids=lambda p: p.name)
def test_every_internal_name_a_lua_filter_mentions_is_a_wire_name(path: Path) -> None:
    mentioned = set(INTERNAL.findall(path.read_text(encoding="utf-8")))
    assert mentioned <= _wire_names(), mentioned - _wire_names()


@pytest.mark.parametrize("path", LUA, ids=lambda p: p.name)
def test_the_lua_filters_take_every_shared_name_from_their_rendered_settings(path: Path) -> None:
    code = _code(path.read_text(encoding="utf-8"))
    assert "x-lunaroute" not in code
    strings = set(re.findall(r'"([^"\\]*)"', code))
    shared = {v for v in wire.lua_names().values()}
    assert strings.isdisjoint(shared), strings & shared


def test_lua_names_are_the_wire_names() -> None:
    assert set(wire.lua_names().values()) <= _wire_names()


def test_a_chain_survives_its_header() -> None:
    chain = wire.Chain(client="openai", path="/v1/chat/completions", query="?x=1", providers=("a", "b"),
                       models={"b": "m"}, stash={"anthropic-beta": "y"})
    assert wire.decode_chain(wire.encode_chain(chain)) == chain
