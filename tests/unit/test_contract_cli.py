"""`instance-service validate` and `schema` as a user runs them."""

import io
import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from instance_service.cli import main
from instance_service.publish_command import refreshed
from messages.amqp import AmqpProperties
from messages.examples import command_example
from messages.parsing import parse_command
from messages.settings import ContractSettings

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    # The service's own settings from the caller's shell must not change what is compared.
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSTANCE_SERVICE_")}
    return subprocess.run(
        [sys.executable, "-m", "instance_service", *args],
        input=stdin,
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )


def test_validate_a_valid_file_prints_its_summary(tmp_path: Path) -> None:
    path = tmp_path / "provision.json"
    path.write_text(json.dumps(command_example("odoo.instance.provision.v1")))
    result = _run("validate", str(path))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["type"] == "odoo.instance.provision.v1"
    assert summary["id"] == "provision-7f3a9c21"
    assert summary["data"]["subdomain"] == "acme"


def test_validate_an_invalid_document_prints_the_rejection() -> None:
    document = command_example("odoo.instance.provision.v1")
    document["data"]["subdomain"] = "www"
    result = _run("validate", "-", stdin=json.dumps(document).encode())
    assert result.returncode == 1
    assert json.loads(result.stdout) == {
        "code": "invalid_data",
        "message": "1 field(s) of odoo.instance.provision.v1 break the contract",
        "details": [{"field": "data.subdomain", "message": "'www' is reserved"}],
    }


def test_validate_garbage_from_stdin_is_malformed() -> None:
    result = _run("validate", "-", stdin=b"\x00\x01not json")
    assert result.returncode == 1
    assert json.loads(result.stdout)["code"] == "malformed"


def test_validate_a_missing_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", str(tmp_path / "absent.json")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_validate_uses_the_configured_allow_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("INSTANCE_SERVICE_CONTRACT__ODOO_VERSIONS", '["18.0"]')
    monkeypatch.setattr(
        sys,
        "stdin",
        io.TextIOWrapper(
            io.BytesIO(json.dumps(command_example("odoo.instance.provision.v1")).encode())
        ),
    )
    assert main(["validate", "-"]) == 1
    rejection = json.loads(capsys.readouterr().out)
    assert rejection["details"][0]["field"] == "data.odoo_version"


def test_schema_prints_the_committed_asyncapi_document() -> None:
    result = _run("schema")
    assert result.returncode == 0
    assert result.stdout.decode() == (ROOT / "docs" / "asyncapi.yaml").read_text()


def test_schema_of_one_type_is_json_schema() -> None:
    result = _run("schema", "odoo.instance.backed_up.v1")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["properties"]["type"]["const"] == "odoo.instance.backed_up.v1"


def test_schema_of_an_unknown_type_lists_the_known_ones() -> None:
    result = _run("schema", "odoo.instance.nope.v1")
    assert result.returncode == 2
    assert b"odoo.instance.provision.v1" in result.stderr


def test_schema_and_validate_ignore_unrelated_bad_settings(tmp_path: Path) -> None:
    path = tmp_path / "start.json"
    path.write_text(json.dumps(command_example("odoo.instance.start.v1")))
    env = {**os.environ, "INSTANCE_SERVICE_LOG__LEVEL": "LOUD"}
    result = subprocess.run(
        [sys.executable, "-m", "instance_service", "validate", str(path)],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_every_example_document_in_the_docs_is_a_valid_command() -> None:
    examples = sorted(Path(__file__).parents[2].joinpath("docs", "examples").glob("*.json"))
    assert len(examples) == 9
    for example in examples:
        parse_command(example.read_bytes(), AmqpProperties(), ContractSettings())


def test_publish_fresh_gives_a_kept_document_a_new_id_and_time() -> None:
    kept = Path(__file__).parents[2].joinpath("docs", "examples", "stop.json").read_bytes()
    first, second = json.loads(refreshed(kept)), json.loads(refreshed(kept))
    assert first["id"] != second["id"]
    assert first["id"] != json.loads(kept)["id"]
    assert datetime.fromisoformat(first["time"]) > datetime.fromisoformat(json.loads(kept)["time"])
    assert first["data"] == json.loads(kept)["data"]
    assert refreshed(b"[1]") == b"[1]"
    assert refreshed(b"not json") == b"not json"
