"""The broker's live lag bookkeeping (`broker.live_lag.ArrivalTimes`): pure logic, on a
clock the test moves by hand, observed through the real metrics registry."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from broker.live_lag import HORIZON_S, ArrivalTimes

PACKET_S = 1000 / 16_000
"""A 1000-frame packet at 16 kHz."""


class Clock:
    """Monotonic time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def paced(seconds: float, clock: Clock, horizon: float = HORIZON_S) -> ArrivalTimes:
    """`seconds` of packets, each arriving as it would from a real-time client."""
    arrivals = ArrivalTimes(horizon, clock)
    for n in range(1, round(seconds / PACKET_S) + 1):
        clock.now += PACKET_S
        arrivals.arrived(n * PACKET_S)
    return arrivals


def sample(name: str, le: str | None = None) -> float:
    labels = {"le": le} if le is not None else {}
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_the_audio_up_to_t_arrived_with_the_packet_that_reaches_t() -> None:
    clock = Clock()
    arrivals = ArrivalTimes(clock=clock)
    for end, at in ((0.0625, 1.0), (0.125, 2.0), (0.1875, 3.0)):
        clock.now = at
        arrivals.arrived(end)
    assert arrivals.arrival(0.0) == 1.0
    assert arrivals.arrival(0.1) == 2.0
    assert arrivals.arrival(0.125) == 2.0
    assert arrivals.arrival(0.1254) == 2.0, "times on the wire are rounded to 1 ms"
    assert arrivals.arrival(0.127) == 3.0
    assert arrivals.arrival(5.0) == 3.0, "past the audio: the last arrival"
    clock.now = 3.5
    assert arrivals.lag(0.1) == pytest.approx(1.5)


def test_nothing_arrived_yet_means_no_lag_and_no_observation() -> None:
    arrivals = ArrivalTimes(clock=Clock())
    before = sample("whisperfarm_broker_live_partial_lag_seconds_count")
    assert arrivals.arrival(1.0) is None
    assert arrivals.lag(1.0) is None
    arrivals.partial_sent(1.0)
    arrivals.segment_sent(1.0)
    assert sample("whisperfarm_broker_live_partial_lag_seconds_count") == before


def test_audio_sent_again_keeps_its_first_arrival() -> None:
    clock = Clock()
    arrivals = paced(2.0, clock)
    first = arrivals.arrival(1.0)
    clock.now += 30
    for n in range(1, 33):  # a resumed client sends what it buffered, from the start
        arrivals.arrived(n * PACKET_S)
    arrivals.arrived(2.0)  # and an empty packet
    assert arrivals.arrival(1.0) == first
    assert len(arrivals) == 32


def test_a_partial_is_observed_from_the_arrival_of_its_end() -> None:
    clock = Clock()
    arrivals = paced(3.0, clock)
    clock.now += 0.4  # the decode of the first 2 s comes back 1.4 s after its audio
    before_count = sample("whisperfarm_broker_live_partial_lag_seconds_count")
    before_sum = sample("whisperfarm_broker_live_partial_lag_seconds_sum")
    before_under = sample("whisperfarm_broker_live_partial_lag_seconds_bucket", "1.0")
    before_over = sample("whisperfarm_broker_live_partial_lag_seconds_bucket", "1.5")
    commits = sample("whisperfarm_broker_live_commit_lag_seconds_count")
    arrivals.partial_sent(2.0)
    count = sample("whisperfarm_broker_live_partial_lag_seconds_count")
    assert count == before_count + 1
    lag = sample("whisperfarm_broker_live_partial_lag_seconds_sum") - before_sum
    assert lag == pytest.approx(1.4)
    assert sample("whisperfarm_broker_live_partial_lag_seconds_bucket", "1.0") == before_under
    assert sample("whisperfarm_broker_live_partial_lag_seconds_bucket", "1.5") == before_over + 1
    assert sample("whisperfarm_broker_live_commit_lag_seconds_count") == commits


def test_a_segment_is_observed_as_commit_lag_and_forgets_what_came_before() -> None:
    clock = Clock()
    arrivals = paced(10.0, clock)
    clock.now += 2.5
    before = sample("whisperfarm_broker_live_commit_lag_seconds_count")
    before_sum = sample("whisperfarm_broker_live_commit_lag_seconds_sum")
    arrivals.segment_sent(8.0)
    assert sample("whisperfarm_broker_live_commit_lag_seconds_count") == before + 1
    lag = sample("whisperfarm_broker_live_commit_lag_seconds_sum") - before_sum
    assert lag == pytest.approx(4.5)
    assert len(arrivals) == round(2.0 / PACKET_S) + 1, "only the packets reaching 8 s and on"
    assert arrivals.arrival(9.0) == pytest.approx(100.0 + 9.0)
    arrivals.segment_sent(10.0)
    assert len(arrivals) == 1, "the last packet stays, for what comes next"
    clock.now += PACKET_S
    arrivals.arrived(10.0 + PACKET_S)
    assert arrivals.arrival(10.03) == clock.now


def test_a_stream_that_never_commits_stays_within_the_horizon() -> None:
    clock = Clock()
    arrivals = paced(600.0, clock, horizon=30.0)  # ten minutes of silence: nothing commits
    assert len(arrivals) <= round(30.0 / PACKET_S) + 1
    oldest_kept = clock.now - 30.0
    # Asked about audio older than it keeps, the lag it gives is a lower bound.
    assert arrivals.arrival(1.0) == pytest.approx(oldest_kept)
    assert arrivals.lag(1.0) == pytest.approx(30.0)
    assert arrivals.arrival(599.0) == pytest.approx(clock.now - 1.0)
