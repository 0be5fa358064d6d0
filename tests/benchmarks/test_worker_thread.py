from __future__ import annotations

import threading

import pytest

from .scripts import load_benchmark

worker_thread = load_benchmark("worker_thread")


def test_work_runs_on_another_thread_and_returns_its_value():
    assert worker_thread._on_thread(threading.get_ident) != threading.get_ident()


def test_an_error_on_the_worker_reaches_the_caller():
    def fail() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        worker_thread._on_thread(fail)
