"""params.yaml: the shipped file is valid; a misspelt or out-of-range key fails with its name."""

from pathlib import Path

import pytest
import yaml

from retention.params import ParamsError, load_params

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_params_are_valid() -> None:
    params = load_params(ROOT / "params.yaml")
    assert abs(sum(s.share for s in params.simulate.segments.values()) - 1) < 1e-9


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda p: p["simulate"].update(custmers=5), "simulate.custmers"),
        (lambda p: p["simulate"].update(customers=0), "simulate.customers"),
        (lambda p: p["simulate"]["segments"]["loyal"].update(share=0.9), "segment shares must sum to 1"),
        (lambda p: p["ingest"].update(default_event_type="click"), "ingest.default_event_type"),
    ],
)
def test_invalid_params_name_the_key(tmp_path: Path, edit, message: str) -> None:  # noqa: ANN001
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    edit(raw)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError, match=message):
        load_params(path)


def test_missing_params_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "nope.yaml")


def test_dvc_reads_every_value_of_the_shipped_params() -> None:
    """`dvc repro` loads params.yaml itself and refuses values YAML types beyond JSON's (a bare
    1990-01-01 is a date): DVC's own loader must accept the file."""
    from dvc.fs import LocalFileSystem
    from dvc.parsing.context import Context

    context = Context.load_from(LocalFileSystem(), str(ROOT / "params.yaml"))
    assert str(context["ingest"]["plausible"]["earliest_date"]) == "1990-01-01"
