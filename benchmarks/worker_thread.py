"""The same self-assessment calls made from the main thread and from a worker thread (where
``aretrieve``, ``ainvoke`` and the model's batcher call from).

torch's OpenMP runtime keeps a team of threads for each thread that computes, and a second team
slows every call on a small CPU. The library therefore computes on one compute thread whichever
thread calls (``retrieval/compute_thread.py``); ``SELFRETRIEVAL_COMPUTE_THREAD=0`` computes on
the calling thread instead, which is what this measured first. The same 16 ``assess`` calls
(warm passage caches, ``self`` mode candidates) are made from the main thread, from a second
thread after the main thread's calls, and with loading and every call on the second thread
alone. Prints a table and writes ``benchmarks/results/worker-thread.json``.

    python benchmarks/worker_thread.py --artifact runs/ablations/ql-with-refusal-data
    SELFRETRIEVAL_COMPUTE_THREAD=0 python benchmarks/worker_thread.py \
        --artifact runs/ablations/ql-with-refusal-data \
        --output benchmarks/results/worker-thread-caller.json
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from latency import cpu_machine  # benchmarks/, beside this script

from selfretrieval_integrations import SelfRetrievalModel
from selfretrieval_integrations.corpus import load_beir_qrels, load_beir_queries, quickstart_dir
from selfretrieval_integrations.retrieval import RetrievalMode

RESULTS = Path(__file__).parent / "results"

#: The OpenMP runtime's settings and the library's compute-thread switch, recorded with every
#: report (they change what it measures).
_RUNTIME_SETTINGS = (
    "OMP_WAIT_POLICY",
    "GOMP_SPINCOUNT",
    "OMP_NUM_THREADS",
    "SELFRETRIEVAL_COMPUTE_THREAD",
)


def _on_thread(work: Callable[[], Any]) -> Any:
    """``work()`` on a new thread, its result (or error) back on this one."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = work()
        except BaseException as error:  # re-raised on the caller's thread
            out["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


def _setup(artifact: Path, questions: int) -> Callable[[], float]:
    """Load the model, find each question's candidates and warm the caches; return one timed
    round of assessment."""
    model = SelfRetrievalModel.from_pretrained(artifact)
    model.config = replace(model.config, mode=RetrievalMode.SELF)
    folder = quickstart_dir()
    queries, qrels = load_beir_queries(folder), load_beir_qrels(folder, "test")
    asked = [queries[q] for q in sorted(qrels)[:questions]]
    candidates = [[(r.title, r.text) for r in model.retrieve(q, k=10)] for q in asked]

    def round_s() -> float:
        started = time.perf_counter()
        for question, passages in zip(asked, candidates, strict=True):
            model.assess(question, passages)
        return time.perf_counter() - started

    round_s()  # warm-up: every passage cached
    return round_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", type=Path, required=True)
    parser.add_argument("--questions", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=RESULTS / "worker-thread.json")
    args = parser.parse_args()

    def worker_only() -> list[float]:
        round_on_worker = _setup(args.artifact, args.questions)
        return [round_on_worker() for _ in range(args.rounds)]

    # Loading and every call on a worker thread first, before the main thread ever computes.
    only_worker = _on_thread(worker_only)
    round_s = _setup(args.artifact, args.questions)
    rows: dict[str, list[float]] = {"worker thread only (loading too)": only_worker}
    rows["main thread"] = []
    rows["worker thread after the main thread"] = []
    for _ in range(args.rounds):  # interleaved, so drift hits both alike
        rows["main thread"].append(round_s())
        rows["worker thread after the main thread"].append(_on_thread(round_s))

    base = min(rows["main thread"])
    print(f"{args.questions} assess calls of 10 passages, best of {args.rounds} rounds")
    print(f"{'where':>36} | {'best s':>7} {'rounds':>24} | {'x main':>6}")
    for name, seconds in rows.items():
        spread = " ".join(f"{s:.2f}" for s in seconds)
        print(f"{name:>36} | {min(seconds):7.2f} {spread:>24} | {min(seconds) / base:6.2f}")
    report = {
        "artifact": str(args.artifact),
        "questions": args.questions,
        "seconds": {name: [round(s, 3) for s in v] for name, v in rows.items()},
        "machine": {
            **cpu_machine(),
            "openmp": [
                line.strip()
                for line in torch.__config__.parallel_info().splitlines()
                if "OpenMP" in line
            ],
            "environment": {name: os.environ.get(name) for name in _RUNTIME_SETTINGS},
        },
        "command": " ".join(
            [f"{name}={os.environ[name]}" for name in _RUNTIME_SETTINGS if name in os.environ]
            + [f"python benchmarks/worker_thread.py --artifact {args.artifact}"]
            + [f"--questions {args.questions} --rounds {args.rounds} --output {args.output}"]
        ),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
