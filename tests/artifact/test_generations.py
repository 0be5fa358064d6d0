"""Artifact generations, the writer lock, live refresh and in-process updates (tiny model)."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import signal
import time

import pytest

from selfretrieval_integrations import (
    ArtifactError,
    CorpusError,
    Passage,
    RetrievalConfig,
    SelfRetrievalModel,
    delete_documents,
)
from selfretrieval_integrations.artifact import (
    current_generation,
    generation_dir,
    generations,
    resolve,
    writer_lock,
)
from selfretrieval_integrations.retrieval import Fusion, build_trie

GEN_ONLY = RetrievalConfig(fusion=Fusion.GENERATION)
FACTS = [
    "The Eiffel Tower is in Paris.",
    "The Colosseum is in Rome.",
    "Water boils at 100 degrees Celsius.",
    "The Amazon is the largest rainforest.",
    "Mount Everest is the highest mountain.",
    "The Nile flows through Egypt.",
]


def _passages():
    return [Passage(id=f"p{i}", doc_id=f"d{i}", title=f"T{i}", text=t) for i, t in enumerate(FACTS)]


@pytest.fixture(scope="module")
def model(tiny_model):
    return SelfRetrievalModel.from_base(tiny_model, _passages(), config=GEN_ONLY)


@pytest.fixture
def art(model, tmp_path):
    path = tmp_path / "art"
    fresh = SelfRetrievalModel(
        model.model, model.tokenizer, model.trie, model.store, config=GEN_ONLY
    )
    fresh.save_pretrained(path)
    return path


def _ids(model, query="where?", k=10):
    return {r.doc_id for r in model.retrieve(query, k=k)}


def _numbers(path):
    return sorted(int(p.name) for p in (path / generations.GENERATIONS_DIR).iterdir())


# -- generations --------------------------------------------------------------------------------


def test_each_write_is_a_new_generation_and_the_pointer_names_it(art):
    assert current_generation(art) == 1
    assert (generation_dir(art, 1) / "manifest.json").is_file()
    delete_documents(art, ["d0"])
    assert current_generation(art) == 2
    folder, number = resolve(art)
    assert (folder, number) == (generation_dir(art, 2), 2)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["generation"] == 2 and manifest["schema_version"] == 2
    # Weights are shared between generations by hard link, not copied.
    weights = sorted((generation_dir(art, 2) / "model").iterdir())
    assert weights and all(p.stat().st_nlink >= 2 for p in weights)
    assert _numbers(art) == [1, 2]  # the previous generation is kept


def test_a_delete_rebuilds_the_trie_a_fresh_build_gives_from_saved_keys(art, model):
    delete_documents(art, ["d0"])  # tokenizes once and saves the keys
    assert (resolve(art)[0] / "keys" / "tokens.npy").is_file()
    delete_documents(art, ["d3"])  # from the saved keys
    loaded = SelfRetrievalModel.from_pretrained(art)
    kept = [p for p in _passages() if p.doc_id not in {"d0", "d3"}]
    fresh = build_trie(model.tokenizer, model.template, kept)
    for name in ("child_start", "child_code", "child_node", "label_code", "leaf_passages"):
        assert getattr(loaded.trie, name).tolist() == getattr(fresh, name).tolist(), name


def test_old_generations_are_removed_after_the_retention_time(art, monkeypatch):
    delete_documents(art, ["d0"])
    delete_documents(art, ["d1"])
    assert _numbers(art) == [1, 2, 3]  # generation 1 was superseded only just now
    monkeypatch.setattr(generations, "RETENTION_S", 0.0)
    time.sleep(0.01)
    delete_documents(art, ["d2"])
    assert _numbers(art) == [3, 4]


def test_a_dead_writers_leftovers_are_removed_and_never_read(art):
    half_built = art / generations.GENERATIONS_DIR / ".tmp-000002-999"
    half_built.mkdir()
    (half_built / "junk").write_text("x")
    shutil.copytree(generation_dir(art, 1), generation_dir(art, 7))  # renamed, never pointed to
    assert resolve(art) == (generation_dir(art, 1), 1)
    delete_documents(art, ["d0"])
    assert current_generation(art) == 2  # the leftovers were removed before numbering
    assert _numbers(art) == [1, 2]
    assert not half_built.exists()


def test_a_folder_of_other_files_is_not_overwritten(model, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ArtifactError, match="not an artifact"):
        model.save_pretrained(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_the_layout_before_generations_loads_and_migrates_on_write(art, tmp_path, caplog):
    legacy = tmp_path / "legacy"
    shutil.copytree(generation_dir(art, 1), legacy)
    before = {r.doc_id for r in SelfRetrievalModel.from_pretrained(legacy).retrieve("q", k=10)}
    assert before == {f"d{i}" for i in range(len(FACTS))}
    with caplog.at_level(logging.WARNING):
        delete_documents(legacy, ["d3"])
    assert "migrated" in caplog.text
    assert current_generation(legacy) == 1
    assert not (legacy / "manifest.json").exists() and not (legacy / "model").exists()
    assert "d3" not in _ids(SelfRetrievalModel.from_pretrained(legacy))


def test_a_failed_write_changes_nothing(art):
    with pytest.raises(CorpusError, match="neither"):
        delete_documents(art, ["nope"])
    assert current_generation(art) == 1 and _numbers(art) == [1]


# -- the writer lock ----------------------------------------------------------------------------


def _hold_lock(path, ready, seconds):
    with writer_lock(path, "test-holder"):
        ready.set()
        time.sleep(seconds)


def test_a_second_writer_waits_then_names_the_holder(art):
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    holder = context.Process(target=_hold_lock, args=(art, ready, 30))
    holder.start()
    try:
        assert ready.wait(60)
        started = time.monotonic()
        with pytest.raises(ArtifactError, match=rf"pid {holder.pid}.*test-holder"):
            delete_documents(art, ["d0"], lock_timeout=0.5)
        assert time.monotonic() - started >= 0.5
        assert current_generation(art) == 1
        # A holder killed mid-write leaves no stale lock: the next writer goes ahead.
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(10)
        assert delete_documents(art, ["d0"], lock_timeout=5) == 1
    finally:
        if holder.is_alive():
            holder.kill()


def test_the_lock_is_reentrant_within_a_thread(art):
    with writer_lock(art, "outer"), writer_lock(art, "inner"):
        pass
    with writer_lock(art, "outer"):
        assert delete_documents(art, ["d1"], lock_timeout=0.1) == 1


def _delete_in_process(path, doc_id):
    delete_documents(path, [doc_id])


def test_concurrent_deletes_are_all_kept(art):
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_delete_in_process, args=(art, d)) for d in ("d1", "d2")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [w.exitcode for w in workers] == [0, 0]
    remaining = _ids(SelfRetrievalModel.from_pretrained(art))
    assert remaining == {"d0", "d3", "d4", "d5"}


# -- live readers -------------------------------------------------------------------------------


def test_refresh_sees_another_writers_delete(art):
    reader = SelfRetrievalModel.from_pretrained(art)
    weights = reader.model
    assert reader.refresh() is False  # nothing changed
    delete_documents(art, ["d2"])
    assert "d2" in _ids(reader)  # not yet refreshed
    assert reader.refresh() is True
    assert "d2" not in _ids(reader)
    assert reader.model is weights  # same weights: only the index was read
    assert reader.generation == 2 and len(reader.store) == len(FACTS) - 1


def test_auto_refresh_checks_at_most_every_n_seconds(art):
    reader = SelfRetrievalModel.from_pretrained(art, refresh_every=0.0)
    delete_documents(art, ["d4"])
    assert "d4" not in _ids(reader)
    lazy = SelfRetrievalModel.from_pretrained(art, refresh_every=3600)
    delete_documents(art, ["d5"])
    assert "d5" in _ids(lazy)


def test_a_models_own_delete_takes_effect_on_the_next_query(art):
    bound = SelfRetrievalModel.from_pretrained(art)
    other = SelfRetrievalModel.from_pretrained(art)
    assert bound.delete_documents(["d0", "p1"]) == 2
    assert _ids(bound).isdisjoint({"d0", "d1"})
    assert current_generation(art) == 2
    other.refresh()
    assert _ids(other).isdisjoint({"d0", "d1"})


def test_a_model_never_saved_deletes_in_memory(model):
    unsaved = SelfRetrievalModel(
        model.model, model.tokenizer, model.trie, model.store, config=GEN_ONLY
    )
    assert unsaved.delete_documents(["d3"]) == 1
    assert "d3" not in _ids(unsaved) and len(unsaved.trie) == len(FACTS) - 1
    assert "d3" in _ids(model)  # the model it was made from is untouched
    with pytest.raises(ArtifactError, match="save_pretrained"):
        unsaved.add_documents([{"id": "new", "text": "x"}])


# -- bounded input ------------------------------------------------------------------------------


def test_a_long_query_is_cut_to_the_configured_tokens_with_a_warning(model):
    limit = model.config.max_query_tokens
    long_query = "where is the tower " * 20_000
    with pytest.warns(UserWarning, match=f"cut to its first {limit} tokens"):
        results = model.retrieve(long_query, k=2)
    assert len(results) == 2
    with pytest.warns(UserWarning, match="cut to"):
        model.assess(long_query, ["The Eiffel Tower is in Paris."])


def test_a_long_passage_is_cut_for_assessment(model):
    limit = model.config.assessment.max_passage_tokens
    long_text = "tower" * 50_000  # one "word": the word limit alone would not bound it
    with pytest.warns(UserWarning, match=f"first {limit} tokens"):
        scores = model.assess("where?", [long_text])
    assert 0 <= float(scores[0]) < 1


def test_the_query_limit_is_validated_and_saved(model, tmp_path):
    with pytest.raises(ValueError):
        RetrievalConfig(max_query_tokens=0)
    config = RetrievalConfig(max_query_tokens=7)
    assert RetrievalConfig.from_dict(config.to_dict()).max_query_tokens == 7
