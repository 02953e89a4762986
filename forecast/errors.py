"""The library's exceptions. The CLI turns each into one `Error: ...` line and an exit code."""


class ForecastError(Exception):
    """Base class of every error the library raises on purpose."""

    exit_code = 1


class InputError(ForecastError):
    """The input table cannot be used: missing file, bad column, bad value."""


class ConfigError(ForecastError):
    """An option has a value that cannot work, or options contradict each other."""


class OutputExistsError(ConfigError):
    """The output directory already holds a finished run."""


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

    exit_code = 75
