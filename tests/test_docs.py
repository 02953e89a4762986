"""docs/cli.md is made from the commands' --help, the option declarations and the exit codes: it must be current,
and every option must be on it with a help of its own."""

import re

import typer
from typer.testing import CliRunner

from forecast.cli import app
from forecast.docs import PAGE, WRITE_COMMAND, render
from forecast.errors import EXIT_CODES
from forecast.options import OPTIONS


def test_the_cli_reference_is_current():
    assert PAGE.read_text(encoding="utf-8") == render(), f"docs/cli.md is stale: run `{WRITE_COMMAND}`"


def test_every_option_of_every_command_is_documented():
    page = PAGE.read_text(encoding="utf-8")
    group = typer.main.get_command(app)
    for name, command in group.commands.items():
        for param in command.params:
            flags = [opt for opt in param.opts + param.secondary_opts if opt.startswith("-")]
            assert param.help, f"{name} {flags or param.name} has no help text: give it one in forecast/options.py"
            for flag in flags:
                assert flag in page, f"{name} {flag} is not in docs/cli.md: run `{WRITE_COMMAND}`"
    for option in OPTIONS:
        if option.job_key is not None:
            assert f"| `{option.job_key}` | `{option.flag}` |" in page, (option.name, WRITE_COMMAND)


def test_exit_codes_are_declared_once_and_shown_by_help_and_the_page():
    page = PAGE.read_text(encoding="utf-8")
    text = " ".join(CliRunner().invoke(app, ["run", "--help"]).output.split())
    for code, meaning in EXIT_CODES.items():
        assert f"| {code} | {meaning} |" in page
        assert f"{code} {meaning}" in text


def _anchor(heading: str) -> str:
    """The anchor a Markdown renderer gives a heading, as GitHub makes them."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_link_between_the_docs_points_at_a_page_and_heading_that_exist():
    root = PAGE.parent.parent
    pages = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    anchors = {page.resolve(): {_anchor(h) for h in re.findall(r"^#+ (.+)$", page.read_text(encoding="utf-8"), re.M)}
               for page in pages}
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):
                continue  # a web address
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page.resolve()
            assert linked.exists(), f"{page.name}: {target}"
            if anchor and linked in anchors:
                assert anchor in anchors[linked], f"{page.name}: {target}"
