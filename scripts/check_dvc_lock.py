"""Fail when dvc.lock is stale for the code and parameters in the tree (run by `make lint`).

A stage is stale when a source dependency (a dep that no stage produces: code, expectations), one
of its params or its command differs from what dvc.lock records, or when dvc.yaml declares a dep
that dvc.lock lacks. Outputs are not compared: they are what `dvc repro` writes (`make repro`), not
what CI can afford to run. The check reads hashes only (seconds).

`--record` writes the tree's deps, params and command into dvc.lock without running anything
(`dvc commit` without the outputs): for a change that cannot alter the reports, such as a
refactor; after any other change, run `make repro` and commit dvc.lock with reports/.

Usage: python scripts/check_dvc_lock.py [--root DIR] [--record]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dvc.repo import Repo  # type: ignore[import-untyped]
from dvc.stage import PipelineStage  # type: ignore[import-untyped]


def _changes(status: dict[str, object]) -> list[str]:
    """`path (modified)` or `params.yaml: section (modified)` for each entry of a dependency's status."""
    shown = []
    for path, change in status.items():
        if isinstance(change, dict):
            shown += [f"{path}: {key} ({what})" for key, what in change.items()]
        else:
            shown.append(f"{path} ({change})")
    return shown


def stale_stages(repo: Repo) -> dict[str, list[str]]:
    """What differs between dvc.lock and the tree, per stage (stages that match are left out).

    Returns:
        {stage name: ["training (modified)", "params.yaml: return (new)", "command changed", ...]}.
    """
    stages = [s for s in repo.index.stages if isinstance(s, PipelineStage)]
    produced = {out.def_path for stage in stages for out in stage.outs}
    stale: dict[str, list[str]] = {}
    for stage in stages:
        found = []
        for dep in stage.deps:
            if dep.def_path in produced:  # another stage's output: its content is `dvc repro`'s business
                if not dep.hash_info:
                    found.append(f"{dep.def_path} (not in dvc.lock)")
                continue
            found += _changes(dep.status())
        if stage.cmd_changed:
            found.append("command changed")
        if found:
            stale[stage.name] = found
    return stale


def record(repo: Repo, names: list[str]) -> None:
    """Write the tree's source deps, params and command of the named stages into dvc.lock (the
    hashes of outputs, and of deps that are other stages' outputs, kept as they were)."""
    stages = [s for s in repo.index.stages if isinstance(s, PipelineStage)]
    produced = {out.def_path for stage in stages for out in stage.outs}
    for stage in stages:
        if stage.name in names:
            for dep in stage.deps:
                if dep.def_path not in produced:
                    dep.save()
            stage.dvcfile.dump(stage, update_pipeline=False)


def main(argv: list[str] | None = None) -> int:
    """Print the stale stages and return 1, or return 0 when dvc.lock matches the tree."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--record", action="store_true", help="record the tree in dvc.lock instead")
    args = parser.parse_args(argv)
    with Repo(str(args.root)) as repo:
        stale = stale_stages(repo)
        if stale and args.record:
            record(repo, list(stale))
            print(f"dvc.lock: recorded the tree for {', '.join(stale)} (outputs not rerun)")
            return 0
    if not stale:
        print("dvc.lock matches the tree")
        return 0
    for name, found in stale.items():
        print(f"dvc.lock is stale for stage '{name}': {'; '.join(found)}", file=sys.stderr)
    print(
        "run `make repro` and commit dvc.lock with reports/ (or, for a change that cannot alter "
        "the reports, `python scripts/check_dvc_lock.py --record`)",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
