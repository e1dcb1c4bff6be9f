"""The command line answers --help and version, and refuses bad settings with a clear message."""

import pytest

from instance_service import __version__
from instance_service.cli import EXIT_CONFIG, EXIT_UNAVAILABLE, main


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out.strip() == f"instance-service {__version__}"
    assert __version__ != "0.0.0+unknown"


def test_help_lists_the_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "consume" in out
    assert "version" in out


def test_unknown_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["frobnicate"])
    assert exited.value.code == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err


def test_invalid_settings_exit_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("INSTANCE_SERVICE_LOG__LEVEL", "LOUD")
    assert main(["consume", "--check"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "invalid settings" in err
    assert "log.level" in err


def test_missing_kubeconfig_is_reported_not_raised(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("INSTANCE_SERVICE_STORE__URL", f"sqlite:///{tmp_path}/state.db")
    monkeypatch.setenv("INSTANCE_SERVICE_KUBERNETES__KUBECONFIG", f"{tmp_path}/no-such-kubeconfig")
    monkeypatch.setenv("INSTANCE_SERVICE_TENANTS__DATABASE_ADDRESSES", '["10.20.0.5/32"]')
    assert main(["consume", "--check"]) == EXIT_UNAVAILABLE
    err = capsys.readouterr().err
    assert "no usable Kubernetes configuration" in err


def test_a_consumer_whose_tenants_could_not_reach_postgresql_does_not_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    # No database addresses and no database pods: every tenant pod's NetworkPolicy would shut
    # it out of PostgreSQL. Refused before any connection, with the setting to fix.
    monkeypatch.setenv("INSTANCE_SERVICE_STORE__URL", f"sqlite:///{tmp_path}/state.db")
    monkeypatch.delenv("INSTANCE_SERVICE_TENANTS__DATABASE_ADDRESSES", raising=False)
    assert main(["consume", "--check"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "tenants would not be isolated" in err
    assert "INSTANCE_SERVICE_TENANTS__DATABASE_ADDRESSES" in err
