"""Fingerprint what the library builds and retrieves, to show a refactor changed no behaviour.

Builds artifacts over the bundled corpus with the tiny test model and with the offline
SmolLM2-135M (zero-shot), then records the sha256 of every trie and store file and the ranked
results (ids and rounded scores) for the bundled held-out questions. Two runs on different code
should print the same digests.

    python benchmarks/behaviour_snapshot.py --out /tmp/snapshot.json [--models tiny smollm2-135m]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _digest_folder(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def snapshot(model_name: str, n_queries: int) -> dict:
    from selfretrieval_integrations import SelfRetrievalModel, load_corpus
    from selfretrieval_integrations.corpus import load_beir_queries, quickstart_dir

    corpus = load_corpus(quickstart_dir())
    model = SelfRetrievalModel.from_base(model_name, corpus, dtype="float32")
    queries = sorted(load_beir_queries(quickstart_dir()).items())[:n_queries]
    with tempfile.TemporaryDirectory() as tmp:
        model.trie.save(Path(tmp) / "trie")
        model.store.save(Path(tmp) / "store")
        files = _digest_folder(Path(tmp))
    results = {
        qid: [(r.passage_id, round(r.score, 4)) for r in model.retrieve(text, k=5)]
        for qid, text in queries
    }
    digest = hashlib.sha256(json.dumps(results, sort_keys=True).encode()).hexdigest()
    return {"files": files, "results_sha256": digest, "results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tiny", "smollm2-135m"])
    parser.add_argument("--queries", type=int, default=12)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    report = {m: snapshot(m, args.queries) for m in args.models}
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, str(ROOT / "benchmarks/make_bundled_corpus.py"), "--out", tmp],
            check=True,
            capture_output=True,
        )
        report["bundled_corpus"] = _digest_folder(Path(tmp))
    bundled = _digest_folder(ROOT / "selfretrieval_integrations/data/quickstart")
    report["bundled_corpus_matches_package"] = bundled == report["bundled_corpus"]
    args.out.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    for name in args.models:
        print(
            name,
            "results",
            report[name]["results_sha256"][:16],
            "trie+store",
            hashlib.sha256(json.dumps(report[name]["files"]).encode()).hexdigest()[:16],
        )
    print("bundled corpus rebuilt identically:", report["bundled_corpus_matches_package"])


if __name__ == "__main__":
    main()
