"""One BLAS thread while an engine works on a series.

The engines multiply small matrices (hundreds of rows by tens of columns). OpenBLAS splits even those over all
cores; on a busy machine the threads wait for each other and a 0.2 ms product takes 20 ms. Workers of the process
pool are already started with one BLAS thread (backends._WORKER_ENV); `one_blas_thread` gives the in-process path
(n_jobs 1) the same, and restores the previous setting afterwards. Without numpy's bundled OpenBLAS it does nothing.
"""

from __future__ import annotations

import ctypes
import re
from contextlib import contextmanager
from typing import Iterator

_API: tuple | None = None


def _api() -> tuple | None:
    global _API
    if _API is None:
        _API = ()
        try:
            with open("/proc/self/maps") as f:
                libs = sorted(set(re.findall(r"(/\S*openblas\S*\.so\S*)", f.read())))
            for path in libs:
                lib = ctypes.CDLL(path)
                for prefix in ("scipy_openblas_", "openblas_"):
                    for suffix in ("64_", ""):
                        get = getattr(lib, f"{prefix}get_num_threads{suffix}", None)
                        put = getattr(lib, f"{prefix}set_num_threads{suffix}", None)
                        if get is not None and put is not None:
                            get.restype = ctypes.c_int
                            put.argtypes = [ctypes.c_int]
                            _API = (get, put)
                            return _API
        except OSError:
            pass
    return _API or None


@contextmanager
def one_blas_thread() -> Iterator[None]:
    api = _api()
    if api is None:
        yield
        return
    get, put = api
    before = get()
    if before != 1:
        put(1)
    try:
        yield
    finally:
        if before != 1:
            put(before)
