"""Letting native threads finish their Python callbacks before the interpreter exits.

Temporal's client (Rust, on tokio threads) and mini-racer (V8's thread) hand results to asyncio
from threads of their own: such a thread takes the GIL, calls ``loop.call_soon_threadsafe`` and
releases the GIL. That call writes to the loop's self-pipe with the GIL released, which wakes
the loop; if the program then runs to its end before the native thread has taken the GIL back,
CPython 3.11 finalizes, deletes that thread's state and kills the thread as it retakes the GIL,
and the thread's GIL guard, unwinding, releases a state that is no longer current: "Fatal
Python error: PyGILState_Release: thread state ... must be current when releasing", an abort
after all the work was done (seen in about a third of `pat plugin install` runs; the same
race as temporalio/sdk-python#300).

A thread in that window is running Python code, so it has a Python frame. Waiting, with the
GIL released, until no thread unknown to ``threading`` has one closes the window."""

from __future__ import annotations

import sys
import threading
import time


def _native_threads_in_python() -> list[int]:
    """Ids of threads not started by ``threading`` that are running Python code now."""
    known = {thread.ident for thread in threading.enumerate()
             if not isinstance(thread, threading._DummyThread)}
    # sys._current_frames is CPython's view of every thread state that has a frame: the one
    # way to see native threads that entered Python through PyGILState_Ensure.
    return [ident for ident in sys._current_frames() if ident not in known]


def let_native_callbacks_finish(timeout: float = 5.0) -> bool:
    """Wait until no native thread is inside a Python callback, at most ``timeout`` seconds;
    whether none is. Call it once the work is done, before the interpreter finalizes."""
    deadline = time.monotonic() + timeout
    while _native_threads_in_python():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)  # releases the GIL, which those threads are waiting for
    return True
