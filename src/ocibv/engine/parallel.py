"""Bounded parallel map for chunk work (hashing, zstd and file I/O release the GIL)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

QUEUE_DEPTH = 2
"""Items submitted per thread ahead of the consumer: bounds memory to a few items per thread."""


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of ``size`` (the last may be shorter), consumed lazily.

    Chunk work is submitted in batches: a future per 256 KiB chunk costs more Python time
    (held GIL) than the chunk's hashing does.
    """
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _pool(threads: int) -> ThreadPoolExecutor:
    """The process's pool of ``threads`` threads, made on first use and kept: starting eight
    threads for every backup costs more than a small INCREMENTAL's hashing on a loaded
    machine. Callers share it (their items interleave); ``fn`` never waits for another
    item, so sharing cannot deadlock."""
    with _pools_lock:
        pool = _pools.get(threads)
        if pool is None:
            pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ocibv-chunk")
            _pools[threads] = pool
        return pool


def bounded_map(fn: Callable[[T], R], items: Iterable[T], threads: int) -> Iterator[R]:
    """``fn`` over ``items`` on ``threads`` threads, yielding results as they complete (not
    in input order), with at most ``threads * QUEUE_DEPTH`` items in flight; ``items`` is
    consumed lazily, so memory does not depend on how many there are.

    The first exception raised by ``fn`` is re-raised to the consumer; items not yet started
    are cancelled and running ones finish before the exception propagates.
    """
    threads = max(1, threads)
    depth = threads * QUEUE_DEPTH
    pool = _pool(threads)
    running: set[Future[R]] = set()
    try:
        for item in items:
            running.add(pool.submit(fn, item))
            if len(running) >= depth:
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        while running:
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
    finally:
        for future in running:
            future.cancel()
        wait(running)  # what already runs finishes before an exception propagates
