"""The failed-login throttle (gateway.throttle) against a burst: attempts still being judged count
toward the limit, so 50 wrong logins sent at once from one source are not all checked (found from
outside on Min side: all 50 were)."""

from __future__ import annotations

from gateway.throttle import LoginThrottle


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_meets_the_limit_as_a_sequence_would() -> None:
    clock = _Clock()
    throttle = LoginThrottle(clock, limit=10, window=300)
    let_in = [throttle.begin("10.0.0.1") for _ in range(50)]
    assert let_in.count(True) == 10
    for _ in range(10):
        throttle.end("10.0.0.1", failed=True)
    assert throttle.blocked("10.0.0.1") and not throttle.begin("10.0.0.1")
    assert throttle.begin("10.0.0.2")  # another source is not held back
    clock.now += 301
    assert throttle.begin("10.0.0.1")


def test_attempts_not_judged_do_not_count() -> None:
    throttle = LoginThrottle(_Clock(), limit=2, window=300)
    for _ in range(5):
        assert throttle.begin("h")
        throttle.end("h", failed=False)  # the register was away, or the login worked
    assert not throttle.blocked("h")
    assert throttle.begin("h") and throttle.begin("h") and not throttle.begin("h")
