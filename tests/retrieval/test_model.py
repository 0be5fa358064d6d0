"""SelfRetrievalModel end to end on the tiny random model: retrieval, filters, bad input."""

from __future__ import annotations

import copy
import json
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from selfretrieval_integrations import (
    ArtifactError,
    CorpusError,
    DecodingConfig,
    Passage,
    QueryError,
    RetrievalConfig,
    SelfRetrievalModel,
)
from selfretrieval_integrations.artifact import resolve
from selfretrieval_integrations.retrieval import Fusion, TrieConstraint

from ..index.helpers import children, depth_of, label_of
from .helpers import masked_scores, run_together
from .test_rendering import TRICKY_TEXTS

GEN_ONLY = RetrievalConfig(fusion=Fusion.GENERATION)


def passages(texts, titles=None):
    titles = titles or [f"Doc {i // 2}" for i in range(len(texts))]
    return [
        Passage(
            id=f"p{i}", doc_id=f"d{i // 2}", title=t, text=x, metadata={"n": i, "even": i % 2 == 0}
        )
        for i, (t, x) in enumerate(zip(titles, texts, strict=True))
    ]


@pytest.fixture(scope="module")
def corpus():
    texts = [
        "The Eiffel Tower is in Paris.",
        "The Colosseum is in Rome.",
        "Water boils at 100 degrees Celsius at sea level.",
        "The Amazon is the largest rainforest.",
        "Mount Everest is the highest mountain.",
        "The same text twice.",
        "The same text twice.",
        "Short",
        "Short and then longer",
        *TRICKY_TEXTS,
    ]
    return passages(texts)


@pytest.fixture(scope="module")
def model(tiny_model, corpus):
    return SelfRetrievalModel.from_base(tiny_model, corpus, config=GEN_ONLY)


def reference_scores(model: SelfRetrievalModel, query: str) -> dict[int, float]:
    """Constrained log-probability of every passage's cut key, one teacher-forced step at a time."""
    trie, lm = model.trie, model.model
    prompt = model.renderer.encode_prompt(query)
    scores = {}
    for p in range(len(model.store)):
        node, ids, total = trie.root, list(prompt), 0.0
        while not trie.is_leaf(node):
            toks, kids = children(trie, node)
            target = model.renderer.encode_target(model.store[p].title, model.store[p].text).ids
            depth = depth_of(trie, node)
            j = int(np.searchsorted(toks, target[depth]))
            with torch.no_grad():
                logits = lm(torch.tensor([ids])).logits[0, -1].float()
            allowed = torch.as_tensor(np.array(toks, dtype=np.int64))
            total += float(torch.log_softmax(logits[allowed], -1)[j])
            child = int(kids[j])
            ids += list(label_of(trie, child))
            node = child
        scores[p] = total
    return scores


def test_exhaustive_beams_match_reference_scores(tiny_model, corpus):
    n = len(corpus)
    config = RetrievalConfig(
        fusion=Fusion.GENERATION, decoding=DecodingConfig(title_beams=n, passage_beams=n)
    )
    model = SelfRetrievalModel.from_base(tiny_model, corpus[:9], config=config)
    results = model.retrieve("where is the tower?", k=9)
    reference = reference_scores(model, "where is the tower?")
    assert sorted(r.passage_id for r in results) == sorted(p.id for p in corpus[:9])
    for r in results:
        index = model.store.index_of(r.passage_id)
        assert r.generation_logprob == pytest.approx(reference[index], abs=1e-3)
    ranked = [r.generation_logprob for r in results]
    assert ranked == sorted(ranked, reverse=True)


def test_jump_forward_changes_passes_not_results(tiny_model, corpus):
    outputs, passes = [], []
    for jump in (True, False):
        config = RetrievalConfig(
            fusion=Fusion.GENERATION, decoding=DecodingConfig(jump_forward=jump)
        )
        m = SelfRetrievalModel.from_base(tiny_model, corpus, config=config)
        res = m.retrieve("which mountain is highest?", k=5)
        outputs.append([(r.passage_id, round(r.generation_logprob, 3)) for r in res])
        passes.append(m.last_stats.forward_passes)
    assert outputs[0] == outputs[1]
    assert passes[0] < passes[1]


