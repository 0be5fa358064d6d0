"""What the LangChain and LlamaIndex tests share: a small corpus and probes of the shared model."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from selfretrieval_integrations import Fusion, Passage, RetrievalConfig, SelfRetrievalModel

TOPICS = ["rivers", "mountains", "planets", "birds", "bridges", "volcanoes"]
QUERIES = [f"question {i} about {TOPICS[i % len(TOPICS)]}" for i in range(16)]


def framework_passages() -> list[Passage]:
    """Twelve passages, two per document, with metadata to filter on."""
    return [
        Passage(
            id=f"p{i}",
            doc_id=f"d{i // 2}",
            title=f"{TOPICS[i // 2].title()}",
            text=f"Passage {i} tells fact {i * 7} about {TOPICS[i // 2]}.",
            metadata={"group": "a" if i % 3 else "b", "n": i, "tags": ["even" if i % 2 else "odd"]},
        )
        for i in range(12)
    ]


def build_model(tiny_model: Any) -> SelfRetrievalModel:
    """Generation scores only: self-assessment triples the cost of a query and is tested in
    the core tests; the reranker tests still run it through ``rerank``."""
    config = RetrievalConfig(fusion=Fusion.GENERATION)
    return SelfRetrievalModel.from_base(tiny_model, framework_passages(), config=config)


class DecodeProbe:
    """Wraps ``model.decoder.decode``: how many calls run inside it at once, and on which threads.

    The wrapper sleeps before decoding so that calls which are not serialised would overlap.
    With ``gate`` set, a call first waits for the gate (to prove the caller's loop kept running).
    """

    def __init__(self, model: SelfRetrievalModel, monkeypatch: pytest.MonkeyPatch) -> None:
        self.active = 0
        self.max_active = 0
        self.calls = 0
        self.threads: set[int] = set()
        self.gate: threading.Event | None = None
        self._guard = threading.Lock()
        original = model.decoder.decode

        def decode(*args: Any, **kwargs: Any) -> Any:
            if self.gate is not None and not self.gate.wait(timeout=5):
                raise AssertionError("decoding started while the event loop was blocked")
            with self._guard:
                self.active += 1
                self.calls += 1
                self.max_active = max(self.max_active, self.active)
                self.threads.add(threading.get_ident())
            try:
                time.sleep(0.005)
                return original(*args, **kwargs)
            finally:
                with self._guard:
                    self.active -= 1

        monkeypatch.setattr(model.decoder, "decode", decode)
