"""A web middleware: while the database is unreachable, requests get 503 with Retry-After, not 500.

Telegram (and Zalo) deliver a webhook again until it is acknowledged, and nothing of an event that
failed to commit was stored or sent: so 503 means "try again soon" and loses nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from storage.retry import RETRY_AFTER_SECONDS, is_unavailable

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def database_unavailable(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception as error:
        if not is_unavailable(error):
            raise
        log.warning("%s %s: database unavailable (%s); answered 503", request.method, request.path, error)
        return web.json_response(
            {"status": "database unavailable, retry"}, status=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)}
        )
