"""Where a sweep's tasks run: in this process, a local process pool, or Ray (local or a cluster).
Each hands every task's records to ``on_result`` as they complete.
"""
from __future__ import annotations

import concurrent.futures as cf
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from typing import Callable

from analysis.worker import simulate_chunk
from hwsim.trace.errors import HwsimError


# --------------------------------------------------------------------------------------------
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent(parent: int) -> None:
    """Pool-worker initializer: a worker must not outlive the sweep that started it. Forked
    workers share the parent's ``.lock``, so a worker left running after a ``kill -9`` of the
    sweep would keep the lock and make the re-run (the resume) fail as "another sweep is writing".
    On Linux the kernel sends the worker SIGKILL when its parent dies (``PR_SET_PDEATHSIG``);
    everywhere a watchdog thread also exits the worker once its parent is gone."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    if os.getppid() != parent:  # the parent died before the initializer ran
        os._exit(1)
    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


def run_local(tasks: list[dict], workers: int, on_result: Callable[[list[dict]], None]) -> None:
    if workers <= 1:
        for task in tasks:
            on_result(simulate_chunk(task))
        return
    ctx = multiprocessing.get_context("fork") if "fork" in multiprocessing.get_all_start_methods() else None
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_die_with_parent,
                                initargs=(os.getpid(),)) as pool:
        futures = [pool.submit(simulate_chunk, t) for t in tasks]
        try:
            for fut in cf.as_completed(futures):
                on_result(fut.result())
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise


def import_ray():
    try:
        import ray  # noqa: F401
    except ImportError:
        raise HwsimError("--ray", "ray", "Ray is not installed; install it with: pip install 'cdg-hwsim[ray]' "
                         "(or pip install ray)") from None
    return ray


def run_ray(tasks: list[dict], address: str | None, init_kwargs: dict | None,
             on_result: Callable[[list[dict]], None]) -> None:
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        kwargs = {"include_dashboard": False, "log_to_driver": False, **(init_kwargs or {})}
        if address:
            kwargs["address"] = address
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise HwsimError("--ray", address or "local", f"cannot start/connect to Ray ({exc})") from None
        started = True
    try:
        remote = ray.remote(simulate_chunk)
        pending = [remote.remote(t) for t in tasks]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                on_result(ray.get(ref))
    finally:
        if started:
            ray.shutdown()
