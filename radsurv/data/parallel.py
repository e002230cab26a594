"""Map a function over the cases of a dataset, in order, in this process or a process pool.

``radsurv manifest --jobs N`` and ``radsurv check --jobs N`` use :func:`map_ordered`: the
results come back in input order, identical to ``jobs=1``, and progress is reported through a
callback as each result arrives.
"""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from radsurv.errors import ConfigError

T = TypeVar("T")
R = TypeVar("R")


#: Modules the fork server imports once, so that workers start warm (pandas, h5py, the formats).
_PRELOAD = ["radsurv.data.manifest", "radsurv.data.check"]


def _pool(jobs: int) -> cf.ProcessPoolExecutor:
    import multiprocessing as mp

    methods = mp.get_all_start_methods()
    # never fork: the parent may run threads (ITK) that a forked child would inherit
    method = "forkserver" if "forkserver" in methods else "spawn"
    ctx = mp.get_context(method)
    if method == "forkserver":
        # takes effect when this process starts its fork server (once); a server started
        # earlier (e.g. by the feature runner) serves as it is
        ctx.set_forkserver_preload(_PRELOAD)
    return cf.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx)


def check_jobs(jobs: int) -> int:
    """Validate a ``--jobs`` value (a positive integer)."""
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ConfigError(f"--jobs {jobs!r}: give a positive number of worker processes")
    return jobs


def map_ordered(
    fn: Callable[[T], R],
    items: Sequence[T],
    jobs: int = 1,
    chunksize: int | None = None,
) -> Iterator[R]:
    """Yield ``fn(item)`` for each item, in input order.

    Parameters
    ----------
    fn
        A module-level function (picklable) when ``jobs > 1``; it should catch the errors of
        one item itself (a batch records a failing case and goes on): an exception it raises
        ends the run, as it would with ``jobs=1``.
    items
        Picklable arguments, one per call.
    jobs
        1 runs in this process; more uses a process pool of that many workers (never more
        workers than items).
    chunksize
        Items sent to a worker at a time (default: about 4 chunks per worker, at most 16).
    """
    check_jobs(jobs)
    if jobs == 1 or len(items) <= 1:
        for item in items:
            yield fn(item)
        return
    workers = min(jobs, len(items))
    size = chunksize or max(1, min(16, len(items) // (4 * workers)))
    with _pool(workers) as pool:
        yield from pool.map(fn, items, chunksize=size)