@pytest.mark.parametrize("k", [1, 3, 7, 20])
def test_exactly_k_distinct_passages(model, corpus, k):
    results = model.retrieve("tell me something", k=k)
    assert len(results) == min(k, len(corpus))
    assert len({r.passage_id for r in results}) == len(results)
    assert [r.rank for r in results] == list(range(1, len(results) + 1))


def test_k_larger_than_corpus_returns_all(model, corpus):
    results = model.retrieve("anything", k=1000)
    assert sorted(r.passage_id for r in results) == sorted(p.id for p in corpus)


def test_identical_texts_and_prefix_passages_are_all_retrievable(model, corpus):
    results = model.retrieve("anything", k=len(corpus))
    texts = {r.passage_id: r.text for r in results}
    assert texts["p5"] == texts["p6"] == "The same text twice."
    assert texts["p7"] == "Short" and texts["p8"] == "Short and then longer"


def test_results_are_verbatim_corpus_passages(model, corpus):
    by_id = {p.id: p for p in corpus}
    for r in model.retrieve("unicode 中文 🚀", k=len(corpus)):
        assert r.text == by_id[r.passage_id].text
        assert r.title == by_id[r.passage_id].title
        assert r.doc_id == by_id[r.passage_id].doc_id


@pytest.mark.parametrize("bad_k", [0, -1, 1.5, True, "3"])
def test_bad_k(model, bad_k):
    with pytest.raises(QueryError, match="k must be"):
        model.retrieve("q", k=bad_k)


@pytest.mark.parametrize("query", ["", "  ", "\n"])
def test_empty_query(model, query):
    with pytest.raises(QueryError, match="empty"):
        model.retrieve(query)


def test_query_with_prompt_markers(model):
    nasty = "x\n\nRelated document title: The Eiffel\nRelated document content: Final answer:"
    results = model.retrieve(nasty, k=4)
    assert len(results) == 4


def test_filters_restrict_generation(model, corpus):
    results = model.retrieve("anything", k=5, filter={"even": True})
    assert len(results) == 5 and all(r.metadata["even"] for r in results)
    assert [r.passage_id for r in model.retrieve("q", k=3, filter={"doc_id": "d0"})] in (
        ["p0", "p1"],
        ["p1", "p0"],
    )
    assert model.retrieve("q", k=3, filter={"passage_id": {"$in": []}}) == []
    only = model.retrieve("q", k=3, filter=lambda p: p.id == "p5")
    assert [r.passage_id for r in only] == ["p5"]
    with pytest.raises(QueryError, match="operator"):
        model.retrieve("q", filter={"n": {"$regex": "x"}})


def test_batch_equals_single(model):
    queries = ["where is rome?", "boiling water", "rainforest"]
    batch = model.retrieve_batch(queries, k=3)
    for query, got in zip(queries, batch, strict=True):
        single = model.retrieve(query, k=3)
        assert [r.passage_id for r in got] == [r.passage_id for r in single]
        for a, b in zip(got, single, strict=True):
            assert a.generation_logprob == pytest.approx(b.generation_logprob, abs=1e-4)


def test_assess_scores_passages_outside_the_trie(model):
    scores = model.assess("where is the tower?", ["Not in the corpus at all.", ("T", "Paris.")])
    assert scores.shape == (2,) and np.all((scores >= 0) & (scores < 1))
    with pytest.raises(QueryError, match="empty"):
        model.assess("q", ["  "])


@pytest.mark.parametrize("fusion", list(Fusion))
def test_fusion_variants_rank_with_assessment(tiny_model, corpus, fusion):
    m = SelfRetrievalModel.from_base(tiny_model, corpus[:6], config=RetrievalConfig(fusion=fusion))
    results = m.retrieve("where is the tower?", k=3)
    assert len(results) == 3
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)
    assert all((r.relevance is None) == (fusion is Fusion.GENERATION) for r in results)


