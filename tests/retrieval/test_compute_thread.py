"""Every model computation runs on one compute thread, whichever thread calls (one OpenMP team
for sync, async and threaded callers); off by a switch; no deadlock for a caller that holds the
lock; errors and the caller's torch thread count cross over."""

from __future__ import annotations

import asyncio
import copy
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from selfretrieval_integrations import Passage, SelfRetrievalModel
from selfretrieval_integrations.retrieval import compute_thread


@pytest.fixture(scope="module")
def model(tiny_model):
    """A model with its own copy of the weights (the tests hook its forward pass)."""
    lm, tokenizer = tiny_model
    corpus = [
        Passage(id=f"p{i}", doc_id=f"d{i}", title=f"Doc {i}", text=text)
        for i, text in enumerate(["The Eiffel Tower is in Paris.", "The Colosseum is in Rome."])
    ]
    return SelfRetrievalModel.from_base((copy.deepcopy(lm), tokenizer), corpus)


@pytest.fixture
def forward_threads(model):
    """The thread of every forward pass of the model's LM while the test runs."""
    seen: list[int] = []

    def record(module, args, kwargs):
        seen.append(threading.get_ident())

    handle = model.model.register_forward_pre_hook(record, with_kwargs=True)
    yield seen
    handle.remove()


def _on_new_thread(call):
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(call).result(timeout=120)


def test_sync_async_and_threaded_calls_compute_on_one_thread(model, forward_threads):
    model.retrieve("where is paris?", k=2)
    _on_new_thread(lambda: model.assess("where is rome?", ["The Colosseum is in Rome."]))
    asyncio.run(model.aretrieve("rome", k=1))
    model.answer("where is paris?", ["The Eiffel Tower is in Paris."], max_new_tokens=2)
    relevance = model.relevance_of("paris", ["The Eiffel Tower is in Paris.", "Rome."])
    _on_new_thread(lambda: relevance([1]))
    assert forward_threads, "no forward pass recorded"
    assert len(set(forward_threads)) == 1
    assert forward_threads[0] != threading.get_ident()


def test_the_switch_off_computes_on_the_calling_thread(model, forward_threads, monkeypatch):
    monkeypatch.setenv(compute_thread.ENV_SWITCH, "0")
    model.assess("where is rome?", ["The Colosseum is in Rome."])
    callers = {threading.get_ident()}
    callers.add(_on_new_thread(lambda: (model.retrieve("rome", k=1), threading.get_ident())[1]))
    assert set(forward_threads) == callers


def test_a_caller_holding_the_lock_computes_on_its_own_thread(model, forward_threads):
    """The compute thread would wait for the caller's lock while the caller waits for it."""

    def under_the_lock():
        with model.lock:
            model.assess("where is rome?", ["The Colosseum is in Rome."])
            return threading.get_ident()

    caller = _on_new_thread(under_the_lock)  # times out instead of hanging if it deadlocks
    assert set(forward_threads) == {caller}


def test_results_equal_the_calling_threads_own(model, monkeypatch):
    passages = ["The Colosseum is in Rome.", "The Eiffel Tower is in Paris."]
    hopped = model.assess("where is rome?", passages)
    ranked = model.retrieve("where is rome?", k=2)
    monkeypatch.setenv(compute_thread.ENV_SWITCH, "0")
    assert model.assess("where is rome?", passages).tolist() == hopped.tolist()
    assert model.retrieve("where is rome?", k=2) == ranked


def test_errors_come_back_to_the_caller_and_nested_calls_run_inline():
    def fail():
        raise ZeroDivisionError("inside")

    with pytest.raises(ZeroDivisionError, match="inside"):
        compute_thread.run(fail)
    outer, inner = compute_thread.run(
        lambda: (threading.get_ident(), compute_thread.run(threading.get_ident))
    )
    assert outer == inner != threading.get_ident()
    assert not compute_thread.on_compute_thread()


def test_the_callers_torch_thread_count_travels_with_the_work():
    def lowered_then_restored():
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            lowered = compute_thread.run(torch.get_num_threads)
        finally:
            torch.set_num_threads(before)
        return lowered, compute_thread.run(torch.get_num_threads), before

    lowered, restored, before = _on_new_thread(lowered_then_restored)
    assert lowered == 1
    assert restored == before
