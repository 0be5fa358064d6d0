"""One thread per device for all of the library's model computation.

torch's CPU kernels run on an OpenMP runtime (libgomp) that keeps a team of threads for every
thread that computes. Once two threads have computed (a chain's sync calls on the main thread,
its async calls on a worker), every call is slower: on the 2-core benchmark machine the same 16
assessments took 1.2-1.3x as long on a worker after the main thread had computed
(``benchmarks/worker_thread.py``), and the runtime's own settings (``OMP_WAIT_POLICY``,
``GOMP_SPINCOUNT``) made it worse. So ``retrieve``, ``assess``, ``answer``, reranking, the
batcher and the async methods all hand their work to one thread and wait for it, whichever
thread calls: one OpenMP team, whatever the mix of callers.

``SELFRETRIEVAL_COMPUTE_THREAD=0`` computes on the calling thread instead (a profiler or a
debugger that must see the work on its own thread).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

T = TypeVar("T")

ENV_SWITCH = "SELFRETRIEVAL_COMPUTE_THREAD"

_executors: dict[str, ThreadPoolExecutor] = {}
_executors_lock = threading.Lock()
_inside = threading.local()


def enabled() -> bool:
    """Whether work goes to the compute thread (read on every call, so tests can switch it)."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in {"0", "false", "no", "off"}


def on_compute_thread() -> bool:
    """Whether the calling thread is one of the compute threads."""
    return getattr(_inside, "device", None) is not None


def run(work: Callable[[], T], device: str = "cpu") -> T:
    """``work()`` on ``device``'s compute thread; its result or its error, on this thread.

    Runs inline on a compute thread already (no thread waits on itself) and when the switch is
    off. The caller's torch thread count travels with the work (``torch.set_num_threads`` is
    per thread under OpenMP), so a caller that lowered it still gets what it asked for.
    """
    if on_compute_thread() or not enabled():
        return work()
    threads = torch.get_num_threads()

    def job() -> T:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        _inside.device = device
        try:
            return work()
        finally:
            _inside.device = None

    return _executor(device).submit(job).result()


def _executor(device: str) -> ThreadPoolExecutor:
    with _executors_lock:
        executor = _executors.get(device)
        if executor is None:
            executor = _executors[device] = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"selfretrieval-compute-{device}"
            )
        return executor
