"""`make run`'s restart policy, on a clock the test moves: back-off growth, its reset after a healthy run,
and giving up on a crash loop."""

from __future__ import annotations

from shared.devstack.supervisor import RestartPolicy, exit_status


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def crash_after(policy: RestartPolicy, clock: FakeClock, uptime: float) -> float | None:
    """The service starts, runs `uptime` seconds and exits; the policy's answer."""
    policy.started()
    clock.advance(uptime)
    return policy.exited()


def restart_after(clock: FakeClock, delay: float | None) -> None:
    assert delay is not None
    clock.advance(delay)


def test_the_back_off_doubles_from_half_a_second_and_is_capped_at_ten() -> None:
    clock = FakeClock()
    # A service that runs 20 s each time neither resets its back-off nor crashes 5 times a minute.
    policy = RestartPolicy(clock)
    delays = []
    for _ in range(8):
        delay = crash_after(policy, clock, uptime=20)
        restart_after(clock, delay)
        delays.append(delay)
    assert delays == [0.5, 1, 2, 4, 8, 10, 10, 10]
    assert policy.restarts == 8


def test_a_service_that_stayed_up_long_enough_starts_its_back_off_afresh() -> None:
    clock = FakeClock()
    policy = RestartPolicy(clock)
    for expected in (0.5, 1, 2):
        delay = crash_after(policy, clock, uptime=20)
        assert delay == expected
        restart_after(clock, delay)
    assert crash_after(policy, clock, uptime=30) == 0.5
    assert policy.restarts == 4


def test_the_fifth_crash_within_a_minute_gives_up() -> None:
    clock = FakeClock()
    policy = RestartPolicy(clock)
    for _ in range(4):
        restart_after(clock, crash_after(policy, clock, uptime=1))
    assert crash_after(policy, clock, uptime=1) is None
    assert policy.restarts == 4


def test_crashes_spread_over_more_than_a_minute_never_give_up() -> None:
    clock = FakeClock()
    policy = RestartPolicy(clock)
    for _ in range(20):  # 14 s up, then down for its back-off: never 5 crashes within 60 s
        restart_after(clock, crash_after(policy, clock, uptime=14))
    assert policy.restarts == 20


def test_a_crash_older_than_the_window_no_longer_counts() -> None:
    clock = FakeClock()
    policy = RestartPolicy(clock)
    for _ in range(4):
        restart_after(clock, crash_after(policy, clock, uptime=1))
    # This run lasts a minute: the four crashes fall out of the window, and the back-off starts afresh.
    assert crash_after(policy, clock, uptime=60) == 0.5
    for _ in range(3):
        restart_after(clock, crash_after(policy, clock, uptime=1))
    assert crash_after(policy, clock, uptime=1) is None  # five within the last minute again


def test_an_exit_is_described_by_its_code_or_its_signal() -> None:
    assert exit_status(1) == "1"
    assert exit_status(0) == "0"
    assert exit_status(-9) == "-9 (SIGKILL)"
    assert exit_status(-15) == "-15 (SIGTERM)"
