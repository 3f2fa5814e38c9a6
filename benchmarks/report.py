"""Writing a benchmark's results: the JSON and its Markdown rendering side by side, the Markdown echoed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_report(stem: Path, report: dict[str, Any], markdown: str) -> None:
    """`stem`.json and `stem`.md (folders created), the Markdown printed with where both went."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown)
    print(markdown)
    print(f"written: {stem.with_suffix('.json')}, {stem.with_suffix('.md')}")
