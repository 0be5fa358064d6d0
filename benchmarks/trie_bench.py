"""Benchmark ``PassageTrie`` on a synthetic corpus shaped like titled Wikipedia passages.

Measures build time, memory (RSS and array bytes + marisa), disk size, ``next_tokens`` latency from
arbitrary prefixes at several depths, and memory-mapped load time, against a nested Python dict
trie of the same cut keys. Prints a table and writes ``benchmarks/results/trie.json``.

    python benchmarks/trie_bench.py                       # 1,000,000 passages (a few minutes)
    python benchmarks/trie_bench.py --n-passages 100000   # quick run

Corpus: ``n/20`` titles of 2-8 tokens drawn Zipf-like from a 50k vocabulary, each with one or
more passages (a few documents get many); key = title + a fixed 6-token marker + 40 passage tokens
(Zipf-distributed, 35 % starting with one of 300 common openings of 3-12 tokens) + EOS; about 1 %
of passages duplicate another passage of the same document.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import importlib.metadata as metadata
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from selfretrieval_integrations.index import END_TOKEN, PassageTrie  # noqa: E402

VOCAB = 50_000
TOKEN_BASE = 100  # ids below are specials
EOS = 2
MARKER = [13, 14, 15, 16, 17, 18]
BODY_LEN = 40
DEPTHS = (0, 1, 5, 20)
LATENCY_SAMPLES = 20_000
DICT_SAMPLE = 100_000
TARGETS = {"memory_ratio_min": 20.0, "median_lookup_us_max": 20.0, "load_s_max": 0.5}


# ---------------------------------------------------------------------------- corpus


def make_corpus(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat token array, offsets (n + 1) and title lengths of ``n`` synthetic passages."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, VOCAB + 1) ** 1.07
    cdf = np.cumsum(weights / weights.sum())

    def zipf(size: int | tuple[int, ...]) -> np.ndarray:
        ranks = np.searchsorted(cdf, rng.random(size)).clip(max=VOCAB - 1)
        return (ranks + TOKEN_BASE).astype(np.int32)

    n_titles = max(1, n // 20)
    title_len = rng.integers(2, 9, n_titles)
    title_tok = zipf(int(title_len.sum()))
    title_first = np.concatenate([[0], np.cumsum(title_len)[:-1]])
    doc_weight = 1.0 / np.arange(1, n_titles + 1) ** 0.6
    rng.shuffle(doc_weight)
    extra = rng.choice(n_titles, max(n - n_titles, 0), p=doc_weight / doc_weight.sum())
    title_of = np.sort(np.concatenate([np.arange(min(n, n_titles)), extra]))[:n]

    body = zipf((n, BODY_LEN))
    openings = [zipf(int(rng.integers(3, 13))) for _ in range(300)]
    with_opening = np.flatnonzero(rng.random(n) < 0.35)
    choice = rng.integers(0, len(openings), len(with_opening))
    for k, opening in enumerate(openings):
        rows = with_opening[choice == k]
        body[rows, : len(opening)] = opening
    dup = np.flatnonzero(rng.random(n) < 0.01)
    dup = dup[(dup > 0) & (title_of[np.maximum(dup - 1, 0)] == title_of[dup])]
    body[dup] = body[dup - 1]

    tl = title_len[title_of]
    lengths = tl + len(MARKER) + BODY_LEN + 1
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    flat = np.empty(int(offsets[-1]), dtype=np.int32)
    starts = offsets[:-1]
    idx = _ranges(starts, tl)
    flat[idx] = title_tok[_ranges(title_first[title_of], tl)]
    flat[(starts + tl)[:, None] + np.arange(len(MARKER))] = MARKER
    flat[(starts + tl + len(MARKER))[:, None] + np.arange(BODY_LEN)] = body
    flat[offsets[1:] - 1] = EOS
    return flat, offsets, (tl + len(MARKER)).astype(np.int64)


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    firsts = np.cumsum(lengths) - lengths
    return np.repeat(starts - firsts, lengths) + np.arange(int(lengths.sum()))


# ---------------------------------------------------------------------------- helpers


def _malloc_trim() -> None:
    """Give freed heap memory back to the OS (glibc), so RSS deltas show live data only."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def rss() -> int:
    gc.collect()
    _malloc_trim()
    return psutil.Process().memory_info().rss


