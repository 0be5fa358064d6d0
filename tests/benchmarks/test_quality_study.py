"""The quality study's answer metric and candidate pools."""

from __future__ import annotations

import pytest

from .scripts import load_benchmark

study = load_benchmark("quality_study")


def test_answer_metric_is_squads():
    assert study._normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    assert study._em_f1("the Eiffel tower", ["Eiffel Tower", "Paris"]) == (1.0, 1.0)
    em, f1 = study._em_f1("tower in Paris", ["Paris"])
    assert em == 0.0 and f1 == pytest.approx(0.5)
    assert study._em_f1("nothing", ["Paris"]) == (0.0, 0.0)


def test_pools_keep_what_each_source_found():
    def candidate(i, beam=None, bm25=None, dense=None):
        return {"id": f"d{i}", "beam_rank": beam, "bm25_rank": bm25, "dense_rank": dense}

    row = {"candidates": [candidate(0, beam=1), candidate(1, bm25=1), candidate(2, dense=1)]}
    assert [c["id"] for c in study._pool(row, ("beams",))] == ["d0"]
    assert [c["id"] for c in study._pool(row, ("beams", "bm25"))] == ["d0", "d1"]
    assert [c["id"] for c in study._pool(row, ("dense",))] == ["d2"]
