"""The README stays true: help blocks, preset table, every option and preset named.

Generated parts of README.md (the ``--help`` blocks and the preset table)
can be refreshed with::

    CONVFILTER_UPDATE_README=1 python3 -m pytest tests/test_docs.py
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from convfilter import cli, encoding, engine, pipeline
from convfilter.kernels import PARAMETRIC_PRESETS, PRESETS

README = Path(__file__).resolve().parent.parent / "README.md"
UPDATE = os.environ.get("CONVFILTER_UPDATE_README") == "1"


def help_text(command: str | None) -> str:
    args = ["--help"] if command is None else [command, "--help"]
    result = CliRunner().invoke(cli.main, args, prog_name="convfilter")
    assert result.exit_code == 0, result.output
    return result.output.rstrip() + "\n"


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


def expected_blocks() -> dict[str, str]:
    blocks = {"help:main": "```\n" + help_text(None) + "```\n"}
    for name in cli.main.commands:
        blocks[f"help:{name}"] = "```\n" + help_text(name) + "```\n"
    blocks["presets"] = preset_table()
    return blocks


def generated_parts(text: str) -> dict[str, str]:
    pattern = re.compile(r"<!-- (help:\w+|presets) -->\n(.*?)<!-- /(?:help|presets) -->", re.S)
    return {m.group(1): m.group(2) for m in pattern.finditer(text)}


def refresh(text: str, blocks: dict[str, str]) -> str:
    for key, body in blocks.items():
        closing = "presets" if key == "presets" else "help"
        block = f"<!-- {key} -->\n{body}<!-- /{closing} -->"
        pattern = re.compile(rf"<!-- {re.escape(key)} -->\n.*?<!-- /{closing} -->", re.S)
        if pattern.search(text):
            text = pattern.sub(lambda _m: block, text)
        else:  # a new command: add its block after the last help block
            last = list(re.finditer(r"<!-- /help -->", text))[-1]
            text = text[: last.end()] + "\n\n" + block + text[last.end() :]
    return text


def test_generated_parts_of_the_readme_are_current():
    text = README.read_text(encoding="utf-8")
    blocks = expected_blocks()
    if UPDATE:
        README.write_text(refresh(text, blocks), encoding="utf-8")
        text = README.read_text(encoding="utf-8")
    found = generated_parts(text)
    stale = [key for key, body in blocks.items() if found.get(key) != body]
    assert not stale, (
        f"README.md blocks out of date: {stale}; refresh with "
        "CONVFILTER_UPDATE_README=1 python3 -m pytest tests/test_docs.py"
    )


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
def test_every_option_is_documented_outside_the_help_blocks(command, option):
    text = README.read_text(encoding="utf-8")
    prose = re.sub(r"<!-- help:\w+ -->.*?<!-- /help -->", "", text, flags=re.S)
    assert re.search(rf"`[^`]*{re.escape(option)}\b", prose), (
        f"{command} {option} is not shown with an example in README.md"
    )


@pytest.mark.parametrize("name", [p.name for p in PRESETS.values()] + list(PARAMETRIC_PRESETS))
def test_every_preset_is_in_the_readme(name):
    assert f"`{name}" in README.read_text(encoding="utf-8")


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