class PeakRss:
    """Samples RSS in a thread; ``peak`` is the highest value seen."""

    def __init__(self) -> None:
        self.peak = rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        proc = psutil.Process()
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, proc.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def cut_keys(
    cut: np.ndarray, flat: np.ndarray, offsets: np.ndarray, passages: np.ndarray
) -> list[list[int]]:
    """The stored (cut) key of each passage, as Python lists."""
    cut = cut[passages]
    out = []
    for p, length in zip(passages.tolist(), cut.tolist(), strict=True):
        a, b = int(offsets[p]), int(offsets[p + 1])
        key = flat[a : a + min(length, b - a)].tolist()
        if length > b - a:
            key.append(END_TOKEN)
        out.append(key)
    return out


def dict_trie(keys: list[list[int]], ids: list[int]) -> dict:
    """The naive structure: one dict per token position, passage lists at the leaves."""
    root: dict = {}
    for key, pid in zip(keys, ids, strict=True):
        node = root
        for token in key:
            child = node.get(token)
            if child is None:
                child = node[token] = {}
            node = child
        node.setdefault("ids", []).append(pid)
    return root


def measure_dict(keys: list[list[int]], ids: list[int]) -> dict[str, float]:
    gc.collect()
    gc.disable()
    before = rss()
    start = time.perf_counter()
    trie = dict_trie(keys, ids)
    seconds = time.perf_counter() - start
    after = rss()
    gc.enable()
    result = {"n_passages": len(keys), "build_s": seconds, "rss_bytes": after - before}
    del trie
    gc.collect()
    return result


def latency(trie: PassageTrie, prefixes: list[list[int]], rounds: int = 3) -> dict[str, float]:
    """Per-call ``next_tokens`` latency; the round with the lowest median is reported (the
    machine may be shared), the medians of all rounds are kept."""
    for prefix in prefixes[:200]:  # warm-up
        trie.next_tokens(prefix)
    timer = time.perf_counter_ns
    best: np.ndarray | None = None
    medians = []
    for _ in range(rounds):
        samples = np.empty(len(prefixes), dtype=np.int64)
        for i, prefix in enumerate(prefixes):
            t0 = timer()
            trie.next_tokens(prefix)
            samples[i] = timer() - t0
        medians.append(float(np.median(samples)) / 1e3)
        if best is None or np.median(samples) < np.median(best):
            best = samples
    assert best is not None
    return {
        "median_us": float(np.median(best)) / 1e3,
        "p99_us": float(np.percentile(best, 99)) / 1e3,
        "mean_us": float(best.mean()) / 1e3,
        "round_medians_us": medians,
    }


def sample_prefixes(
    cut: np.ndarray, flat: np.ndarray, offsets: np.ndarray, depth: int, rng: np.random.Generator
) -> tuple[list[list[int]], float]:
    """Random key prefixes of ``depth`` tokens that end inside the trie where possible."""
    inside = np.flatnonzero(cut > depth)
    pool = inside if inside.size else np.arange(len(offsets) - 1)
    chosen = rng.choice(pool, LATENCY_SAMPLES)
    prefixes = [flat[offsets[p] : offsets[p] + depth].tolist() for p in chosen.tolist()]
    return prefixes, inside.size / (len(offsets) - 1)


LOAD_SNIPPET = """
import json, sys, time
sys.path.insert(0, {root!r})
import numpy, marisa_trie, psutil
from selfretrieval_integrations.index import PassageTrie
proc = psutil.Process()
before = proc.memory_info().rss
t0 = time.perf_counter()
trie = PassageTrie.load({folder!r}, mmap=True)
load_s = time.perf_counter() - t0
t1 = time.perf_counter()
trie.next_tokens([])
first_s = time.perf_counter() - t1
print(json.dumps({{"load_s": load_s, "first_lookup_s": first_s,
                  "rss_delta_bytes": proc.memory_info().rss - before}}))
"""


def dir_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir())


def versions() -> dict[str, object]:
    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {
        "cpu_count": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "total_memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "marisa-trie": version("marisa-trie"),
        "platform": platform.platform(),
    }


