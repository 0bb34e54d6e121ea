"""When the supervisor restarts a dead worker, and when it gives up."""

from __future__ import annotations

from extproc.restarts import RestartPolicy


def test_first_restart_is_immediate_and_later_ones_back_off() -> None:
    policy = RestartPolicy(max_deaths=5, window_s=60, first_delay_s=0.05, max_delay_s=5)
    assert [policy.on_death(t) for t in (0, 1, 2, 3)] == [0.05, 0.1, 0.2, 0.4]
    assert policy.restarts == 4


def test_five_deaths_within_the_window_are_a_crash_loop() -> None:
    policy = RestartPolicy(max_deaths=5, window_s=60)
    for t in range(4):
        assert policy.on_death(t) is not None
    assert policy.on_death(59) is None


def test_deaths_older_than_the_window_are_forgotten() -> None:
    policy = RestartPolicy(max_deaths=3, window_s=10, first_delay_s=1, max_delay_s=1.5)
    assert policy.on_death(0) == 1
    assert policy.on_death(5) == 1.5  # capped
    assert policy.on_death(11) == 1.5  # the death at 0 is forgotten: two recent ones
    assert policy.on_death(12) is None
