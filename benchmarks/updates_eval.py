"""Effect of ``add_documents`` and ``delete_documents`` on documents they did not touch.

Starting from a trained quickstart artifact (copied, never modified), it measures Hits@1/5 on the
test questions of the bundled corpus, then adds the first paragraphs of another SQuAD article and
measures again (untouched questions, and the new paragraphs' questions), then deletes one article
and measures the untouched questions a third time. Writes ``benchmarks/results/updates.json``.

    python benchmarks/updates_eval.py --artifact selfretrieval-quickstart
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
import zipfile
from pathlib import Path

from selfretrieval_trainer.train import TrainingConfig
from selfretrieval_trainer.updates import add_documents, delete_documents

from selfretrieval_integrations import Document, RetrievalConfig, SelfRetrievalModel
from selfretrieval_integrations.corpus import load_beir_qrels, load_beir_queries, quickstart_dir
from selfretrieval_integrations.retrieval import Fusion

ROOT = Path(__file__).resolve().parents[1]
SQUAD = ROOT.parent / "shared" / "data" / "squad-dev-v1.1.zip"
RESULTS = Path(__file__).parent / "results"


def hits(model: SelfRetrievalModel, questions: list[tuple[str, set[str]]], k: int = 5) -> dict:
    started = time.perf_counter()
    ranks = []
    for question, relevant in questions:
        docs = [r.doc_id for r in model.retrieve(question, k=k)]
        ranks.append(next((i + 1 for i, d in enumerate(docs) if d in relevant), None))
    n = len(questions)
    return {
        "questions": n,
        "hits@1": sum(r == 1 for r in ranks) / n,
        "hits@5": sum(r is not None for r in ranks) / n,
        "ms_per_query": (time.perf_counter() - started) / n * 1000,
    }


def new_article(title_index: int, paragraphs: int) -> tuple[list[Document], list[tuple[str, set]]]:
    if not SQUAD.is_file():
        raise SystemExit(f"{SQUAD} is missing: it is the SQuAD v1.1 dev set (see ../shared/data)")
    with zipfile.ZipFile(SQUAD) as archive:
        data = json.loads(archive.read("dev-v1.1.json"))["data"]
    article = data[title_index]
    title = article["title"].replace("_", " ")
    docs, questions = [], []
    for i, paragraph in enumerate(article["paragraphs"][:paragraphs]):
        doc_id = f"{article['title']}_{i}"
        docs.append(Document(id=doc_id, title=title, text=paragraph["context"]))
        questions += [(qa["question"], {doc_id}) for qa in paragraph["qas"]]
    return docs, questions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", type=Path, required=True)
    parser.add_argument("--article", type=int, default=20, help="SQuAD dev article to add")
    parser.add_argument("--paragraphs", type=int, default=4)
    parser.add_argument("--delete-prefix", default="Teacher_", help="documents to delete")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--output", type=Path, default=RESULTS / "updates.json")
    args = parser.parse_args()

    folder = quickstart_dir()
    queries = load_beir_queries(folder)
    qrels = load_beir_qrels(folder, "test")
    old_questions = [(queries[q], set(r)) for q, r in sorted(qrels.items())]
    untouched = [
        (q, r) for q, r in old_questions if not any(d.startswith(args.delete_prefix) for d in r)
    ]
    added_docs, added_questions = new_article(args.article, args.paragraphs)
    config = RetrievalConfig(fusion=Fusion.GENERATION)
    report: dict = {"artifact": str(args.artifact), "fusion": "generation", "steps": {}}

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "artifact"
        shutil.copytree(args.artifact, work)
        before = SelfRetrievalModel.from_pretrained(work, config=config)
        report["steps"]["before"] = {"untouched": hits(before, untouched)}
        del before
        started = time.perf_counter()
        added = add_documents(
            work, added_docs, config=TrainingConfig(epochs=args.epochs), show_progress=False
        )
        add_seconds = time.perf_counter() - started
        added.config = config
        report["steps"]["after_add"] = {
            "untouched": hits(added, untouched),
            "added": hits(added, added_questions),
            "seconds": add_seconds,
            "training": added.manifest.get("history", [{}])[-1].get("training"),
        }
        del added
        deleted_ids = sorted(
            {d for _, r in old_questions for d in r if d.startswith(args.delete_prefix)}
        )
        started = time.perf_counter()
        removed = delete_documents(work, deleted_ids)
        delete_seconds = time.perf_counter() - started
        after = SelfRetrievalModel.from_pretrained(work, config=config)
        leaked = sum(
            r.doc_id.startswith(args.delete_prefix)
            for q, _ in old_questions
            for r in after.retrieve(q, k=5)
        )
        report["steps"]["after_delete"] = {
            "untouched": hits(after, untouched),
            "added": hits(after, added_questions),
            "removed_passages": removed,
            "seconds": delete_seconds,
            "deleted_passages_returned": leaked,
        }
    print(f"{'step':>14} | {'untouched h@1':>13} | {'untouched h@5':>13} | {'added h@1':>9}")
    for step, row in report["steps"].items():
        added_h1 = row.get("added", {}).get("hits@1")
        print(
            f"{step:>14} | {row['untouched']['hits@1']:13.3f} | {row['untouched']['hits@5']:13.3f}"
            f" | {'' if added_h1 is None else f'{added_h1:9.3f}'}"
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
