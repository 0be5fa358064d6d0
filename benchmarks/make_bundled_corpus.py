"""Write the small bundled corpus (``selfretrieval_integrations/data/quickstart/``) from SQuAD.

The quickstart and the tests need a real corpus that ships with the package, is small enough to
index in seconds on a CPU, and has questions with known relevant passages. This script takes 4
articles of the SQuAD v1.1 development set (the first 8 paragraphs of each) and writes them in the
BEIR layout. It is deterministic: running it again writes byte-identical files.

Usage::

    python benchmarks/make_bundled_corpus.py [--source ../shared/data/squad-dev-v1.1.zip]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "squad-dev-v1.1.zip"
DEFAULT_OUT = ROOT / "selfretrieval_integrations" / "data" / "quickstart"
SOURCE_URL = "https://rajpurkar.github.io/SQuAD-explorer/dataset/dev-v1.1.json"
JSON_NAME = "dev-v1.1.json"
JSON_MD5 = "3e85deb501d4e538b6bc56f786231552"

#: Four distinct topics (education, computer science, chemistry, history) with short paragraphs.
ARTICLES = ("Teacher", "Computational_complexity_theory", "Oxygen", "Genghis_Khan")
PARAGRAPHS_PER_ARTICLE = 8
SEED = 2016

ATTRIBUTION = """\
# Attribution

The files in this folder (`corpus.jsonl`, `queries.jsonl`, `qrels/train.tsv`, `qrels/test.tsv`)
are derived from **SQuAD v1.1** (the Stanford Question Answering Dataset, development set):

> Pranav Rajpurkar, Jian Zhang, Konstantin Lopyrev and Percy Liang. 2016.
> SQuAD: 100,000+ Questions for Machine Comprehension of Text. EMNLP 2016.
> https://rajpurkar.github.io/SQuAD-explorer/

