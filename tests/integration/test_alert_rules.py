"""The alert rules pass promtool's checks and their unit tests (one or more per alert,
deploy/monitoring/tests/), with the promtool built for the local stack."""

import subprocess

import pytest

from devstack.prometheus import MONITORING, build

# promtool comes with the stack's Prometheus (run last: it may still be building).
pytestmark = pytest.mark.prometheus


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = build() / "promtool"
    return subprocess.run(
        [str(promtool), *args], cwd=MONITORING, capture_output=True, text=True, check=False
    )


def test_promtool_checks_the_rules() -> None:
    answer = _promtool(
        "check", "rules", "--lint=all", "--lint-fatal", "instance-service.rules.yaml"
    )
    assert answer.returncode == 0, answer.stdout + answer.stderr
    assert "SUCCESS: 12 rules found" in answer.stdout


def test_every_alert_passes_its_promtool_unit_tests() -> None:
    answer = _promtool("test", "rules", "tests/instance-service.test.yaml")
    assert answer.returncode == 0, answer.stdout + answer.stderr
    assert "SUCCESS" in answer.stdout


def test_promtool_would_catch_a_wrong_expectation(tmp_path: object) -> None:
    """The unit tests can fail: one expectation changed is reported."""
    text = (MONITORING / "tests" / "instance-service.test.yaml").read_text()
    wrong = text.replace("severity: critical, vhost: saas", "severity: warning, vhost: saas")
    assert wrong != text
    broken = MONITORING / "tests" / "broken.test.yaml"
    broken.write_text(wrong)
    try:
        answer = _promtool("test", "rules", "tests/broken.test.yaml")
    finally:
        broken.unlink()
    assert answer.returncode != 0
    assert "InstanceServiceCommandsWaitWithoutConsumers" in answer.stdout + answer.stderr
