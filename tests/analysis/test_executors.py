"""The sweep's process-pool workers die with their parent (a ``kill -9`` of ``analysis.dse``
used to leave them running, holding the sweep's lock, so the resume was refused)."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PARENT = """
import os, sys, time
import analysis.executors as ex

def slow(task):
    print(os.getpid(), flush=True)
    time.sleep(120)

ex.simulate_chunk = slow
ex.run_local([{}, {}], 2, lambda records: None)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")  # a zombie waiting for a reaper has exited
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def test_pool_workers_die_when_the_sweep_is_killed():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    workers = [int(parent.stdout.readline()) for _ in range(2)]
    assert all(_alive(pid) for pid in workers)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = [pid for pid in workers if _alive(pid)]
    for pid in survivors:  # do not leave them behind when the check fails
        os.kill(pid, signal.SIGKILL)
    assert not survivors, "a pool worker outlived its killed parent"
