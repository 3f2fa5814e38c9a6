"""Every command the README and docs/ show still exists, with the options they give it.

Operators copy these lines: `airflow dags backfill` (removed in Airflow 3) sat in the runbook for
weeks. Each documented `retention`, `airflow` and `dvc` command is resolved against the real
command tree (typer's click group, Airflow's and DVC's argparse parsers) down to its subcommand,
and every option it uses must be one that subcommand declares; `make` targets must exist, and a
`python benchmarks/...` or `scripts/...` line must name a file that exists and options its
`--help` lists. Placeholders (`ID...`, `D`, `path/to/x`) are positionals and are not checked.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer

from cli.main import app

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TOOLS = ("retention", "airflow", "dvc", "make", "python")
INLINE = re.compile(r"`((?:\.venv/bin/)?(?:retention|airflow|dvc) [^`]+)`")

# Airflow's and DVC's argparse trees: {"sub command path": [option strings]}, from a fresh process
# (importing Airflow reads and may write its configuration under AIRFLOW_HOME).
ARGPARSE_TREE = """
import argparse, json, sys
def walk(parser, path, out):
    options = [o for a in parser._actions for o in a.option_strings]
    out[" ".join(path)] = options
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                walk(sub, path + [name], out)
tree = {}
if sys.argv[1] == "airflow":
    from airflow.cli.cli_parser import get_parser
    walk(get_parser(), [], tree)
else:
    from dvc.cli.parser import get_main_parser
    walk(get_main_parser(), [], tree)
