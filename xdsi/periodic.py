"""A server's periodic job: a blocking function run in the thread pool every N seconds, for as long as the
server runs (the repository's recovery sweep, the imaging source's PACS watcher).

A run that raises is logged and the job goes on: the next run retries. Runs never overlap; the interval
is counted from the end of one run to the start of the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from starlette.concurrency import run_in_threadpool

__all__ = ["periodic"]


@contextlib.asynccontextmanager
async def periodic(job: Callable[[], object], *, interval: float, first_after: float, what: str,
                   logger: logging.Logger) -> AsyncIterator[None]:
    """Run ``job()`` ``first_after`` seconds from now, then every ``interval`` seconds, until the block exits.

    Use it in a Starlette lifespan: ``async with periodic(...): yield``. ``what`` names the job in the
    message logged (with the traceback, on ``logger``) when a run fails.
    """

    async def loop() -> None:
        await asyncio.sleep(first_after)
        while True:
            try:
                await run_in_threadpool(job)
            except Exception:  # keep going; the next run retries
                logger.exception("%s failed", what)
            await asyncio.sleep(interval)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
