"""The library's exceptions, and the exit codes: the CLI turns each exception into one `Error: ...` line and its
exit code. The codes are declared here once; the runner, the CLI's help and docs/cli.md read them."""

from __future__ import annotations

from typing import Literal

ExitCode = Literal[0, 1, 2, 3, 75, 130]

EXIT_OK: ExitCode = 0
EXIT_ERROR: ExitCode = 1
EXIT_USAGE: ExitCode = 2
EXIT_SOME_FAILED: ExitCode = 3
# sysexits' EX_TEMPFAIL: a temporary failure, so a scheduler retries
EXIT_STOPPED: ExitCode = 75
# 128 + SIGINT, as a shell reports a job stopped by Ctrl-C
EXIT_INTERRUPTED: ExitCode = 130

# Each code's meaning, in the order a person looks them up: success, then partial success, then the failures.
EXIT_CODES: dict[ExitCode, str] = {
    EXIT_OK: "every series forecast (or failures within --max-failed-frac)",
    EXIT_SOME_FAILED: "some series failed, outputs written",
    EXIT_ERROR: "input or configuration error, bad job file, or another run holds --out: nothing written; or "
                "--to-db's tables could not be written (they keep their previous rows)",
    EXIT_USAGE: "usage error (unknown option, missing --horizon, ...)",
    EXIT_STOPPED: "stopped by the machine or cluster (a full disk, a lost Dask scheduler), finished series kept: "
                  "run again with --resume",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C or SIGTERM), finished series written: --resume finishes the run",
}


def exit_codes_text() -> str:
    """The exit codes as one paragraph, for a command's --help."""
    return "Exit codes: " + "; ".join(f"{code} {meaning}" for code, meaning in EXIT_CODES.items()) + "."


class ForecastError(Exception):
    """Base class of every error the library raises on purpose."""

    exit_code: ExitCode = EXIT_ERROR


class InputError(ForecastError):
    """The input table cannot be used: missing file, bad column, bad value."""


class ConfigError(ForecastError):
    """An option has a value that cannot work, or options contradict each other."""


class OutputExistsError(ConfigError):
    """The output directory already holds a finished run."""


class OutputError(ForecastError):
    """An output beyond the run's files could not be written (--to-db's tables): the files are, the tables keep
    their previous rows, and --resume writes them."""


class BackendError(ForecastError):
    """The executor could not run the work at all (workers cannot start, cluster unreachable)."""


class RunLockedError(ForecastError):
    """Another live run is writing into the output directory."""


class BackendLostError(BackendError):
    """The executor failed in the middle of the work (the Dask scheduler or the cluster was lost)."""


class RunStoppedError(ForecastError):
    """The machine or cluster stopped a run midway (a full disk, a lost Dask scheduler): the series it finished
    are kept in its part files, and running again with --resume finishes the job. An exit code of its own
    (75, sysexits' EX_TEMPFAIL: a temporary failure, retry) tells a scheduler to retry."""

    exit_code: ExitCode = EXIT_STOPPED
