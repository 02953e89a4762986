"""docs/cli.md, the command-line reference, made from what it documents: each command's --help as a terminal of 80
columns shows it, the job file's keys (forecast/options.py) and the exit codes (forecast/errors.py).

`python -m forecast.docs` writes the page; tests/test_docs.py fails when the page is stale or an option is missing
from it. By hand, the page would drift from the options the day one is added.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .errors import EXIT_CODES
from .options import GROUPS, OPTIONS

PAGE = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
WRITE_COMMAND = "python -m forecast.docs"
# The width --help is wrapped to in a pipe or a log, and the README's promise: every line fits.
WIDTH = 80

_KIND_WORDS = {"int": "integer", "float": "number", "str": "string", "bool": "true or false", "path": "path", "table": "path or URI",
               "names": "name or list of names", "numbers": "number or list of numbers"}


def command_help(name: str | None = None) -> str:
    """The --help text of `forecast` (name None) or of one of its commands, at WIDTH columns."""
    import typer

    from .cli import app

    group = typer.main.get_command(app)
    # click wraps a terminal of WIDTH columns at WIDTH - 2; a width given outright is taken as it is
    width = WIDTH - 2
    root = group.context_class(group, info_name="forecast", terminal_width=width, max_content_width=width)
    if name is None:
        return group.get_help(root)
    command = group.commands[name]
    context = command.context_class(command, info_name=name, parent=root, terminal_width=width,
                                    max_content_width=width)
    return command.get_help(context)


def command_names() -> list[str]:
    """The commands, in the order the app declares them."""
    import typer

    from .cli import app

    return list(typer.main.get_command(app).commands)


def _job_file_section() -> list[str]:
    lines = ["## Job files", "",
             "`--config job.toml` (run and backtest) reads settings from a TOML file with these tables and keys. "
             "A flag on the command line wins over its environment variable, and the variable over the job file. "
             "Relative paths are taken from the job file's folder. A key that only the other command takes is left "
             "for it, so one file can serve a nightly run and its backtest.", ""]
    for group in GROUPS:
        lines += [f"### [{group}]", "", "| key | option | value | commands |", "|---|---|---|---|"]
        for option in OPTIONS:
            if option.group != group or option.job_key is None:
                continue
            value = " \\| ".join(option.kind) if isinstance(option.kind, tuple) else _KIND_WORDS[option.kind]
            lines.append(f"| `{option.job_key}` | `{option.flag}` | {value} | {', '.join(option.commands)} |")
        lines.append("")
    return lines


def _exit_codes_section() -> list[str]:
    lines = ["## Exit codes", "", "| code | meaning |", "|---|---|"]
    lines += [f"| {code} | {meaning} |" for code, meaning in EXIT_CODES.items()]
    return lines + [""]


def render() -> str:
    """The whole page."""
    names = command_names()
    lines = ["# Command-line reference", "",
             f"<!-- Made by `{WRITE_COMMAND}` from the commands' --help, forecast/options.py and "
             "forecast/errors.py: edit those, not this page. -->", "",
             "Each command's `--help` as it prints at 80 columns, then the [job file's keys](#job-files) and the "
             "[exit codes](#exit-codes).", "",
             "Commands: " + ", ".join(f"[`{name}`](#forecast-{name})" for name in names) + ".", "",
             "## forecast", "", "```text", command_help().rstrip("\n"), "```", ""]
    for name in names:
        lines += [f"## forecast {name}", "", "```text", command_help(name).rstrip("\n"), "```", ""]
    lines += _job_file_section() + _exit_codes_section()
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Write the page (or with --check, exit 1 when it is stale)."""
    argv = sys.argv[1:] if argv is None else argv
    text = render()
    if "--check" in argv:
        if not PAGE.exists() or PAGE.read_text(encoding="utf-8") != text:
            print(f"{PAGE} is stale: run `{WRITE_COMMAND}`", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text, encoding="utf-8")
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
