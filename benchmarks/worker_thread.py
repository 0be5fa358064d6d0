"""The same self-assessment calls made from the main thread and from a worker thread (where
``aretrieve``, ``ainvoke`` and the model's batcher call from), computed on the library's compute
thread and on the calling thread.

torch's OpenMP runtime keeps a team of threads for each thread that computes, and a second team
can slow every call on a small CPU. The library therefore computes on one compute thread
whichever thread calls (``retrieval/compute_thread.py``); ``SELFRETRIEVAL_COMPUTE_THREAD=0``
computes on the calling thread, as the library did before. The same 16 ``assess`` calls (warm
passage caches, ``self`` mode candidates) are made from the main thread, from a second thread
after the main thread's warm-up (sync and async callers mixed), and with loading and every call
on the second thread alone; each cell runs in fresh processes, interleaved with the others.
Prints a table and writes ``benchmarks/results/worker-thread.json`` (about 10 minutes)::

    python benchmarks/worker_thread.py --artifact runs/ablations/ql-with-refusal-data
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
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


#: Where the calls come from; each scenario runs in a fresh process (a runtime that has not
#: computed yet), the same questions and rounds.
SCENARIOS = {
    "main thread": "loading and every call on the main thread",
    "worker thread only (loading too)": "loading and every call on one worker thread",
    "worker thread after the main thread": "loading and the warm-up on the main thread, the "
    "timed rounds on a worker thread (sync and async callers mixed)",
}


def _scenario(name: str, artifact: Path, questions: int, rounds: int) -> list[float]:
    if name == "worker thread only (loading too)":

        def worker_only() -> list[float]:
            round_on_worker = _setup(artifact, questions)
            return [round_on_worker() for _ in range(rounds)]

        return _on_thread(worker_only)
    round_s = _setup(artifact, questions)
    if name == "main thread":
        return [round_s() for _ in range(rounds)]
    return [_on_thread(round_s) for _ in range(rounds)]


#: Where the library computes: its compute thread (the default) or the thread that calls.
SETTINGS = {"compute thread": {}, "calling thread": {"SELFRETRIEVAL_COMPUTE_THREAD": "0"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", type=Path, required=True)
    parser.add_argument("--questions", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per cell")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--output", type=Path, default=RESULTS / "worker-thread.json")
    parser.add_argument("--scenario", choices=list(SCENARIOS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scenario:  # the child process of one scenario: its rounds, as JSON, last line
        print(json.dumps(_scenario(args.scenario, args.artifact, args.questions, args.rounds)))
        return

    # Every cell in fresh processes, interleaved, so that the machine's drift hits all alike.
    rows: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for name in SCENARIOS:
            for setting in args.settings:
                child = subprocess.run(
                    [
                        *(sys.executable, __file__, "--artifact", str(args.artifact)),
                        *("--scenario", name, "--questions", str(args.questions)),
                        *("--rounds", str(args.rounds)),
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                    env={**os.environ, **SETTINGS[setting]},
                )
                seconds = json.loads(child.stdout.strip().splitlines()[-1])
                rows.setdefault(f"{name} / {setting}", []).extend(round(s, 3) for s in seconds)

    base_name = f"main thread / {args.settings[-1]}"
    base = float(np.median(rows[base_name]))
    print(
        f"{args.questions} assess calls of 10 passages: {args.rounds} rounds in each of "
        f"{args.repeats} fresh processes per cell; x = median over {base_name}'s"
    )
    print(f"{'calls from / computed on':>52} | {'median s':>8} {'best s':>7} | {'x':>5}")
    for name, seconds in rows.items():
        median = float(np.median(seconds))
        print(f"{name:>52} | {median:8.2f} {min(seconds):7.2f} | {median / base:5.2f}")
    report = {
        "artifact": str(args.artifact),
        "questions": args.questions,
        "scenarios": SCENARIOS,
        "settings": {name: SETTINGS[name] for name in args.settings},
        "seconds": rows,
        "median_seconds": {name: round(float(np.median(v)), 3) for name, v in rows.items()},
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
            + [f"--questions {args.questions} --rounds {args.rounds} --repeats {args.repeats}"]
            + [f"--settings {' '.join(args.settings)} --output {args.output}"]
        ),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
