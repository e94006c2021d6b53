"""Every `wattproof ...` command the docs show exists, with the options they give it: each
command and subcommand named in README.md and docs/*.md is one the command line has, and
each --option written after it is one of that command's (a renamed or removed option fails
here, not in a technician's terminal). `wattproof verify` has a parser of its own
(wattproof/verify.py) and is checked against it."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from wattproof import cli, verify

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


def _sub(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser] | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return None


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {o for a in parser._actions for o in a.option_strings}


def test_every_documented_command_and_option_exists() -> None:
    top = cli.build_parser()
    wrong, checked = [], 0
    for name, line, words, options in _documented():
        if words[0] == "verify":
            parser = verify.build_parser()
            words = words[1:2] if words[1:2] and _sub(parser) else []
        else:
            parser = top
        for word in words:
            subs = _sub(parser)
            if subs is None:
                break  # a command's own arguments (a file name, a device id)
            if word not in subs:
                wrong.append(f"{name}:{line}: no command {' '.join(words)!r}")
                parser = None  # type: ignore[assignment]
                break
            parser = subs[word]
        if parser is None:
            continue
        if _sub(parser) is not None and options:
            wrong.append(f"{name}:{line}: {' '.join(words)!r} needs a subcommand before its options")
            continue
        missing = [o for o in options if o not in _options(parser)]
        if missing:
            wrong.append(f"{name}:{line}: {' '.join(words)} has no {', '.join(missing)}")
        checked += 1
    assert checked > 50, checked  # the docs' commands were found
    assert not wrong, "\n".join(wrong)