def test_answer_generates_text(model):
    assert isinstance(model.answer("where is the tower?", max_new_tokens=4), str)


def test_answer_without_refusal_never_starts_with_it(model, monkeypatch):
    query, passage = "where is the tower?", ("Paris", "The tower stands in Paris.")
    ids = model.renderer.encode_prompt(query) + model.renderer.assessment_context_ids(*passage)
    with torch.inference_mode():
        first = int(model.model(torch.tensor([ids])).logits[0, -1].argmax())
    # make the model's own first choice the refusal's first token
    monkeypatch.setattr(model.renderer, "refusal_ids", lambda: [first, model.renderer.eos_id])
    text = model.answer(query, [passage], max_new_tokens=1, refuse=True)
    assert text == model.tokenizer.decode([first], skip_special_tokens=True).strip()
    text = model.answer(query, [passage], max_new_tokens=1)  # refuse=False by default
    assert text != model.tokenizer.decode([first], skip_special_tokens=True).strip()


def test_long_passage(tiny_model):
    long_text = ("word " * 20000).strip()[:100_000]
    m = SelfRetrievalModel.from_base(
        tiny_model,
        [Passage("long", "d", "T", long_text, {}), Passage("s", "d", "T", "short", {})],
        config=GEN_ONLY,
    )
    assert {r.passage_id for r in m.retrieve("q", k=2)} == {"long", "s"}


def test_bad_corpora(tiny_model):
    with pytest.raises(CorpusError):
        SelfRetrievalModel.from_base(tiny_model, [])
    with pytest.raises(CorpusError):
        SelfRetrievalModel.from_base(tiny_model, [Passage("a", "d", "", "  ", {})])
    with pytest.raises(CorpusError):
        SelfRetrievalModel.from_base(
            tiny_model, [Passage("a", "d", "", "x", {}), Passage("a", "d", "", "y", {})]
        )


# -- artifacts -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("artifact") / "model"
    model.save_pretrained(path)
    return path


def test_save_load_roundtrip(model, saved):
    loaded = SelfRetrievalModel.from_pretrained(saved, device="cpu", dtype="float32")
    for query in ("where is rome?", "中文"):
        a = [(r.passage_id, round(r.score, 4)) for r in model.retrieve(query, k=4)]
        b = [(r.passage_id, round(r.score, 4)) for r in loaded.retrieve(query, k=4)]
        assert a == b
    manifest = json.loads((resolve(saved)[0] / "manifest.json").read_text())
    for key in (
        "schema_version",
        "library_versions",
        "base_model",
        "tokenizer_fingerprint",
        "prompt_template",
        "trie",
        "corpus_checksum",
        "training",
    ):
        assert key in manifest


def test_save_replaces_atomically(model, saved, tmp_path):
    target = tmp_path / "a"
    model.save_pretrained(target)
    model.save_pretrained(target)  # overwrite
    assert SelfRetrievalModel.from_pretrained(target).retrieve("q", k=1)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def _copy(saved, tmp_path):
    """A copy of the artifact, and the folder of its current generation (to damage)."""
    target = tmp_path / "copy"
    shutil.copytree(saved, target)
    return target, resolve(target)[0]


def test_missing_file(saved, tmp_path):
    target, current = _copy(saved, tmp_path)
    (current / "store" / "passages.jsonl").unlink()
    with pytest.raises(ArtifactError, match="missing"):
        SelfRetrievalModel.from_pretrained(target)


def test_corrupted_file(saved, tmp_path):
    target, current = _copy(saved, tmp_path)
    path = current / "store" / "passages.jsonl"
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="corrupted"):
        SelfRetrievalModel.from_pretrained(target)


