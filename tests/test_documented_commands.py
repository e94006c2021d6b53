"""Every `wattproof ...` command the docs show exists, with the options they give it: each
command and subcommand named in README.md and docs/*.md is one the command line has (one
click group, wattproof/cli/), each --option written after it is one of that command's (a
renamed or removed option fails here, not in a technician's terminal), and each documented
command's --help runs and names those options."""

from __future__ import annotations

import re
from pathlib import Path

import click
from click.testing import CliRunner

from wattproof import cli

ROOT = Path(__file__).resolve().parent.parent
# A command where one is written: at the start of a line of a code block (after a shell
# prompt, a `sudo -u ...` or `$(`), or at the start of inline code in prose.
COMMAND = re.compile(r"(?:^\s*(?:\$ )?|\$\(|`)wattproof((?: [a-z][a-z0-9-]*)+)([^`|;&#\n$)]*)")


def _documented() -> list[tuple[str, int, list[str], list[str]]]:
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        in_code = False
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if line.lstrip().startswith("```"):
                in_code = not in_code
                continue
            for m in COMMAND.finditer(line):
                if not in_code and not m[0].startswith("`"):
                    continue
                words, rest = m[1].split(), m[2]
                options = re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", rest)
                found.append((path.name, n, words, options))
    return found


def test_every_documented_command_and_option_exists() -> None:
    wrong, checked, helped = [], 0, set()
    runner = CliRunner()
    for name, line, words, options in _documented():
        command: click.Command = cli.cli
        path: list[str] = []
        for word in words:
            if not isinstance(command, click.Group):
                break  # a command's own arguments (a file name, a device id)
            if word not in command.commands:
                wrong.append(f"{name}:{line}: no command {' '.join(words)!r}")
                path = []
                break
            command = command.commands[word]
            path.append(word)
        if not path:
            continue
        if isinstance(command, click.Group) and options:
            wrong.append(f"{name}:{line}: {' '.join(words)!r} needs a subcommand before its options")
            continue
        known = {o for p in command.params for o in p.opts}
        missing = [o for o in options if o not in known]
        if missing:
            wrong.append(f"{name}:{line}: {' '.join(path)} has no {', '.join(missing)}")
        checked += 1
        if tuple(path) not in helped:  # each documented command's own help, as a person reads it
            helped.add(tuple(path))
            shown = runner.invoke(cli.cli, [*path, "--help"], prog_name="wattproof")
            if shown.exit_code != 0 or "Usage: wattproof " + " ".join(path) not in shown.output:
                wrong.append(f"{name}:{line}: wattproof {' '.join(path)} --help: {shown.output[-300:]}")
            absent = [o for o in options if o not in shown.output]
            if absent:
                wrong.append(f"{name}:{line}: wattproof {' '.join(path)} --help does not show {', '.join(absent)}")
    assert checked > 50 and len(helped) > 30, (checked, len(helped))  # the docs' commands were found
    assert not wrong, "\n".join(wrong)
