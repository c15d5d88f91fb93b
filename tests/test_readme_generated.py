"""The README's generated blocks (event catalogue, settings) match the code: `python -m
fangkong_cli.docs --check` passes, and the generator says what the code says."""

from __future__ import annotations

import ast
import importlib
import re
import textwrap
from pathlib import Path

import pytest
from fangkong_cli import docs
from fangkong_cli.services import SERVICE_NAMES
from fangkong_common.events import topics
from fangkong_common.events.schemas import PAYLOAD_MODELS, TestPositive
from fangkong_common.settings import DEFAULT_SECRET, CommonSettings
from pydantic import Field, SecretStr
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
runner = CliRunner()


def test_readme_generated_blocks_are_current() -> None:
    result = runner.invoke(docs.app, ["--check", "--lang", "en"])
    assert result.exit_code == 0, (
        "README.md's generated blocks are stale: run `.venv/bin/python -m fangkong_cli.docs` "
        f"and commit README.md\n{result.output}")


def _outside_blocks(text: str) -> str:
    return re.sub(r"(<!-- BEGIN GENERATED: (\w+) -->).*?(<!-- END GENERATED: \2 -->)", r"\1\3", text, flags=re.DOTALL)


def test_check_fails_on_a_stale_copy_and_regenerating_changes_only_the_blocks(tmp_path: Path) -> None:
    copy = tmp_path / "README.md"
    original = README.read_text(encoding="utf-8")
    stale = original.replace("<!-- END GENERATED: events -->", "| `made.up` | stale row |\n"
                             "<!-- END GENERATED: events -->")
    assert stale != original
    copy.write_text(stale, encoding="utf-8")
    checked = runner.invoke(docs.app, ["--check", "--readme", str(copy)])
    assert checked.exit_code == 1
    assert copy.read_text(encoding="utf-8") == stale  # --check writes nothing

    assert runner.invoke(docs.app, ["--readme", str(copy)]).exit_code == 0
    regenerated = copy.read_text(encoding="utf-8")
    assert "made.up" not in regenerated
    assert _outside_blocks(regenerated) == _outside_blocks(stale)
    assert runner.invoke(docs.app, ["--check", "--readme", str(copy)]).exit_code == 0


def test_missing_markers_or_file_are_clear_errors(tmp_path: Path) -> None:
    copy = tmp_path / "README.md"
    copy.write_text("# no markers here\n", encoding="utf-8")
    result = runner.invoke(docs.app, ["--check", "--readme", str(copy), "--lang", "en"])
    assert result.exit_code == 2 and "BEGIN GENERATED: events" in result.output
    result = runner.invoke(docs.app, ["--readme", str(tmp_path / "nope.md"), "--lang", "en"])
    assert result.exit_code == 2 and "not found" in result.output
    assert runner.invoke(docs.app, ["--check", "--lang", "xx"]).exit_code != 0


def _row(markdown: str, first_cell: str) -> list[str]:
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if cells and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row for {first_cell}")


@pytest.fixture(scope="module")
def catalogue() -> str:
    return docs.events_markdown()


def test_every_topic_has_its_payload_version_producer_key_and_consumers(catalogue: str) -> None:
    consumers: dict[str, set[str]] = {}
    for service in SERVICE_NAMES:
        for spec in importlib.import_module(f"{service}.consumers").CONSUMERS:
            for topic in spec.topics:
                consumers.setdefault(topic, set()).add(f"{service} (`{spec.group}`)")
    for (event_type, version), model in PAYLOAD_MODELS.items():
        topic, payload, row_version, key, producers, readers = _row(catalogue, f"`{event_type}`")
        assert model.__name__ in payload and row_version == str(version)
        assert producers != "—", f"nobody produces {event_type}?"
        assert key != "—", f"no partition key found for {event_type}"
        for field in re.findall(r"`(\w+)`", key):
            assert field in model.model_fields, (event_type, field)
        assert set(readers.split(", ")) == consumers.get(event_type, {"—"})
        assert f"#### {model.__name__}" in catalogue
        for field in model.model_fields:
            assert f"| `{field}` |" in catalogue
    assert len([line for line in catalogue.splitlines() if line.startswith("| `") and "](#" in line]) == \
        len(topics.ALL_TOPICS)


