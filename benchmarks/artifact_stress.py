"""Many readers and writers on one artifact: lost writes, torn reads, crashes, latency.

With the tiny test model over a synthetic corpus (no download, seconds per write):

1. concurrency: ``--writers`` processes each doing ``--ops`` deletes and adds, while ``--readers``
   processes search in a loop (refreshing before every query) and check, after each refresh,
   that no delete acknowledged before it is still in their store; the final artifact is compared
   with the same operations applied one after another;
2. faults: a write (train, add or delete) killed with SIGKILL at a random moment, ``--kills``
   times: the artifact must load, hold the old or the new generation, keep every acknowledged
   write, and take the next write without waiting for the dead writer's lock;
3. delete latency at each of ``--latency-sizes`` passages;
4. search throughput with and without a writer deleting beside it.

Prints a table and writes ``benchmarks/results/artifact_stress.json``::

    python benchmarks/artifact_stress.py            # ~10 min on 2 CPU cores
    python benchmarks/artifact_stress.py --quick    # ~2 min, smaller numbers
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import random
import shutil
import signal
import statistics
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
WORDS = [
    "river",
    "mountain",
    "city",
    "garden",
    "engine",
    "library",
    "market",
    "castle",
    "forest",
    "harbor",
    "bridge",
    "island",
    "valley",
    "desert",
    "station",
    "temple",
    "museum",
    "tower",
    "village",
    "canal",
]


def _text(i: int) -> str:
    rng = random.Random(i)
    return f"Entry {i}: " + " ".join(rng.choice(WORDS) for _ in range(12)) + "."


def documents(start: int, n: int) -> list[dict[str, str]]:
    return [
        {"id": f"d{i}", "title": f"Topic {i % 50}", "text": _text(i)}
        for i in range(start, start + n)
    ]


def _quiet() -> None:
    torch.set_num_threads(1)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _training_config():
    from selfretrieval_trainer.train import TrainingConfig

    return TrainingConfig(epochs=1, full_finetune=True, batch_size=8)


def build_artifact(path: Path, n: int) -> None:
    from selfretrieval_integrations import RetrievalConfig, SelfRetrievalModel
    from selfretrieval_integrations.retrieval import Fusion

    model = SelfRetrievalModel.from_base(
        "tiny", documents(0, n), config=RetrievalConfig(fusion=Fusion.GENERATION), dtype="float32"
    )
    model.save_pretrained(path)


def passage_set(path: Path) -> list[tuple[str, str, str]]:
    from selfretrieval_integrations.artifact import STORE_DIR, resolve
    from selfretrieval_integrations.index import PassageStore

    folder, _ = resolve(path)
    return sorted((p.id, p.title, p.text) for p in PassageStore.load(folder / STORE_DIR))


# -- 1. concurrency -------------------------------------------------------------------------------


def _writer(path: Path, worker: int, ops: int, n_docs: int, log: Path) -> None:
    _quiet()
    from selfretrieval_trainer.updates import add_documents

    from selfretrieval_integrations import delete_documents

    config = _training_config()
    mine = [f"d{i}" for i in range(worker, n_docs, 8)]  # disjoint per writer
    for op in range(ops):
        if op % 5 == 4:
            doc = documents(100_000 + worker * 1000 + op, 1)
            add_documents(path, doc, config=config, show_progress=False)
            entry = {"op": "add", "id": doc[0]["id"]}
        else:
            doc_id = mine.pop(0)
            delete_documents(path, [doc_id])
            entry = {"op": "delete", "id": doc_id}
        with log.open("a") as handle:  # acknowledged: the call returned
            handle.write(json.dumps({**entry, "worker": worker, "time": time.time()}) + "\n")


def _acknowledged(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def _reader(path: Path, stop: Any, log: Path, out: Any) -> None:
    _quiet()
    from selfretrieval_integrations import SelfRetrievalModel

    searches = failures = stale = 0
    errors: list[str] = []
    model = SelfRetrievalModel.from_pretrained(path)
    while not stop.is_set():
        try:
            deleted_before = {e["id"] for e in _acknowledged(log) if e["op"] == "delete"}
            if searches % 10 == 0:  # also a fresh load, as a CLI search does
                model = SelfRetrievalModel.from_pretrained(path)
            else:
                model.refresh()
            ids = {p.doc_id for p in model.store}
            stale += len(ids & deleted_before)
            found = {r.doc_id for r in model.retrieve(_text(searches % 300), k=5)}
            stale += len(found & deleted_before)
            searches += 1
        except Exception:
            failures += 1
            errors.append(traceback.format_exc(limit=3))
    out.put({"searches": searches, "failed": failures, "stale": stale, "errors": errors[:3]})


def concurrency(tmp: Path, writers: int, ops: int, readers: int, n_docs: int) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    path = tmp / "shared"
    build_artifact(path, n_docs)
    initial = tmp / "initial"
    shutil.copytree(path, initial)
    log = tmp / "acks.jsonl"
    stop, out = context.Event(), context.Queue()
    reader_procs = [
        context.Process(target=_reader, args=(path, stop, log, out)) for _ in range(readers)
    ]
    writer_procs = [
        context.Process(target=_writer, args=(path, w, ops, n_docs, log)) for w in range(writers)
    ]
    started = time.perf_counter()
    for proc in reader_procs + writer_procs:
        proc.start()
    for proc in writer_procs:
        proc.join()
    wall = time.perf_counter() - started
    stop.set()
    reads = [out.get(timeout=600) for _ in reader_procs]
    for proc in reader_procs:
        proc.join()
    acks = _acknowledged(log)
    final = passage_set(path)
    final_ids = {pid.split("#")[0] for pid, _, _ in final}
    lost = [a for a in acks if (a["op"] == "delete") == (a["id"] in final_ids)]
    # The same operations, one after another, on a copy of the starting artifact.
    serial = tmp / "serial"
    shutil.copytree(initial, serial)
    _quiet()
    from selfretrieval_trainer.updates import add_documents

    from selfretrieval_integrations import delete_documents

    for ack in sorted(acks, key=lambda a: a["time"]):
        if ack["op"] == "delete":
            delete_documents(serial, [ack["id"]])
        else:
            doc = [d for d in documents(int(ack["id"][1:]), 1)]
            add_documents(serial, doc, config=_training_config(), show_progress=False)
    return {
        "writers": writers,
        "ops_per_writer": ops,
        "readers": readers,
        "writes_acknowledged": len(acks),
        "writer_exit_codes": [p.exitcode for p in writer_procs],
        "lost_writes": len(lost),
        "searches": sum(r["searches"] for r in reads),
        "failed_reads": sum(r["failed"] for r in reads),
        "stale_after_refresh": sum(r["stale"] for r in reads),
        "read_errors": [e for r in reads for e in r["errors"]][:3],
        "final_equals_serial": final == passage_set(serial),
        "final_passages": len(final),
        "wall_s": round(wall, 1),
    }


# -- 2. faults ------------------------------------------------------------------------------------


def _doomed_write(path: Path, kind: str, target: str, ack: Path) -> None:
    """One write, acknowledged in ``ack`` once it returned; ``target``: the doc id it touches."""
    from selfretrieval_trainer.train import train
    from selfretrieval_trainer.updates import add_documents

    from selfretrieval_integrations import delete_documents

    if kind == "delete":
        delete_documents(path, [target])
    elif kind == "add":
        new = documents(int(target[1:]), 1)
        add_documents(path, new, config=_training_config(), show_progress=False)
    else:
        train("tiny", documents(0, 40), path, config=_training_config(), show_progress=False)
    ack.write_text(kind)
    time.sleep(30)  # killed here too, after acknowledging


def faults(tmp: Path, kills: int, n_docs: int, seed: int) -> dict[str, Any]:
    _quiet()
    from selfretrieval_integrations import SelfRetrievalModel, delete_documents
    from selfretrieval_integrations.artifact import current_generation

    context = multiprocessing.get_context("fork")  # the libraries are loaded once, here
    path = tmp / "faults"
    build_artifact(path, n_docs)
    kinds = ["delete", "add", "train"]
    durations = {}
    for kind in kinds:  # how long each write takes, so that kills land inside it
        ack = tmp / f"calibrate-{kind}"
        target = "d299" if kind == "delete" else "d200000"
        proc = context.Process(target=_doomed_write, args=(path, kind, target, ack))
        started = time.perf_counter()
        proc.start()
        while not ack.exists() and proc.is_alive():
            time.sleep(0.005)
        durations[kind] = time.perf_counter() - started
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
    rng = random.Random(seed)
    outcome = {"runs": 0, "loaded": 0, "old": 0, "new": 0, "neither": 0, "lost_acknowledged": 0}
    outcome |= {
        "lock_recovered": 0,
        "write_seconds": {k: round(v, 3) for k, v in durations.items()},
    }
    for run in range(kills):
        kind = kinds[run % 3]
        before = (current_generation(path), passage_set(path))
        ack = tmp / f"ack-{run}"
        target = before[1][0][0].split("#")[0] if kind == "delete" else f"d{200_001 + run}"
        proc = context.Process(target=_doomed_write, args=(path, kind, target, ack))
        proc.start()
        time.sleep(rng.uniform(0, durations[kind] * 1.1))
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        outcome["runs"] += 1
        acknowledged = ack.exists()
        try:
            model = SelfRetrievalModel.from_pretrained(path)
            outcome["loaded"] += 1
        except Exception:
            continue
        generation = current_generation(path)
        changed = (generation, passage_set(path)) != before
        outcome["new" if changed else "old"] += 1
        if changed and generation != (before[0] or 0) + 1:
            outcome["neither"] += 1  # a generation that is neither the old one nor the next
        if acknowledged and not changed:
            outcome["lost_acknowledged"] += 1
        # The killed writer's lock must not block the next write.
        victim = next(p.doc_id for p in model.store if p.doc_id.startswith("d"))
        try:
            delete_documents(path, [victim], lock_timeout=10)
            outcome["lock_recovered"] += 1
        except Exception:
            pass
    return outcome


# -- 3. delete latency, 4. throughput ------------------------------------------------------------


def delete_latency(tmp: Path, sizes: list[int], repeats: int) -> dict[str, Any]:
    _quiet()
    from selfretrieval_integrations import delete_documents

    rows = {}
    for size in sizes:
        path = tmp / f"latency-{size}"
        started = time.perf_counter()
        build_artifact(path, size)
        build_s = time.perf_counter() - started
        times = []
        for i in range(repeats):
            started = time.perf_counter()
            delete_documents(path, [f"d{i}"])
            times.append(time.perf_counter() - started)
        rows[str(size)] = {
            "passages": size,
            "build_s": round(build_s, 2),
            "delete_p50_s": round(statistics.median(times), 3),
            "delete_max_s": round(max(times), 3),
        }
        shutil.rmtree(path, ignore_errors=True)
    return rows


def _deleter(path: Path, stop: Any, n_docs: int) -> None:
    _quiet()
    from selfretrieval_integrations import delete_documents

    i = 1000
    while not stop.is_set() and i < n_docs:
        delete_documents(path, [f"d{i}"])
        i += 1


def throughput(tmp: Path, seconds: float, n_docs: int) -> dict[str, Any]:
    _quiet()
    from selfretrieval_integrations import SelfRetrievalModel

    path = tmp / "throughput"
    build_artifact(path, n_docs)
    context = multiprocessing.get_context("spawn")

    def searches_per_s(model: SelfRetrievalModel) -> float:
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            model.refresh()
            model.retrieve(_text(done), k=5)
            done += 1
        return done / (time.perf_counter() - started)

    model = SelfRetrievalModel.from_pretrained(path)
    quiet = searches_per_s(model)
    stop = context.Event()
    writer = context.Process(target=_deleter, args=(path, stop, n_docs))
    writer.start()
    time.sleep(3)  # let the writer load
    busy = searches_per_s(model)
    stop.set()
    writer.join()
    return {
        "searches_per_s_without_writes": round(quiet, 2),
        "searches_per_s_with_writes": round(busy, 2),
        "ratio": round(busy / quiet, 3),
        "passages": n_docs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller numbers, for a smoke run")
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--ops", type=int, default=25)
    parser.add_argument("--readers", type=int, default=4)
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--latency-sizes", type=int, nargs="+", default=[300, 100_000])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "artifact_stress.json")
    args = parser.parse_args()
    if args.quick:
        args.writers, args.ops, args.readers, args.kills = 2, 5, 2, 6
        args.latency_sizes = [300, 5000]
    report: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "model": "tiny",
        "settings": {k: v for k, v in vars(args).items() if k != "out"} | {"out": str(args.out)},
    }
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        report["concurrency"] = concurrency(tmp, args.writers, args.ops, args.readers, 300)
        report["faults"] = faults(tmp, args.kills, 300, args.seed)
        report["delete_latency"] = delete_latency(tmp, args.latency_sizes, 3)
        report["throughput"] = throughput(tmp, 10.0 if args.quick else 30.0, 3000)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(f"wrote {args.out}")


def print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="artifact stress (tiny model)")
    table.add_column("check")
    table.add_column("result", justify="right")
    c, f, t = report["concurrency"], report["faults"], report["throughput"]
    rows = [
        ("writes acknowledged / lost", f"{c['writes_acknowledged']} / {c['lost_writes']}"),
        ("searches / failed reads", f"{c['searches']} / {c['failed_reads']}"),
        ("deleted passages seen after refresh", str(c["stale_after_refresh"])),
        ("final artifact equals serial", str(c["final_equals_serial"])),
        ("SIGKILLed writes: loaded / runs", f"{f['loaded']} / {f['runs']}"),
        ("  old / new / neither generation", f"{f['old']} / {f['new']} / {f['neither']}"),
        ("  acknowledged writes lost", str(f["lost_acknowledged"])),
        ("  next write took the lock", f"{f['lock_recovered']} / {f['runs']}"),
        *(
            (f"delete p50 at {row['passages']} passages", f"{row['delete_p50_s']:.3f} s")
            for row in report["delete_latency"].values()
        ),
        (
            "searches/s without / with writes",
            f"{t['searches_per_s_without_writes']} / {t['searches_per_s_with_writes']}",
        ),
    ]
    for name, value in rows:
        table.add_row(name, value)
    Console().print(table)


if __name__ == "__main__":
    main()
