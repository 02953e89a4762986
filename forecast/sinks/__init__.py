"""Where a run's results go besides its files: a database's tables (--to-db). A sink receives the finished
tables and writes them; it knows nothing of models, sources or workers. The run calls it after its files are
written.
"""

from .database import check_reachable, write_run

__all__ = ["check_reachable", "write_run"]
