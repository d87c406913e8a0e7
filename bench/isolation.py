"""One benchmark in a fresh interpreter."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any


def _call(target: str, args: tuple[Any, ...]) -> Any:
    module, name = target.rsplit(".", 1)
    logging.basicConfig(level=logging.ERROR)
    result = getattr(importlib.import_module(module), name)(*args)
    return asyncio.run(result) if inspect.iscoroutine(result) else result


def isolated(target: str, *args: Any) -> Any:
    """``target(*args)`` (a coroutine function is run to completion) in a fresh interpreter:
    what one benchmark leaves in a process (its heap, threads, sockets) must not weigh on
    the next one's figures."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(_call, target, args).result()
