from __future__ import annotations

import json

from .scripts import load_benchmark

keyword_titles = load_benchmark("keyword_titles")


def test_keywords_rank_words_siblings_share_below_their_own():
    texts = [
        "Oxygen reacts with iron.",
        "Oxygen was found by Priestley.",
        "Rivers carry oxygen to the sea.",
    ]
    words = keyword_titles.keywords(texts, ["Oxygen", "Oxygen", "Rivers"], 3)
    assert words[0] == ["reacts", "iron", "oxygen"]  # equal scores: the word met first
    assert words[1] == ["priestley", "oxygen"]  # stop words never count
    assert words[2] == ["rivers", "carry", "sea"]  # "oxygen", in every text, ranks last


def test_the_copy_keeps_ids_queries_and_qrels(tmp_path):
    source = tmp_path / "beir"
    (source / "qrels").mkdir(parents=True)
    rows = [
        {"_id": "a", "title": "Oxygen", "text": "Oxygen reacts with iron."},
        {"_id": "b", "title": "Oxygen", "text": "Oxygen was found by Priestley."},
    ]
    (source / "corpus.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (source / "queries.jsonl").write_text('{"_id": "q", "text": "who found oxygen?"}\n')
    (source / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq\tb\t1\n")
    out = tmp_path / "copy"
    assert keyword_titles.main(["--data", str(source), "--out", str(out), "--keywords", "1"]) == 0
    copied = [json.loads(line) for line in (out / "corpus.jsonl").read_text().splitlines()]
    assert [r["_id"] for r in copied] == ["a", "b"]
    assert [r["title"] for r in copied] == ["Oxygen: reacts", "Oxygen: priestley"]
    assert (out / "qrels" / "test.tsv").read_text() == (source / "qrels" / "test.tsv").read_text()
    assert (out / "queries.jsonl").exists()
