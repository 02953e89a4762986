"""`python -m forecast` and the `forecast` console script.

The script's entry point is `main` here, not the typer app in cli.py: multiprocessing's spawn runs the main script
again in every worker it starts, and a script that imported forecast.cli would make each worker import typer and
rich (about 0.1 s of its start) for nothing. Importing this module imports nothing else of forecast.
"""


def main() -> None:
    try:
        from .cli import app

        app(prog_name="forecast")
    except KeyboardInterrupt:  # Ctrl-C while Python is still importing: nothing started, nothing written
        import sys

        from .errors import EXIT_INTERRUPTED

        print("Interrupted.", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()
