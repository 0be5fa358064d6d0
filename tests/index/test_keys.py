"""PassageKeys: a slice of saved keys builds the trie a fresh build of those passages gives."""

from __future__ import annotations

import numpy as np
import pytest

from selfretrieval_integrations.errors import ArtifactError
from selfretrieval_integrations.index import PassageKeys, PassageTrie

KEYS = [[5, 6, 7, 1], [5, 6, 8, 1], [9, 1], [5, 2, 1], [9, 3, 3, 1]]
TITLES = [1, 1, 0, 2, 1]


def _arrays(trie):
    return {name: getattr(trie, name).tolist() for name in ("child_start", "child_node")}


def test_a_subset_builds_the_same_trie_as_building_those_keys():
    keys = PassageKeys.from_keys(KEYS, TITLES)
    assert len(keys) == len(KEYS)
    chosen = [4, 0, 3]
    subset = keys.subset(chosen)
    expected = PassageTrie.build([KEYS[i] for i in chosen], [TITLES[i] for i in chosen])
    assert _arrays(subset.trie()) == _arrays(expected)
    for i, original in enumerate(chosen):
        start, end = subset.offsets[i], subset.offsets[i + 1]
        assert subset.tokens[start:end].tolist() == KEYS[original]
    assert subset.title_lengths.tolist() == [TITLES[i] for i in chosen]


def test_save_load_and_damage(tmp_path):
    keys = PassageKeys.from_keys(KEYS, TITLES)
    assert PassageKeys.load(tmp_path / "none") is None
    keys.save(tmp_path / "keys")
    loaded = PassageKeys.load(tmp_path / "keys")
    assert np.array_equal(loaded.tokens, keys.tokens)
    np.save(tmp_path / "keys" / "offsets.npy", keys.offsets[:-1])
    with pytest.raises(ArtifactError, match="do not fit"):
        PassageKeys.load(tmp_path / "keys")