# ---------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-passages", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks/results/trie.json")
    args = parser.parse_args()
    n = args.n_passages
    rng = np.random.default_rng(args.seed + 1)
    report: dict[str, object] = {"n_passages": n, "seed": args.seed, "machine": versions()}
    report["load_average_at_start"] = list(os.getloadavg())

    print(f"generating {n:,} passages ...", flush=True)
    flat, offsets, titles = make_corpus(n, args.seed)
    report["corpus"] = {
        "tokens": len(flat),
        "mean_key_len": float(len(flat) / n),
        "titles": max(1, n // 20),
    }

    print("building PassageTrie (flat arrays) ...", flush=True)
    before = rss()
    with PeakRss() as peak:
        t0 = time.perf_counter()
        trie = PassageTrie.build_flat(flat, offsets, titles, show_progress=True)
        build_s = time.perf_counter() - t0
    built_rss = rss() - before
    cut = trie.unique_depths()  # the stored (cut) key length of every passage
    filter_mask = np.random.default_rng(args.seed + 2).random(n) < 0.5
    t0 = time.perf_counter()
    trie.allowed_leaf_counts(filter_mask)
    filter_s = time.perf_counter() - t0
    del filter_mask

    print("building PassageTrie (from Python lists) ...", flush=True)
    lists = [flat[a:b].tolist() for a, b in itertools.pairwise(offsets.tolist())]
    t0 = time.perf_counter()
    PassageTrie.build(lists, titles.tolist())
    build_lists_s = time.perf_counter() - t0
    del lists
    gc.collect()

    with tempfile.TemporaryDirectory() as tmp:
        folder = trie.save(Path(tmp) / "trie")
        marisa_bytes = (folder / "trie.marisa").stat().st_size
        disk_bytes = dir_size(folder)
        array_bytes = trie.nbytes
        structure_bytes = array_bytes + marisa_bytes
        per_array = dict(sorted(trie.array_nbytes().items()))

        print("timing load (fresh process) ...", flush=True)
        loads = []
        for _ in range(3):
            out = subprocess.run(
                [sys.executable, "-c", LOAD_SNIPPET.format(root=str(ROOT), folder=str(folder))],
                capture_output=True,
                text=True,
                check=True,
            )
            loads.append(json.loads(out.stdout))
        load = min(loads, key=lambda r: r["load_s"])
        t0 = time.perf_counter()
        loaded = PassageTrie.load(folder, mmap=True)
        load_inproc_s = time.perf_counter() - t0

        print("timing next_tokens ...", flush=True)
        lat: dict[str, dict[str, float]] = {}
        lat_inmem: dict[str, dict[str, float]] = {}
        for d in DEPTHS:
            prefixes, frac_inside = sample_prefixes(cut, flat, offsets, d, rng)
            lat[str(d)] = {**latency(loaded, prefixes), "keys_deeper_than_prefix": frac_inside}
            lat_inmem[str(d)] = latency(trie, prefixes)
        del loaded

    print("building the dict trie of the same cut keys ...", flush=True)
    sample_n = min(n, DICT_SAMPLE)
    sample = np.sort(rng.choice(n, sample_n, replace=False)) if sample_n < n else np.arange(n)
    keys_small = cut_keys(cut, flat, offsets, sample)
    dict_small = measure_dict(keys_small, sample.tolist())
    del keys_small
    estimate_full = dict_small["rss_bytes"] * n / sample_n
    if sample_n == n:
        dict_full = {**dict_small, "extrapolated": False}
    elif estimate_full < 0.4 * psutil.virtual_memory().available:
        keys_all = cut_keys(cut, flat, offsets, np.arange(n))
        dict_full = {**measure_dict(keys_all, list(range(n))), "extrapolated": False}
        del keys_all
    else:
        dict_full = {
            "n_passages": n,
            "build_s": dict_small["build_s"] * n / sample_n,
            "rss_bytes": estimate_full,
            "extrapolated": True,
        }
    gc.collect()

    # The research-code baseline for context: a dict trie of the full (uncut) keys, 10k sample.
    full_n = min(n, 10_000)
    full_sample = rng.choice(n, full_n, replace=False)
    full_keys = [flat[offsets[p] : offsets[p + 1]].tolist() for p in full_sample.tolist()]
    dict_uncut = measure_dict(full_keys, full_sample.tolist())
    dict_uncut_rss = dict_uncut["rss_bytes"] * n / full_n
    del full_keys

    ratio_arrays = dict_full["rss_bytes"] / structure_bytes
    ratio_rss = dict_full["rss_bytes"] / max(built_rss, 1)
    report.update(
        {
            "trie": {
                "n_nodes": trie.n_nodes,
                "n_internal": trie.n_internal,
                "n_leaves": trie.n_leaves,
                "n_marisa_keys": len(trie.node_of_key),
                "n_stored_label_tokens": len(trie.label_code),
                "token_dtype": trie.token_dtype.name,
                "mean_cut_len": float(cut.mean()),
                "max_cut_len": int(cut.max()),
                "build_flat_s": build_s,
                "build_lists_s": build_lists_s,
                "build_peak_rss_delta_bytes": peak.peak - before,
                "rss_delta_bytes": built_rss,
                "array_bytes": array_bytes,
                "marisa_bytes": marisa_bytes,
                "structure_bytes": structure_bytes,
                "array_bytes_by_name": per_array,
                "disk_bytes": disk_bytes,
                "allowed_leaf_counts_s": filter_s,
                "load_s": load["load_s"],
                "load_runs_s": [r["load_s"] for r in loads],
                "load_first_lookup_s": load["first_lookup_s"],
                "load_rss_delta_bytes": load["rss_delta_bytes"],
                "load_in_process_s": load_inproc_s,
                "next_tokens_mmap": lat,
                "next_tokens_in_memory": lat_inmem,
            },
            "dict_trie_cut_keys": {
                **dict_full,
                "measured_at": sample_n if dict_full["extrapolated"] else n,
            },
            "dict_trie_full_keys": {
                "rss_bytes": dict_uncut_rss,
                "measured_at": full_n,
                "extrapolated": full_n < n,
            },
            "memory_ratio_vs_dict": ratio_arrays,
            "memory_ratio_vs_dict_rss": ratio_rss,
            "memory_ratio_vs_uncut_dict": dict_uncut_rss / structure_bytes,
            "targets": TARGETS,
        }
    )
    report["load_average_at_end"] = list(os.getloadavg())
    worst_median = max(v["median_us"] for v in lat.values())
    report["targets_met"] = {
        "memory_ratio": ratio_arrays >= TARGETS["memory_ratio_min"],
        "median_lookup": worst_median <= TARGETS["median_lookup_us_max"],
        "load": load["load_s"] <= TARGETS["load_s_max"],
    }

    mib = 2**20
    extrap = f" (extrapolated from {sample_n:,})" if dict_full["extrapolated"] else ""
    rows = [
        (
            "passages / leaves / internal nodes",
            f"{n:,} / {trie.n_leaves:,} / {trie.n_internal:,}",
        ),
        ("mean / max cut length (tokens)", f"{cut.mean():.1f} / {int(cut.max())}"),
        ("build (flat arrays)", f"{build_s:.1f} s"),
        ("build (from Python lists)", f"{build_lists_s:.1f} s"),
        ("build peak RSS delta", f"{(peak.peak - before) / mib:,.0f} MiB"),
        ("trie RSS delta after build", f"{built_rss / mib:,.1f} MiB"),
        ("arrays + marisa", f"{array_bytes / mib:,.1f} + {marisa_bytes / mib:,.1f} MiB"),
        ("disk", f"{disk_bytes / mib:,.1f} MiB"),
        ("allowed_leaf_counts (50 % mask)", f"{filter_s * 1e3:.1f} ms"),
        (
            "dict trie, same cut keys",
            f"{dict_full['rss_bytes'] / mib:,.0f} MiB RSS, {dict_full['build_s']:.1f} s{extrap}",
        ),
        ("memory ratio dict / trie", f"{ratio_arrays:.1f}x (RSS: {ratio_rss:.1f}x)"),
        (
            "dict trie, full keys (research code)",
            f"{dict_uncut_rss / mib:,.0f} MiB (from {full_n:,}), "
            f"ratio {dict_uncut_rss / structure_bytes:.0f}x",
        ),
        ("mmap load, fresh process", f"{load['load_s'] * 1e3:.1f} ms (page cache warm)"),
        ("mmap load RSS delta", f"{load['rss_delta_bytes'] / mib:.1f} MiB"),
    ]
    for d in DEPTHS:
        v = lat[str(d)]
        rows.append(
            (
                f"next_tokens depth {d:>2} (mmap)",
                f"median {v['median_us']:.1f} us, p99 {v['p99_us']:.1f} us "
                f"(in memory: {lat_inmem[str(d)]['median_us']:.1f} us)",
            )
        )
    width = max(len(r[0]) for r in rows)
    print()
    print(f"{'PassageTrie benchmark':<{width}}  {n:,} passages, seed {args.seed}")
    print("-" * (width + 60))
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    print("-" * (width + 60))
    print("targets met:", report["targets_met"])

    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
