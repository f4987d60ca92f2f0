"""The documentation stays true: README.md (the front door) and the manual in docs/.

Checked here:

* the generated parts of docs/ are current, and nowhere else: every
  command's ``--help`` in docs/reference.md, the preset table in
  docs/kernels.md, and the border-mode table in docs/borders.md (copied from
  ``BorderMode`` in convfilter/options.py, where each mode is described once);
* every command-line option is shown with an example in docs/, outside the
  ``--help`` blocks, and every preset is named in docs/kernels.md;
* every relative link in README.md and docs/ leads to a file that exists,
  and every ``#anchor`` to a heading of the page it names;
* every page of docs/ is listed in docs/README.md and in README.md;
* the README's Quick start is two commands, the second the one CI runs.

Refresh the generated parts with::

    CONVFILTER_UPDATE_DOCS=1 python3 -m pytest tests/test_docs.py
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote

import click
import pytest
from click.testing import CliRunner

from convfilter import cli
from convfilter.kernels import PARAMETRIC_PRESETS, PRESETS
from convfilter.neighbourhood import FILTER_SPECS
from convfilter.options import BorderMode, FilterSettings

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
INDEX = DOCS / "README.md"
UPDATE = os.environ.get("CONVFILTER_UPDATE_DOCS") == "1"



def pages() -> list[Path]:
    """README.md and every page of docs/."""
    return [README, *sorted(DOCS.glob("*.md"))]


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


# --- generated parts ----------------------------------------------------------------------


def help_text(command: str | None) -> str:
    args = ["--help"] if command is None else [command, "--help"]
    result = CliRunner().invoke(cli.main, args, prog_name="convfilter")
    assert result.exit_code == 0, result.output
    return result.output.rstrip() + "\n"


def help_blocks() -> dict[str, str]:
    blocks = {"help:main": "```\n" + help_text(None) + "```\n"}
    for name in cli.main.commands:
        blocks[f"help:{name}"] = "```\n" + help_text(name) + "```\n"
    return blocks


def preset_table() -> str:
    lines = ["| name | size | scale | offset | Pillow | description |", "| --- | --- | --- | --- | --- | --- |"]
    for preset in PRESETS.values():
        size = f"{len(preset.grid)}x{len(preset.grid[0])}"
        pillow = f"`{preset.pillow_name}`" if preset.pillow_name else ""
        lines.append(
            f"| `{preset.name}` | {size} | {preset.scale:g} | {preset.offset:g} | {pillow} | {preset.description} |"
        )
    for usage, description in PARAMETRIC_PRESETS.values():
        lines.append(f"| `{usage}` | N x N | sum | 0 | | {description} |")
    return "\n".join(lines) + "\n"


def filter_table() -> str:
    lines = ["| spec | linear | Pillow | description |", "| --- | --- | --- | --- |"]
    for spec in FILTER_SPECS.values():
        pillow = f"`{spec.pillow}`" if spec.pillow else ""
        lines.append(f"| `{spec.usage}` | {'yes' if spec.linear else 'no'} | {pillow} | {spec.description} |")
    return "\n".join(lines) + "\n"


def border_table() -> str:
    """One row per ``BorderMode``, its description as written in options.py.

    A description that starts with the padded row (``a a a | a b c d | d d d:``)
    gets that row in code; ``|`` is escaped for the table.
    """
    default = next(f.default for f in dataclasses.fields(FilterSettings) if f.name == "border")
    lines = ["| mode | beyond the edges of `a b c d` |", "| --- | --- |"]
    for mode in BorderMode:
        padded = re.fullmatch(r"([^:]*\|[^:]*): (.*)", mode.description)
        text = f"`{padded.group(1)}`: {padded.group(2)}" if padded else mode.description
        name = f"`{mode.value}`" + (" (default)" if mode is default else "")
        lines.append(f"| {name} | {text.replace('|', chr(92) + '|')} |")
    return "\n".join(lines) + "\n"


#: The generated blocks of each page, by marker: ``<!-- KEY -->`` ... ``<!-- /KIND -->``.
GENERATED: dict[str, Callable[[], dict[str, str]]] = {
    "docs/reference.md": help_blocks,
    "docs/kernels.md": lambda: {"presets": preset_table(), "filters": filter_table()},
    "docs/borders.md": lambda: {"borders": border_table()},
}

BLOCK = re.compile(r"<!-- ((help|presets|filters|borders)(?::\w+)?) -->\n(.*?)<!-- /\2 -->", re.S)


def generated_parts(text: str) -> dict[str, str]:
    return {m.group(1): m.group(3) for m in BLOCK.finditer(text)}


def refresh(text: str, blocks: dict[str, str]) -> str:
    for key, body in blocks.items():
        kind = key.split(":")[0]
        block = f"<!-- {key} -->\n{body}<!-- /{kind} -->"
        pattern = re.compile(rf"<!-- {re.escape(key)} -->\n.*?<!-- /{kind} -->", re.S)
        if pattern.search(text):
            text = pattern.sub(lambda _m: block, text)
        elif kind == "help":  # a new command: its block goes after the last help block
            last = list(re.finditer(r"<!-- /help -->", text))[-1]
            text = text[: last.end()] + "\n\n" + block + text[last.end() :]
    return text


@pytest.mark.parametrize("page", pages(), ids=page_id)
def test_generated_parts_are_current(page):
    blocks = GENERATED.get(page_id(page), dict)()
    text = page.read_text(encoding="utf-8")
    if UPDATE and blocks:
        page.write_text(refresh(text, blocks), encoding="utf-8")
        text = page.read_text(encoding="utf-8")
    found = generated_parts(text)
    stale = sorted(key for key, body in blocks.items() if found.get(key) != body)
    assert not stale, (
        f"{page_id(page)} blocks out of date or missing: {stale}; refresh with "
        "CONVFILTER_UPDATE_DOCS=1 python3 -m pytest tests/test_docs.py"
    )
    misplaced = sorted(set(found) - set(blocks))
    assert not misplaced, f"{page_id(page)} has generated blocks that belong elsewhere or nowhere: {misplaced}"


# --- options and presets ------------------------------------------------------------------


def all_options() -> list[tuple[str, str]]:
    found = []
    for name, command in cli.main.commands.items():
        for param in command.params:
            if isinstance(param, click.Option):
                for opt in param.opts:
                    if opt.startswith("--") and opt != "--help":
                        found.append((name, opt))
    return found


@pytest.mark.parametrize("command, option", all_options())
def test_every_option_is_shown_in_the_docs_outside_the_help_blocks(command, option):
    prose = "\n".join(BLOCK.sub("", p.read_text(encoding="utf-8")) for p in sorted(DOCS.glob("*.md")))
    assert re.search(rf"`[^`]*{re.escape(option)}\b", prose), (
        f"{command} {option} is not shown with an example in docs/"
    )


@pytest.mark.parametrize("name", [p.name for p in PRESETS.values()] + list(PARAMETRIC_PRESETS) + list(FILTER_SPECS))
def test_every_preset_is_in_the_kernels_page(name):
    assert f"`{name}" in (DOCS / "kernels.md").read_text(encoding="utf-8")


# --- links --------------------------------------------------------------------------------

FENCED = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.M)


def without_code(text: str) -> str:
    return CODE_SPAN.sub("", FENCED.sub("", text))


def links(page: Path) -> list[str]:
    """The targets of the page's links and images, code left out."""
    return LINK.findall(without_code(page.read_text(encoding="utf-8")))


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the page's headings."""
    found, seen = set(), Counter()
    for heading in HEADING.findall(FENCED.sub("", page.read_text(encoding="utf-8"))):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(f"{slug}-{seen[slug]}" if seen[slug] else slug)
        seen[slug] += 1
    return found


