"""Merging concurrent retrieval calls into batched decodes.

Sixteen users of one RAG chain each call ``aretrieve`` at about the same moment. Run one after
another, every call decodes its beams alone, and a single query's beams are too few rows to keep
a CPU's vector units (or a GPU) busy. The batcher collects the calls that arrive while the model
is busy, as LLM servers do, and hands them to ``retrieve_batch`` together: one decode for all of
them, then each query's own ranking. A call that arrives while a batch runs waits only for that
batch, never for a queue of single calls. Each caller gets what ``retrieve`` would have returned
it (the same passages in the same order in every measured case; scores equal up to the float
rounding of a larger batch, about 1e-7), or its own error.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import weakref
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from selfretrieval_integrations.validation import checked_int

if TYPE_CHECKING:
    from .model import RetrievalResult, SelfRetrievalModel


@dataclass
class _Request:
    query: str
    k: int
    filter: Any
    future: Future = field(default_factory=Future)


class RequestBatcher:
    """A worker thread that runs waiting ``retrieve`` calls of one model as batches."""

    def __init__(self, model: SelfRetrievalModel, *, max_batch: int = 16) -> None:
        # A weak reference: the worker thread must not keep a dropped model's weights alive.
        self._model = weakref.ref(model)
        self.max_batch = checked_int(max_batch, "max_batch")
        self.batches = 0
        """Batches run so far (a benchmark's check that calls were merged)."""
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start = threading.Lock()

    def submit(self, query: str, k: int = 10, filter: Any = None) -> Future:
        """Queue one ``retrieve(query, k, filter)``; the future holds its results."""
        request = _Request(query, k, filter)
        self._ensure_worker()
        self._queue.put(request)
        return request.future

    async def retrieve(self, query: str, k: int = 10, filter: Any = None) -> list[RetrievalResult]:
        """``retrieve`` from async code, batched with the calls waiting beside it."""
        return await asyncio.wrap_future(self.submit(query, k, filter))

    def close(self) -> None:
        """Stop the worker after the calls already queued."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def _ensure_worker(self) -> None:
        with self._start:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._work, name="selfretrieval-batcher", daemon=True
                )
                self._thread.start()

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            pending = [first]
            # Whatever queued up while the previous batch ran joins this one; nothing waits on
            # a timer, so a lone call starts at once.
            stop = False
            while len(pending) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                pending.append(item)
            self._run(pending)
            if stop:
                return

    @property
    def model(self) -> SelfRetrievalModel:
        model = self._model()
        if model is None:
            raise RuntimeError("the model of this batcher was garbage-collected")
        return model

    def _run(self, pending: list[_Request]) -> None:
        by_k: dict[int, list[_Request]] = {}
        for request in pending:
            by_k.setdefault(request.k, []).append(request)
        for k, group in by_k.items():
            live = [r for r in group if r.future.set_running_or_notify_cancel()]
            if not live:
                continue
            self.batches += 1
            try:
                results = self.model.retrieve_batch(
                    [r.query for r in live],
                    k,
                    [r.filter for r in live],
                    batch_size=len(live),
                )
            except BaseException:
                # One bad call must not fail its neighbours: each runs alone for its own answer.
                for request in live:
                    try:
                        request.future.set_result(
                            self.model.retrieve(request.query, request.k, request.filter)
                        )
                    except BaseException as error:
                        request.future.set_exception(error)
                continue
            for request, result in zip(live, results, strict=True):
                request.future.set_result(result)
