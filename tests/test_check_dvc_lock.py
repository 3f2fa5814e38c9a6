"""scripts/check_dvc_lock.py on a small DVC project: a lock that `dvc repro` just wrote passes; a code,
parameter or command change fails naming the stage and what changed; `--record` brings the lock up to
date without running the stage; bytecode caches do not count as code (.dvcignore)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

BIN = Path(sys.executable).parent
CHECK = ROOT / "scripts" / "check_dvc_lock.py"
PIPELINE = {
    "stages": {
        "prepare": {"cmd": "python src/prepare.py", "deps": ["src"], "outs": ["data.txt"]},
        "train": {
            "cmd": "python src/train.py",
            "deps": ["data.txt", "src"],
            "params": ["train"],
            "metrics": [{"metrics.json": {"cache": False}}],
        },
    }
}


def _check(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECK), "--root", str(root), *args], capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-stage DVC project (the project's .dvcignore) after `dvc repro`."""
    root = tmp_path_factory.mktemp("lock") / "project"
    (root / "src").mkdir(parents=True)
    (root / "src" / "prepare.py").write_text("open('data.txt', 'w').write('rows')\n")
    (root / "src" / "train.py").write_text("open('metrics.json', 'w').write('{\"auc\": 0.7}')\n")
    (root / "params.yaml").write_text("train:\n  epochs: 2\n")
    (root / "dvc.yaml").write_text(yaml.safe_dump(PIPELINE, sort_keys=False))
    shutil.copyfile(ROOT / ".dvcignore", root / ".dvcignore")
    for args in (["init", "--no-scm", "-q"], ["repro", "-q"]):
        subprocess.run([str(BIN / "dvc"), *args], cwd=root, check=True, timeout=120)
    return root


@pytest.fixture
def project(reproduced: Path, tmp_path: Path) -> Path:
    """A copy of the reproduced project for one test to change."""
    return Path(shutil.copytree(reproduced, tmp_path / "project", symlinks=True))


def test_a_fresh_lock_passes_and_bytecode_is_not_code(project: Path) -> None:
    cache = project / "src" / "__pycache__"
    cache.mkdir()
    (cache / "train.cpython-311.pyc").write_bytes(b"\x00compiled")
    checked = _check(project)
    assert checked.returncode == 0, checked.stderr
    assert "matches" in checked.stdout


def test_a_code_or_parameter_change_fails_naming_the_stage(project: Path) -> None:
    (project / "src" / "train.py").write_text("open('metrics.json', 'w').write('{\"auc\": 0.8}')\n")
    (project / "params.yaml").write_text("train:\n  epochs: 3\n")
    checked = _check(project)
    assert checked.returncode == 1
    assert (
        "dvc.lock is stale for stage 'train': src (modified); params.yaml: train (modified)" in checked.stderr
    )
    assert "dvc.lock is stale for stage 'prepare': src (modified)" in checked.stderr
    assert "make repro" in checked.stderr  # says how to fix it


def test_a_changed_command_fails(project: Path) -> None:
    pipeline = yaml.safe_load((project / "dvc.yaml").read_text())
    pipeline["stages"]["train"]["cmd"] = "python src/train.py --fast"
    (project / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    checked = _check(project)
    assert checked.returncode == 1
    assert "stage 'train': command changed" in checked.stderr
    assert "stage 'prepare'" not in checked.stderr


def test_record_writes_the_tree_into_the_lock_without_running(project: Path) -> None:
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    (project / "params.yaml").write_text("train:\n  epochs: 3\n")
    (project / "metrics.json").unlink()  # a stage that ran would write it again
    recorded = _check(project, "--record")
    assert recorded.returncode == 0, recorded.stderr
    assert "recorded the tree for train" in recorded.stdout
    assert not (project / "metrics.json").exists()
    updated = yaml.safe_load((project / "dvc.lock").read_text())
    assert updated["stages"]["train"]["params"]["params.yaml"] == {"train": {"epochs": 3}}
    assert updated["stages"]["train"]["outs"] == lock["stages"]["train"]["outs"]  # the outputs as they were
    assert _check(project).returncode == 0
