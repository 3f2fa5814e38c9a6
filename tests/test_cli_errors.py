"""A platform database that is missing, unreachable or unparsable: one line, exit 2, nothing created."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app

runner = CliRunner()
# Commands that read or write the platform (their options are valid, so only the database can refuse them)
PLATFORM_COMMANDS = [
    ["summary"],
    ["simulate", "--days", "1"],
    ["extract", "--start", "2026-01-01"],
    ["campaigns", "list"],
    ["campaigns", "show", "winback-2026-04-01"],
    ["campaigns", "run", "--as-of", "2026-04-01"],
    ["campaigns", "lift"],
    ["models", "list", "--model", "return"],
    ["features", "materialize", "--as-of", "2026-04-01"],
    ["train", "--model", "return"],
    ["serve"],
]
PASSWORD = "s3cr3t-pw"  # must never be shown


@pytest.fixture(autouse=True)
def no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """`retention serve` past its checks would start uvicorn: fail at once instead of serving (and hanging)."""
    import uvicorn

    def refuse(*_: object, **__: object) -> None:
        pytest.fail("`retention serve` started a server on a database it should have refused")

    monkeypatch.setattr(uvicorn, "run", refuse)


def one_line_refusal(command: list[str]) -> str:
    """Run `command`; assert it exits with 2 and a single line (no traceback); return that line."""
    result = runner.invoke(app, command)
    assert result.exit_code == 2, f"{command}: {result.exit_code} {result.output}"
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), f"{command}: {result.output}"
    return lines[0]


@pytest.mark.parametrize("command", PLATFORM_COMMANDS, ids=" ".join)
def test_a_mistyped_sqlite_path_is_refused_and_nothing_is_created_there(
    command: list[str], migrated_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a migrated platform, and a URL with a typo in its folder and file names
    typo = tmp_path / "hom" / "retension.db"
    monkeypatch.setenv("RETENTION_DATABASE_URL", f"sqlite:///{typo}")

    # when a command runs, it names the URL and what to do, in one line
    line = one_line_refusal(command)
    assert f"no platform database at sqlite:///{typo}" in line
    assert "run `retention init`" in line and "RETENTION_DATABASE_URL" in line

    # then no empty platform was created at the mistyped path (not even its folder)
    assert not typo.exists() and not typo.parent.exists()


def test_init_creates_the_database_the_others_refused(isolated_env: Path, tmp_path: Path) -> None:
    # given no database yet, a command refuses; `init` creates it, and then the command runs
    assert "no platform database at" in one_line_refusal(["campaigns", "list"])
    assert not (isolated_env / "retention.db").exists()
    assert runner.invoke(app, ["init"]).exit_code == 0
    listed = runner.invoke(app, ["campaigns", "list"])
    assert listed.exit_code == 0 and "no campaigns published yet" in listed.output


def test_an_unmigrated_database_is_refused_on_each_backend(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given an existing but empty database (a new SQLite file; a PostgreSQL schema without tables)
    if database_url.startswith("sqlite"):
        Path(database_url.removeprefix("sqlite:///")).touch()
    monkeypatch.setenv("RETENTION_DATABASE_URL", database_url)

    # then commands refuse it in one line; none creates the schema behind the user's back
    for command in (["campaigns", "list"], ["campaigns", "run", "--as-of", "2026-04-01"], ["summary"]):
        line = one_line_refusal(command)
        assert "has no platform schema" in line and "run `retention init`" in line


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    notes = tmp_path / "notes.db"
    notes.write_text("these are not the tables you are looking for\n" * 200)
    monkeypatch.setenv("RETENTION_DATABASE_URL", f"sqlite:///{notes}")
    line = one_line_refusal(["campaigns", "list"])
    assert f"cannot use the database at sqlite:///{notes}" in line and "not a database" in line


@pytest.mark.parametrize(
    "command",
    [["init"], ["run"], ["campaigns", "list"], ["campaigns", "run", "--as-of", "2026-04-01"], ["serve"]],
)
def test_an_unreachable_postgresql_is_one_line_with_the_password_masked(
    command: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a PostgreSQL URL on a port nothing listens on, with a password
    monkeypatch.setenv(
        "RETENTION_DATABASE_URL", f"postgresql+psycopg2://retention:{PASSWORD}@127.0.0.1:1/retention"
    )

    result = runner.invoke(app, command)

    # then one line names the URL without its password, and says why
    assert result.exit_code == 2 and PASSWORD not in result.output
    line = one_line_refusal(command)
    assert "cannot use the database at postgresql+psycopg2://retention:***@127.0.0.1:1/retention" in line
    assert "Connection refused" in line


@pytest.mark.parametrize(
    "url",
    [
        "garbage",
        f"postgresql://retention:{PASSWORD}@db.example:fivefourthreetwo/retention",  # a port that is no number
        f"postgres://retention:{PASSWORD}@127.0.0.1/retention",  # a scheme SQLAlchemy does not know
    ],
)
@pytest.mark.parametrize("command", [["init"], ["run"], ["campaigns", "list"], ["summary"]])
def test_an_unparsable_url_is_one_line_with_the_password_masked(
    url: str, command: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETENTION_DATABASE_URL", url)
    line = one_line_refusal(command)
    assert "RETENTION_DATABASE_URL" in line and "is not a database URL" in line
    assert PASSWORD not in line and "expected sqlite:///" in line


def test_config_still_shows_the_settings_of_an_unparsable_url(monkeypatch: pytest.MonkeyPatch) -> None:
    # `retention config` is how one finds the typo: it works, and masks the password even here
    monkeypatch.setenv("RETENTION_DATABASE_URL", f"postgresql://retention:{PASSWORD}@db.example:port/x")
    result = runner.invoke(app, ["config"])
    assert result.exit_code == 0 and PASSWORD not in result.output
    assert "RETENTION_DATABASE_URL=postgresql://retention:***@db.example:port/x" in result.output
