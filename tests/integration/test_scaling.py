"""The whole scaling cycle with the real KEDA on the local cluster: deploy/'s devstack overlay
applied as a user applies it, queues empty -> both consumer Deployments at 0; a backlog on both
queues -> KEDA wakes each Deployment and the HPA it made raises the replicas with the backlog
(long up to its maximum); quick drained by a host-side consumer -> quick back to 0 while long
stays up (the queues scale apart); long drained -> long back to 0. The timeline (replicas and
queue depth) is printed and drawn (bench/scaling.py, which runs the same cycle)."""

from pathlib import Path

import pytest
from kubernetes import client
from sqlalchemy.engine import Engine

from bench.scaling import LONG, LONG_MAX, QUICK, QUICK_COMMANDS, draw, run_cycle

pytestmark = [pytest.mark.k8s, pytest.mark.rabbitmq, pytest.mark.keda]


def test_keda_scales_each_consumer_from_zero_with_its_backlog_and_back(
    k8s_api: client.ApiClient,
    amqp_url: str,
    amqp_vhost: str,
    sqlite_engine: Engine,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    timeline = run_cycle(k8s_api, amqp_url, amqp_vhost, sqlite_engine)
    picture = tmp_path / "scaling.png"
    draw(timeline, picture)
    with capsys.disabled():  # in every run's output (CI's too), not only a failing one's
        print(f"\n{timeline.table()}\ndrawn: {picture}")

    published = timeline.mark("published")
    quick_drain = timeline.mark("draining quick")
    long_drain = timeline.mark("draining long")
    # Idle before: nothing ran while the queues were empty.
    before = [s for s in timeline.samples if s.seconds <= published]
    assert before[-1].replicas == {QUICK: 0, LONG: 0}
    # Woken by KEDA from zero with nothing consuming yet, then raised by the HPA to the maximum.
    woke = timeline.first(lambda s: s.replicas[LONG] >= 1, after=published)
    assert woke is not None
    assert woke < quick_drain
    with capsys.disabled():
        print(f"long woken {woke - published:.1f} s after the backlog was published")
    assert timeline.first(lambda s: s.replicas[LONG] == LONG_MAX, after=published) is not None
    assert max(s.replicas[LONG] for s in timeline.samples) == LONG_MAX  # never above it
    assert timeline.first(lambda s: s.replicas[QUICK] == -(-QUICK_COMMANDS // 10)) is not None
    # Apart: quick went back to zero while long kept its replicas and its backlog.
    quick_zero = timeline.first(lambda s: s.replicas[QUICK] == 0, after=quick_drain)
    assert quick_zero is not None
    while_quick_drained = [s for s in timeline.samples if quick_drain <= s.seconds < long_drain]
    assert all(s.replicas[LONG] == LONG_MAX for s in while_quick_drained)
    assert all(s.depth[LONG] > 0 for s in while_quick_drained)
    # Drained: long back to zero after the cooldown, and both stay there.
    assert timeline.first(lambda s: s.replicas[LONG] == 0, after=long_drain) is not None
    idle = timeline.mark("idle")
    assert all(s.replicas == {QUICK: 0, LONG: 0} for s in timeline.samples if s.seconds >= idle)
    assert all(s.depth == {QUICK: 0, LONG: 0} for s in timeline.samples if s.seconds >= idle)
