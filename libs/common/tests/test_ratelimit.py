"""The sliding-window limiter behind the login's 429."""

from __future__ import annotations

from fangkong_common.ratelimit import RateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_limit_holds_per_key_and_the_window_slides() -> None:
    clock = FakeClock()
    limiter = RateLimiter(3, 60, clock=clock)
    assert [limiter.hit(("1.2.3.4", "commander")) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.hit(("1.2.3.4", "commander")) == 60  # the oldest of the three frees up in a minute
    assert limiter.hit(("1.2.3.4", "viewer")) == 0.0  # another role, another count
    clock.now += 20
    assert limiter.hit(("1.2.3.4", "commander")) == 40
    clock.now += 40  # the first three hits are a minute old now
    assert limiter.hit(("1.2.3.4", "commander")) == 0.0


def test_a_refused_request_does_not_extend_the_wait() -> None:
    clock = FakeClock()
    limiter = RateLimiter(1, 10, clock=clock)
    limiter.hit("k")
    for _ in range(50):
        clock.now += 0.1
        limiter.hit("k")
    assert limiter.hit("k") < 5.1  # hammering while refused does not push the window out


def test_zero_turns_it_off_and_the_table_stays_bounded() -> None:
    assert all(RateLimiter(0, 60).hit("k") == 0.0 for _ in range(100))
    clock = FakeClock()
    limiter = RateLimiter(1, 60, clock=clock, max_keys=100)
    for n in range(1000):
        limiter.hit(f"10.0.{n // 256}.{n % 256}")
    assert len(limiter._hits) <= 100
