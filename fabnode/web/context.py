"""What every request handler reaches: the desk, the `[web]` settings and the worker pool."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from fabnode.config.web import WebSettings
from fabnode.web.desk import NodeDesk

T = TypeVar("T")


class WebContext:
    """What every handler reaches through `self.settings["fabnode"]`: the desk, the limits, the pool."""

    def __init__(self, desk: NodeDesk, settings: WebSettings, pool: ThreadPoolExecutor) -> None:
        self.desk = desk
        self.web = settings
        self.pool = pool

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking call (the desk, preflight) on the worker pool, off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)