SQuAD v1.1 is distributed under the Creative Commons Attribution-ShareAlike 4.0 licence
(CC BY-SA 4.0, https://creativecommons.org/licenses/by-sa/4.0/); these derived files are shared
under the same licence. The paragraphs come from English Wikipedia articles, themselves under
CC BY-SA; the articles used are (Wikipedia titles):

{articles}

What was taken: the first {paragraphs} paragraphs of each article, and every question written for
those paragraphs with its answers. The paragraph and question texts are unmodified (copied
verbatim). Changes: the layout (BEIR: one document per paragraph with the id
`<Article_Title>_<paragraph index>` and the article title as title) and a split of the questions
of each paragraph into train and test by a seeded shuffle (seed {seed}). The files are written by
`benchmarks/make_bundled_corpus.py`.
"""


def load_squad(source: Path) -> dict[str, Any]:
    """Read the SQuAD dev JSON from the zip (or a bare .json) and check it is the expected file."""
    if not source.is_file():
        raise SystemExit(
            f"error: the SQuAD v1.1 dev set was not found at {source}.\n"
            f"Get it with:\n"
            f"    mkdir -p {DEFAULT_SOURCE.parent}\n"
            f"    curl -L -o {JSON_NAME} {SOURCE_URL}\n"
            f"    zip {DEFAULT_SOURCE} {JSON_NAME}\n"
            f"or pass the zip or the bare {JSON_NAME} with --source PATH."
        )
    if source.suffix == ".zip":
        with zipfile.ZipFile(source) as archive:
            if JSON_NAME not in archive.namelist():
                raise SystemExit(
                    f"error: {source} does not contain {JSON_NAME} (it has "
                    f"{archive.namelist()}); rebuild the zip from {SOURCE_URL}."
                )
            raw = archive.read(JSON_NAME)
    else:
        raw = source.read_bytes()
    digest = hashlib.md5(raw).hexdigest()
    if digest != JSON_MD5:
        raise SystemExit(
            f"error: {JSON_NAME} from {source} has md5 {digest}, expected {JSON_MD5}; it is not "
            f"the SQuAD v1.1 dev set this corpus is made from. Download it again from "
            f"{SOURCE_URL}."
        )
    data: dict[str, Any] = json.loads(raw)
    return data


Qrels = dict[str, list[tuple[str, str]]]


def build(
    squad: dict[str, Any],
    titles: tuple[str, ...] | list[str] = ARTICLES,
    paragraphs_per_article: int | None = PARAGRAPHS_PER_ARTICLE,
    seed: int = SEED,
    split_by: str = "question",
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Qrels]:
    """Documents, queries and qrels ({split: [(query id, doc id)]}) of the chosen articles.

    ``split_by="question"`` sends half of each paragraph's questions to test; ``"paragraph"``
    sends every question of a seeded half of each article's paragraphs to test, so test
    passages have no training question at all (generalisation to passages seen only through
    indexing). Also used by ``squad.py`` for the benchmark slices.
    """
    if split_by not in ("question", "paragraph"):
        raise SystemExit(f"error: split_by must be 'question' or 'paragraph', got {split_by!r}")
    articles = {article["title"]: article for article in squad["data"]}
    missing = [title for title in titles if title not in articles]
    if missing:
        raise SystemExit(f"error: articles {missing} are not in the SQuAD dev set.")
    documents: list[dict[str, Any]] = []
    queries: list[dict[str, Any]] = []
    qrels: Qrels = {"train": [], "test": []}
    for title in titles:
        kept = articles[title]["paragraphs"][:paragraphs_per_article]
        order = list(range(len(kept)))
        random.Random(f"{seed}:{title}:paragraphs").shuffle(order)
        test_paragraphs = set(order[: (len(order) + 1) // 2])
        for index, paragraph in enumerate(kept):
            doc_id = f"{title}_{index}"
            documents.append(
                {
                    "_id": doc_id,
                    "title": title.replace("_", " "),
                    "text": paragraph["context"],
                    "metadata": {"article": title, "paragraph": index},
                }
            )
            question_ids = [qa["id"] for qa in paragraph["qas"]]
            shuffled = sorted(question_ids)
            random.Random(f"{seed}:{doc_id}").shuffle(shuffled)
            test = set(shuffled[: (len(shuffled) + 1) // 2])  # at least one question in test
            if split_by == "paragraph":
                test = set(question_ids) if index in test_paragraphs else set()
            for qa in paragraph["qas"]:
                answers = [answer["text"] for answer in qa["answers"]]
                queries.append(
                    {"_id": qa["id"], "text": qa["question"], "metadata": {"answers": answers}}
                )
                split = "test" if qa["id"] in test else "train"
                qrels[split].append((qa["id"], doc_id))
    return documents, queries, qrels


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_beir(
    out: Path, documents: list[dict[str, Any]], queries: list[dict[str, Any]], qrels: Qrels
) -> None:
    """corpus.jsonl, queries.jsonl and qrels/<split>.tsv: the BEIR layout."""
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "corpus.jsonl", documents)
    write_jsonl(out / "queries.jsonl", queries)
    for split, pairs in qrels.items():
        with (out / "qrels" / f"{split}.tsv").open("w", encoding="utf-8", newline="\n") as handle:
            handle.write("query-id\tcorpus-id\tscore\n")
            handle.writelines(f"{query_id}\t{doc_id}\t1\n" for query_id, doc_id in pairs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="zip or dev json")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    args = parser.parse_args(argv)

    documents, queries, qrels = build(load_squad(args.source))
    out: Path = args.out
    write_beir(out, documents, queries, qrels)
    listed = "\n".join(
        f"- {title.replace('_', ' ')} (https://en.wikipedia.org/wiki/{title})" for title in ARTICLES
    )
    attribution = ATTRIBUTION.format(articles=listed, paragraphs=PARAGRAPHS_PER_ARTICLE, seed=SEED)
    (out / "ATTRIBUTION.md").write_text(attribution, encoding="utf-8", newline="\n")
    print(
        f"wrote {len(documents)} documents, {len(queries)} queries "
        f"({len(qrels['train'])} train, {len(qrels['test'])} test) to {out}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
