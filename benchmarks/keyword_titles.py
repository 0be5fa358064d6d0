"""A copy of a BEIR corpus folder whose titles carry each passage's keywords: an experiment on
identifiers that tell passages of one article apart (issue 14, item 2).

Passages of one SQuAD article share a title and often a generic opening, so after the title the
trie branches on words the question says nothing about. Here each title is followed by the
passage's ``--keywords`` highest TF-IDF words (IDF over the corpus and over the passages of its
title, so words every passage of an article shares rank low), e.g. ``Oxygen: priestley, gas,
breathing``. The model then generates words a question may share before it must choose among
siblings. Training and evaluation run unchanged on the copy (queries and qrels are copied)::

    python benchmarks/keyword_titles.py --out runs/quickstart-keywords
    python benchmarks/ablations.py training --data runs/quickstart-keywords --variants ql \\
        --workdir runs/ablations-keywords \\
        --output benchmarks/results/ablation-training-ql-keyword-titles.json
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer


def keywords(texts: list[str], groups: list[str], n: int) -> list[list[str]]:
    """The ``n`` words of each text with the highest TF-IDF, the IDF taken over the whole corpus
    times the IDF over the texts of its group (one title), so that a word every sibling shares
    ranks low (ties: the word met first)."""
    vectorizer = TfidfVectorizer(
        stop_words="english", token_pattern=r"(?u)\b[A-Za-z][A-Za-z-]{2,}\b", lowercase=True
    )
    weights = vectorizer.fit_transform(texts).toarray()
    vocabulary = vectorizer.get_feature_names_out()
    present = weights > 0
    chosen = []
    for row, text in enumerate(texts):
        siblings = [i for i, group in enumerate(groups) if group == groups[row]]
        df = present[siblings].sum(axis=0)
        sibling_idf = np.log((1 + len(siblings)) / (1 + df)) + 1
        scores = weights[row] * sibling_idf
        lowered = text.lower()
        order = sorted(
            np.flatnonzero(scores), key=lambda j: (-scores[j], lowered.find(vocabulary[j]))
        )
        chosen.append([str(vocabulary[j]) for j in order[:n]])
    return chosen


def main(argv: list[str] | None = None) -> int:
    from selfretrieval_integrations.corpus import quickstart_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=quickstart_dir(), help="a BEIR folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--keywords", type=int, default=3)
    args = parser.parse_args(argv)

    rows = [
        json.loads(line)
        for line in (args.data / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    titles = [row.get("title", "") for row in rows]
    words = keywords([row["text"] for row in rows], titles, args.keywords)
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "corpus.jsonl").open("w", encoding="utf-8") as handle:
        for row, chosen in zip(rows, words, strict=True):
            row = {**row, "title": f"{row.get('title', '')}: {', '.join(chosen)}"}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    shutil.copy(args.data / "queries.jsonl", args.out / "queries.jsonl")
    shutil.copytree(args.data / "qrels", args.out / "qrels", dirs_exist_ok=True)
    for title, chosen in list(zip(titles, words, strict=True))[:3]:
        print(title, "->", ", ".join(chosen))
    print(f"wrote {args.out} ({len(rows)} passages)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
