"""Progress bars only where a person watches them.

A tqdm bar redrawn into a file (a grid cell's log.txt, the demo's log, CI) leaves hundreds of
carriage-return frames per epoch. Training prints one line per epoch anyway, so the live bar is
kept for terminals and Jupyter kernels and left out everywhere else.
"""
from __future__ import annotations

import os
import sys


def live() -> bool:
    """LION_KIT_PROGRESS=0 / 1 forces it off / on; else on in a Jupyter kernel or on a terminal."""
    forced = os.environ.get("LION_KIT_PROGRESS")
    if forced in ("0", "1"):
        return forced == "1"
    if "ipykernel" in sys.modules:
        return True
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def bar(iterable, off: bool = False, **kw):
    """tqdm.auto over `iterable`, disabled where it is not `live()` (or when `off`)."""
    from tqdm.auto import tqdm
    return tqdm(iterable, disable=off or not live(), **kw)
