"""bench/cpu.py: each process is counted under its part of the stack, once, from the window's
start; the table adds up."""

import os

from bench import cpu
from bench.cpu import CONSUMER, OTHER, Snapshot, spent, table

BIN = "/root/.cache/instance-service/bin/k8s-v1.37.2-etcd-v3.6.16-kwok-v0.7.0"


def test_a_process_is_named_by_its_program_not_by_the_words_in_its_arguments() -> None:
    # Every binary's path names kwok and etcd; the API server's arguments name etcd again.
    assert cpu._role(1, f"{BIN}/kube-apiserver --etcd-servers=http://127.0.0.1:2379") == (
        "API server"
    )
    assert cpu._role(1, f"{BIN}/etcd --name=devstack") == "etcd"
    assert cpu._role(1, f"{BIN}/kwok --kubeconfig=x") == "kwok"
    assert cpu._role(1, "postgres: bench bench 127.0.0.1(5432) idle") == "PostgreSQL"
    assert cpu._role(1, "/work/.venv/bin/python -m devstack.jobrunner /k") == "devstack stand-ins"
    assert cpu._role(1, "/usr/lib/erlang/erts-13.1.5/bin/beam.smp -W w") == "RabbitMQ"
    assert cpu._role(1, "/usr/bin/python3 -m pytest tests") == OTHER
    assert cpu._role(os.getpid(), "/usr/bin/python3 -m pytest tests") == CONSUMER


def test_spent_counts_each_process_from_the_window_start() -> None:
    before = Snapshot({10: ("etcd", 5.0), 11: ("API server", 7.0), 12: ("kwok", 1.0)}, 100.0)
    after = Snapshot(
        # 12 ended (missed); 13 started in the window (counted from zero); 11's pid was reused
        {10: ("etcd", 6.5), 11: ("kwok", 0.5), 13: ("API server", 2.0)},
        104.0,
    )
    figures = spent(before, after)
    assert figures == {"API server": 2.0, "etcd": 1.5, "kwok": 0.5, "wall": 4.0, "cores": 1.0}
    assert list(figures)[:3] == ["API server", "etcd", "kwok"]  # the biggest first


def test_the_table_gives_each_part_its_share_and_its_cost_per_unit() -> None:
    lines = table({"API server": 3.0, "etcd": 1.0, "wall": 2.0, "cores": 2.0}, 10, "provision")
    assert lines[0].startswith("CPU during the run: 4.0 core-s in 2.0 s (2.00 of")
    assert lines[2].split() == ["API", "server", "3.0", "75.0%", "300"]
    assert lines[3].split() == ["etcd", "1.0", "25.0%", "100"]
    assert lines[4].split() == ["all", "4.0", "100%", "400"]


def test_a_real_snapshot_finds_this_process_and_its_time() -> None:
    before = cpu.snapshot()
    after = before
    # The kernel counts both the process's time and the uptime in ticks (10 ms), each on its own
    # boundary: work until both have moved on (one alone may tick first).
    for _ in range(1000):
        sum(i * i for i in range(20_000))
        after = cpu.snapshot()
        ran = after.seconds[os.getpid()][1] > before.seconds[os.getpid()][1]
        if ran and after.uptime > before.uptime:
            break
    assert after.seconds[os.getpid()][0] == CONSUMER
    assert after.uptime > before.uptime
    assert spent(before, after)[CONSUMER] > 0