def resolve(page: Path, target: str) -> tuple[Path, str]:
    path, _, anchor = target.partition("#")
    return ((page.parent / unquote(path)).resolve() if path else page), anchor


def is_external(target: str) -> bool:
    return re.match(r"[a-z][a-z0-9+.-]*:", target, re.I) is not None


@pytest.mark.parametrize("page", pages(), ids=page_id)
def test_every_relative_link_leads_somewhere(page):
    broken = []
    for target in links(page):
        if is_external(target):
            continue
        path, anchor = resolve(page, target)
        if not path.exists() or (anchor and path.suffix == ".md" and anchor not in anchors(path)):
            broken.append(target)
    assert not broken, f"{page_id(page)}: links to missing files or headings: {broken}"


@pytest.mark.parametrize("index", [INDEX, README], ids=page_id)
def test_every_docs_page_is_listed(index):
    linked = {resolve(index, t)[0] for t in links(index) if not is_external(t)}
    missing = [page_id(p) for p in sorted(DOCS.glob("*.md")) if p != index and p.resolve() not in linked]
    assert not missing, f"{page_id(index)} does not link to {missing}"


# --- Python examples ---------------------------------------------------------------------

FENCE_OPENING = re.compile(r"^```[ \t]*(\w*)", re.M)


@pytest.mark.parametrize("page", pages(), ids=page_id)
def test_every_python_example_runs_as_a_doctest(page):
    """Python examples are ```pycon blocks of >>> lines, which pytest runs (--doctest-glob);
    a ```python block would be read by people and by no test."""
    text = page.read_text(encoding="utf-8")
    kinds = set(FENCE_OPENING.findall(text))
    assert not kinds & {"python", "py", "python3"}, f"{page_id(page)}: write examples as ```pycon with >>>"
    for block in re.findall(r"^```pycon\n(.*?)^```", text, re.S | re.M):
        assert block.lstrip().startswith(">>> "), f"{page_id(page)}: a pycon block without >>>"
        assert block.endswith("\n\n"), f"{page_id(page)}: end a pycon block with a blank line (doctest)"
    config = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert "--doctest-glob=*.md" in config and '"docs"' in config and '"README.md"' in config


# --- the README's Quick start -------------------------------------------------------------


def test_quick_start_has_exactly_two_commands():
    text = README.read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert len(commands) == 2
    assert all(len(c.strip().splitlines()) == 1 for c in commands)
    assert "convfilter apply sample_images/" in commands[0]
    assert commands[1].strip() == "python3 -m pip install -e '.[test]' && python3 -m pytest"


def test_ci_runs_the_readme_test_command():
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert "README.md" in ci and "python3 -m venv" in ci
