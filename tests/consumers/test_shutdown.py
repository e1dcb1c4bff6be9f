"""SIGTERM during a long handler: finish in the grace period, or hand the work back; exit 0."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from handlers.results import HandlerContext, HandlerResult
from messages.commands import AnyCommand
from store.database import create_engine
from store.settings import StoreSettings
from tests.consumers.harness import (
    FAST,
    Observer,
    ProvisionFake,
    provision_body,
    publish,
    running_consumer,
)

pytestmark = pytest.mark.rabbitmq
PROVISION = "odoo.instance.provision.v1"


def _consumer(
    amqp_url: str, state: Path, handler_seconds: float, grace: float
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.consumers.consumer_process",
            amqp_url,
            f"sqlite:///{state}",
            str(handler_seconds),
            str(grace),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )


def _read_until(process: subprocess.Popen[str], prefix: str) -> str:
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith(prefix):
            return line.strip()
    pytest.fail(f"the consumer ended (exit {process.wait()}) before printing {prefix!r}")


def test_sigterm_lets_the_running_handler_finish_and_exits_0(amqp_url: str, tmp_path: Path) -> None:
    observer = Observer(amqp_url)
    process = _consumer(amqp_url, tmp_path / "state.db", handler_seconds=3, grace=20)
    try:
        _read_until(process, "ready")
        publish(amqp_url, [provision_body(1)], PROVISION)
        _read_until(process, "handling provision-1")
        process.send_signal(signal.SIGTERM)
        assert _read_until(process, "stopped") == "stopped SIGTERM"
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()
    bodies = observer.wait_for(lambda bodies: len(bodies) == 1, timeout=10)
    assert bodies[0]["causationid"] == "provision-1"


def test_work_still_running_after_the_grace_period_is_handed_back_and_answered_once(
    amqp_url: str, tmp_path: Path
) -> None:
    observer = Observer(amqp_url)
    state = tmp_path / "state.db"
    process = _consumer(amqp_url, state, handler_seconds=8, grace=1)
    try:
        _read_until(process, "ready")
        publish(amqp_url, [provision_body(2)], PROVISION)
        _read_until(process, "handling provision-2")
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        # It handed the message back after the 1 s grace, then waited (bounded by the
        # handler budget) for the running handler, so its outcome did not stay behind.
        assert time.monotonic() - signalled < 20
    finally:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()
    # At the end of the grace period the message went back to the broker; the process waited
    # for its running handler (bounded by the handler budget) before exiting. Another consumer
    # on the same state gets the message again and answers it once: from the inbox if the
    # first handler recorded its outcome, by running the handler if it had not.
    fake = ProvisionFake()
    shared = create_engine(StoreSettings(url=SecretStr(f"sqlite:///{state}")))
    with running_consumer(amqp_url, shared, {PROVISION: fake}):
        observer.wait_for(lambda bodies: len(bodies) >= 1, timeout=60)
        time.sleep(2)  # a second answer, if there were one, would come now
        observer.drain()
    shared.dispose()
    bodies = [body for _, body in observer.seen]
    assert [b["causationid"] for b in bodies] == ["provision-2"]
    # Exactly one of the two consumers ran the handler to its end and recorded the outcome.
    assert sum(fake.calls.values()) in (0, 1)


class WorkerKilled(BaseException):
    """What no handler catches: the worker thread dies without a decision."""


def test_a_worker_killed_without_a_decision_frees_its_place_and_its_delivery_goes_back_at_stop(
    amqp_url: str, engine: Engine
) -> None:
    observer = Observer(amqp_url)
    answered = ProvisionFake()

    def dies_on_the_first(command: AnyCommand, context: HandlerContext) -> HandlerResult:
        if command.id == "provision-1":
            raise WorkerKilled(command.id)
        return answered(command, context)

    # One worker, and a grace period longer than the harness waits for the stop (60 s): the
    # next command is only answered if the dead worker's place is free again, and the stop only
    # ends in time if the dead delivery does not count as work still running.
    settings = FAST.model_copy(
        update={"workers": 1, "batch_size": 1, "shutdown_grace_seconds": 120}
    )
    with running_consumer(amqp_url, engine, {PROVISION: dies_on_the_first}, settings):
        publish(amqp_url, [provision_body(1), provision_body(2)], PROVISION)
        observer.wait_for(lambda bodies: len(bodies) == 1, timeout=30)
    assert [body["causationid"] for _, body in observer.seen] == ["provision-2"]
    # Handed back unacknowledged at the stop: the next consumer answers it.
    with running_consumer(amqp_url, engine, {PROVISION: answered}):
        bodies = observer.wait_for(lambda bodies: len(bodies) == 2, timeout=30)
    assert bodies[1]["causationid"] == "provision-1"
    assert answered.calls == {"provision-1": 1, "provision-2": 1}