def test_producers_are_the_services_that_build_the_payload(catalogue: str) -> None:
    produced = docs.scan_producers()
    # Each event type is emitted by the service DESIGN.md gives it (its topic's first word).
    owner = {"person": "registry", "contact": "registry", "checkpoint": "registry", "vaccination": "registry",
             "gathering": "registry", "quarantine": "quarantine", "case": "quarantine", "site": "quarantine",
             "test": "testing", "testing": "testing"}
    for event_type in topics.ALL_TOPICS:
        assert produced[event_type].services == {owner[event_type.split(".")[0]]}, event_type


@pytest.mark.parametrize(("snippet", "expected"), [
    ("emit(session, TestPositive(person_key=keys[0], barcode=b), keys[0])", ["person_key"]),
    ("Envelope.wrap(TestPositive(person_key=k, barcode=code), source=S, key=code)", ["barcode"]),
    ("event_envelope(TestPositive(person_key=row['p'], lab_id=lab.id), lab.id)", ["lab_id"]),
    ("emit(session, TestPositive(person_key=key, barcode=b), key or b)", ["person_key", "barcode"]),
    ("Envelope.wrap(TestPositive(barcode=b), source=S, key=person.person_key)", ["person_key"]),
    ("Envelope.wrap(TestPositive(barcode=b), source=S, key=somewhere_else())", []),
])
def test_the_partition_key_is_read_from_the_emitting_call(snippet: str, expected: list[str]) -> None:
    outer = ast.parse(snippet, mode="eval").body
    construction = next(a for a in outer.args if isinstance(a, ast.Call))
    key = docs._key_argument(outer, construction)
    assert docs._fields_for_key(key, construction, TestPositive) == expected


class _Example(CommonSettings):
    # How many widgets; the comment above a field is its description.
    widgets: int = 3
    token: SecretStr = SecretStr("a-default-that-must-never-be-printed")
    described: str = Field(default="x", description="from Field")


def test_settings_descriptions_come_from_comments_and_field_descriptions() -> None:
    found = docs._descriptions(_Example)
    assert found["widgets"] == "How many widgets; the comment above a field is its description."
    assert found["described"] == "from Field"
    # Inherited from CommonSettings' own comments.
    assert found["auto_migrate"].startswith("Run the service's Alembic migrations")
    assert docs._default(_Example.model_fields["token"]) == docs.SECRET_DEFAULT
    assert docs._default(_Example.model_fields["widgets"]) == "`3`"


def test_every_variable_of_every_settings_class_is_listed_and_no_secret_default_shows() -> None:
    settings = docs.settings_markdown()
    assert DEFAULT_SECRET not in settings
    for service in SERVICE_NAMES:
        cls = importlib.import_module(f"{service}.config").Settings
        for name, info in cls.model_fields.items():
            row = _row(settings, f"`FANGKONG_{name.upper()}`")
            assert row[3] == "all" if name in CommonSettings.model_fields else service in row[3]
            if isinstance(info.default, SecretStr):
                assert row[2] == docs.SECRET_DEFAULT
    for service in SERVICE_NAMES:
        _row(settings, f"`FANGKONG_{service.upper()}_DATABASE_URL`")  # read by the cli


def test_the_cli_variable_scan_expands_per_service_patterns_only() -> None:
    tree = ast.parse(textwrap.dedent('''
        _NAMES = ("jwt_secret",)
        a = os.environ.get(f"FANGKONG_{name.upper()}")
        b = os.environ.get(f"FANGKONG_{name.upper()}_DATABASE_URL")
    '''))
    constants = [("jwt_secret",)]
    fstrings = [n for n in ast.walk(tree) if isinstance(n, ast.JoinedStr)]
    assert docs._expansions(fstrings[0], constants) == ["FANGKONG_JWT_SECRET"]
    assert docs._expansions(fstrings[1], constants) == [f"FANGKONG_{s.upper()}_DATABASE_URL" for s in SERVICE_NAMES]