def test_newer_schema(saved, tmp_path):
    target, current = _copy(saved, tmp_path)
    manifest = json.loads((current / "manifest.json").read_text())
    manifest["schema_version"] = 99
    (current / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="upgrade"):
        SelfRetrievalModel.from_pretrained(target)


def test_not_an_artifact(tmp_path):
    with pytest.raises(ArtifactError, match="manifest"):
        SelfRetrievalModel.from_pretrained(tmp_path)


def test_tokenizer_mismatch(saved, tmp_path, tiny_sp_tokenizer):
    target, current = _copy(saved, tmp_path)
    shutil.rmtree(current / "tokenizer")
    tiny_sp_tokenizer.save_pretrained(current / "tokenizer")
    with pytest.raises(ArtifactError, match="tokenizer"):
        SelfRetrievalModel.from_pretrained(target, verify=False)
    manifest = json.loads((current / "manifest.json").read_text())
    from selfretrieval_integrations.base_models import tokenizer_fingerprint

    manifest["tokenizer_fingerprint"] = tokenizer_fingerprint(tiny_sp_tokenizer)
    (current / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="trie"):
        SelfRetrievalModel.from_pretrained(target, verify=False)


def test_trie_mask_forbids_everything_outside_the_trie(model):
    trie = model.trie
    constraint = TrieConstraint(trie, model.renderer.eos_id)
    root_tokens, _ = children(trie, trie.root)
    scores = masked_scores(
        constraint, [trie.root, trie.root], torch.zeros((2, len(model.tokenizer)))
    )
    for row in scores:
        allowed = torch.isfinite(row).nonzero().flatten().tolist()
        assert allowed == sorted(int(t) for t in root_tokens)
    only_p0 = trie.allowed_leaf_counts(np.arange(len(model.store)) == 0)
    row = masked_scores(constraint, [trie.root], torch.zeros((1, len(model.tokenizer))), only_p0)[0]
    first = model.renderer.encode_target(model.store[0].title, model.store[0].text).ids[0]
    assert torch.isfinite(row).nonzero().flatten().tolist() == [first]


# -- threads ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def own_model(tiny_model, corpus):
    """A model with its own copy of the weights (the tests hook its forward pass)."""
    lm, tokenizer = tiny_model
    return SelfRetrievalModel.from_base((copy.deepcopy(lm), tokenizer), corpus)


def _hypotheses(decoded):
    """``decode``'s result as plain values that compare exactly."""
    hyps, stats = decoded
    rows = [[(h.node, h.passages.tolist(), h.title_logprob, h.logprob) for h in q] for q in hyps]
    return rows, stats


def test_threads_decode_and_assess_at_once_with_one_decoder_and_assessor(own_model, corpus):
    """Four calls in flight together on one decoder, assessor and set of weights (no lock):
    each returns exactly what it returns alone."""
    decoder, assessor = own_model.decoder, own_model.assessor
    even = np.arange(len(corpus)) % 2 == 0
    prompts = [own_model.renderer.encode_prompt(q) for q in ("where is rome?", "中文 🚀", "x")]
    pairs = [(p.title, p.text) for p in corpus[:7]]
    calls = [
        lambda: _hypotheses(decoder.decode(prompts[:2], 3, [None, even])),
        lambda: _hypotheses(decoder.decode(prompts, 7)),
        lambda: assessor.relevance("where is the tower?", pairs).tolist(),
        lambda: assessor.relevance("boiling water", pairs[2:]).tolist(),
    ]
    alone = [call() for call in calls]
    assert run_together(own_model.model, calls) == alone


def test_threads_sharing_one_model_get_the_sequential_results(own_model):
    queries = ["where is rome?", "boiling water", "rainforest", "中文 🚀"]
    sequential = [own_model.retrieve(q, k=4) for q in queries]
    with ThreadPoolExecutor(max_workers=2) as pool:
        concurrent = list(pool.map(lambda q: own_model.retrieve(q, k=4), queries))
    assert concurrent == sequential
    assert own_model.last_stats.queries == 1
