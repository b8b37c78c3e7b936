"""The database being unreachable for a while (PostgreSQL restarting, connections cut, SQLite locked by
another process past its busy timeout) is an outage to wait out, not a bug: these helpers tell them apart."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy import exc as sa

log = logging.getLogger(__name__)

T = TypeVar("T")
RETRY_AFTER_SECONDS = 1  # what a webhook caller is told to wait


def is_unavailable(error: BaseException) -> bool:
    """True for a lost or refused connection, a server shutting down, a lock not granted in time."""
    if isinstance(error, sa.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, sa.OperationalError | sa.InterfaceError | sa.TimeoutError | ConnectionError | OSError)


async def while_unavailable(write: Callable[[], Awaitable[T]], what: str, max_pause: float = 10.0) -> T:
    """Run ``write`` again until the database takes it (for writes whose outcome is already known in
    memory, such as a message that was delivered); other errors are raised at once."""
    pause = 0.2
    while True:
        try:
            return await write()
        except Exception as error:
            if not is_unavailable(error):
                raise
            log.warning("database unavailable while %s (%s); retrying in %.1f s", what, type(error).__name__, pause)
        await asyncio.sleep(pause)
        pause = min(pause * 2, max_pause)