print(json.dumps(tree))
"""


def _logical_lines(text: str) -> list[tuple[str, bool]]:
    """Shell lines of the fenced code blocks (continuations joined), and inline command spans.

    Returns:
        (line, usage): usage is True for an inline span, whose `|` (`\\|` in tables) separates
        alternatives (`models list|gate --model M`), not a shell pipe.
    """
    lines: list[tuple[str, bool]] = []
    in_block, pending = False, ""
    for raw in text.splitlines():
        if raw.lstrip().startswith("```"):
            in_block, pending = not in_block, ""
            continue
        if in_block:
            line = pending + raw.strip()
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            pending = ""
            lines.append((line, False))
        else:
            lines.extend((span.replace("\\|", "|"), True) for span in INLINE.findall(raw))
    return lines


def _commands(line: str, usage: bool) -> list[list[str]]:
    """The tool invocations of one line: comments dropped, `&&`/`;`/`|` split, env prefixes skipped."""
    try:
        tokens = shlex.split(line.replace("|", " | ") if usage else line, comments=True)
    except ValueError:  # an unbalanced quote in prose-like text: not a command line
        return []
    separators = ("&&", "||", ";") if usage else ("&&", "||", ";", "|")
    found: list[list[str]] = []
    current: list[str] = []
    for token in [*tokens, "&&"]:
        if token in separators:
            while current and re.fullmatch(r"[A-Z_]+=\S*", current[0]):
                current = current[1:]  # VAR=value prefixes
            if current and Path(current[0]).name in TOOLS:
                found.append([Path(current[0]).name, *current[1:]])
            current = []
        else:
            current.append(token)
    return found


def documented_commands() -> list[tuple[str, list[str]]]:
    commands = []
    for document in DOCUMENTS:
        for line, usage in _logical_lines(document.read_text()):
            for command in _commands(line, usage):
                commands.append((f"{document.relative_to(ROOT)}: {' '.join(command)}", command))
    return commands


COMMANDS = documented_commands()


def _options(arguments: list[str]) -> list[str]:
    """The option names used (`--out=x` -> `--out`; `[--products` -> `--products`)."""
    names = []
    for argument in arguments:
        argument = argument.strip("[]")
        if argument.startswith("-") and argument != "-" and not re.fullmatch(r"-\d.*", argument):
            names.extend(argument.split("=", 1)[0].split("/"))  # --exclude-seen/--include-seen
    return names


def _click_options(command: Any) -> set[str]:
    return {o for p in command.params for o in (*p.opts, *p.secondary_opts)}


def _resolve_click(words: list[str], start: list[str] | None = None) -> tuple[list[str], set[str]]:
    """The `retention` subcommand the words lead to (from `start`), and the options usable on the way.

    An upper-case word where a subcommand would be (`retention COMMAND --help`) is a placeholder.
    """
    command: Any = typer.main.get_command(app)  # typer's own (vendored) click classes
    options = _click_options(command)
    path: list[str] = []
    for word in [*(start or []), *words]:
        if not hasattr(command, "commands") or word.isupper():
            break  # a leaf command (the rest are its arguments) or a placeholder
        sub = command.commands.get(word)
        assert sub is not None, f"`retention {' '.join([*path, word])}` is not a command"
        command, path = sub, [*path, word]
        options |= _click_options(command)
    return path, options | {"--help"}


def _check_retention(arguments: list[str]) -> None:
    """Resolve a `retention` usage line, alternatives (`|`) included, and check its options.

    After a `|`, a word that is a sibling subcommand starts another command of the same group
    (`models list | gate --model M`); anything else continues the previous one (`--model return |
    recommender [--as-of D]`: a value alternative).
    """
    segments: list[list[str]] = [[]]
    for argument in arguments:
        if argument == "|":
            segments.append([])
        else:
            segments[-1].append(argument)
    path: list[str] = []
    options: set[str] = set()
    for number, segment in enumerate(segments):
        words = [w for w in segment if not w.startswith(("-", "["))]
        parent = path[:-1]
        if number == 0:
            path, options = _resolve_click(words)
        elif words and _is_subcommand(parent, words[0]):
            path, options = _resolve_click(words, parent)
        unknown = [o for o in _options(segment) if o not in options]
        assert not unknown, f"`retention {' '.join(path)}` has no option {unknown}; it has {sorted(options)}"


def _is_subcommand(parent: list[str], word: str) -> bool:
    command: Any = typer.main.get_command(app)
    for name in parent:
        command = command.commands[name]
    return hasattr(command, "commands") and word in command.commands


def _resolve_argparse(tree: dict[str, list[str]], tool: str, arguments: list[str]) -> tuple[str, set[str]]:
    """The subcommand of an argparse tree the words lead to, and its options."""
    path: list[str] = []
    for word in (a for a in arguments if not a.startswith("-")):
        prefix = " ".join(path)
        children = {
            key.split(" ")[len(path)]
            for key in tree
            if key and len(key.split(" ")) == len(path) + 1 and key.startswith(f"{prefix} ".lstrip())
        }
        if not children:
            break  # a leaf command: the rest are its arguments
        assert word in children, f"`{tool} {' '.join([*path, word])}` is not a command"
        path.append(word)
    return " ".join(path), set(tree[" ".join(path)])


@pytest.fixture(scope="module")
def argparse_trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, list[str]]]:
    home = tmp_path_factory.mktemp("airflow")
    env = {"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "PATH": "/usr/bin:/bin"}
    trees = {}
    for tool in ("airflow", "dvc"):
        out = subprocess.run(
            [sys.executable, "-c", ARGPARSE_TREE, tool], capture_output=True, text=True, env=env, cwd=ROOT
        )
        assert out.returncode == 0, out.stderr[-2000:]
        trees[tool] = json.loads(out.stdout.strip().splitlines()[-1])
    return trees


def test_the_documents_show_commands_of_every_tool() -> None:
    tools = {command[0] for _, command in COMMANDS}
    assert {"retention", "airflow", "dvc", "make"} <= tools, tools  # the parser finds them at all


@pytest.mark.parametrize("command", [c for _, c in COMMANDS], ids=[i for i, _ in COMMANDS])
def test_documented_command_exists_with_its_options(
    command: list[str], argparse_trees: dict[str, dict[str, list[str]]]
) -> None:
    tool, arguments = command[0], command[1:]
    if tool == "retention":
        _check_retention(arguments)
        return
    if tool in ("airflow", "dvc"):
        arguments = [a for a in arguments if a != "|"]  # usage alternatives are not used there
    if tool in ("airflow", "dvc"):
        path_text, options = _resolve_argparse(argparse_trees[tool], tool, arguments)
        where = f"{tool} {path_text}"
    elif tool == "make":
        targets = re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), re.MULTILINE)
        for target in (a for a in arguments if not a.startswith("-") and "=" not in a):
            assert target in targets, f"`make {target}`: no such target in the Makefile"
        return
    else:  # python SCRIPT [options]
        scripts = [a for a in arguments if a.endswith(".py")]
        if not scripts or not scripts[0].startswith(("benchmarks/", "scripts/")):
            return  # `python -m ...` or an example snippet
        script = ROOT / scripts[0]
        assert script.is_file(), f"{scripts[0]} does not exist"
        shown = subprocess.run(
            [sys.executable, str(script), "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120
        )
        assert shown.returncode == 0, shown.stderr[-2000:]
        options = set(re.findall(r"--[\w-]+", shown.stdout))
        where = scripts[0]
    unknown = [o for o in _options(arguments) if o not in options]
    assert not unknown, f"`{where}` has no option {unknown}; it has {sorted(options)}"
