"""Golden tests: ``PassageTrie`` against a naive nested-dict trie on random data."""

from __future__ import annotations

import json
import mmap as mmap_module
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from selfretrieval_integrations.errors import ArtifactError, CorpusError, QueryError
from selfretrieval_integrations.index import END_TOKEN, MAX_TOKEN_ID, PassageTrie

from .helpers import children, depth_of, label_of, leaf_node, lookup, path, title_end_nodes

# ---------------------------------------------------------------------------- naive reference


class NaiveTrie:
    """Cut-at-unique-depth semantics, written the obvious way on tuples and nested dicts."""

    def __init__(self, keys: list[list[int]], titles: list[int] | None = None) -> None:
        self.ext = [(*k, END_TOKEN) for k in keys]
        self.titles = titles or [0] * len(keys)
        distinct = sorted(set(self.ext))
        self.cut: dict[tuple[int, ...], tuple[int, ...]] = {}
        for key in distinct:
            for length in range(1, len(key) + 1):
                prefix = key[:length]
                if not any(o != key and o[:length] == prefix for o in distinct):
                    self.cut[key] = prefix
                    break
        self.passages: dict[tuple[int, ...], list[int]] = {}
        for i, key in enumerate(self.ext):
            self.passages.setdefault(self.cut[key], []).append(i)
        # The nested-dict trie of the cut keys; "$" holds a leaf's passages.
        self.root: dict = {}
        for cut, ids in self.passages.items():
            node = self.root
            for token in cut:
                node = node.setdefault(token, {})
            node["$"] = ids

    def next_tokens(self, prefix: tuple[int, ...], allowed: set[int] | None = None) -> list[int]:
        node = self.root
        for token in prefix:
            if token not in node:
                return []
            node = node[token]
        out = []
        for token, child in node.items():
            if token == "$":
                continue
            if allowed is None or self._any_allowed(child, allowed):
                out.append(token)
        return sorted(out)

    def _any_allowed(self, node: dict, allowed: set[int]) -> bool:
        return any(
            (k == "$" and any(p in allowed for p in v))
            or (k != "$" and self._any_allowed(v, allowed))
            for k, v in node.items()
        )

    def identified(self, prefix: tuple[int, ...]) -> list[int]:
        for cut, ids in self.passages.items():
            if prefix[: len(cut)] == cut:
                return ids
        return []


def all_prefixes(keys: list[list[int]]):
    seen = set()
    for key in keys:
        ext = (*key, END_TOKEN)
        for length in range(len(ext) + 2):
            prefix = ext[:length] + ((7,) if length > len(ext) else ())
            if prefix not in seen:
                seen.add(prefix)
                yield prefix


def walk(trie: PassageTrie, cut: tuple[int, ...]) -> int:
    """Follow ``cut`` from the root with children() and label_of() only."""
    node, pos = trie.root, 0
    while pos < len(cut):
        tokens, nodes = children(trie, node)
        i = int(np.searchsorted(tokens, cut[pos]))
        assert i < len(tokens) and tokens[i] == cut[pos]
        node = int(nodes[i])
        label = label_of(trie, node).tolist()
        assert label == list(cut[pos : pos + len(label)])
        pos += len(label)
    assert pos == len(cut)
    return node


def dfs_leaves(trie: PassageTrie, node: int = 0) -> list[int]:
    tokens, nodes = children(trie, node)
    if tokens.size == 0:
        return [node]
    return [leaf for child in nodes.tolist() for leaf in dfs_leaves(trie, child)]


def dfs_internal(trie: PassageTrie, node: int = 0) -> list[int]:
    if trie.is_leaf(node):
        return []
    kids = children(trie, node)[1].tolist()
    return [node, *(x for child in kids for x in dfs_internal(trie, child))]


def check_structure(trie: PassageTrie, ref: NaiveTrie) -> None:
    n, n_int = trie.n_nodes, trie.n_internal
    assert trie.n_leaves == n - n_int == len(ref.passages)
    assert len(trie.child_start) == n_int + 1 and trie.child_start[0] == 0
    assert trie.child_start[-1] == n - 1 == len(trie.child_node) == len(trie.child_code)
    assert sorted(trie.child_node.tolist()) == list(range(1, n))
    assert len(label_of(trie, trie.root)) == 0 and depth_of(trie, trie.root) == 0
    assert trie.child_code.dtype == trie.label_code.dtype == trie.token_dtype
    # Numbering: internal nodes in DFS pre-order, then the leaves in DFS order.
    leaves = dfs_leaves(trie)
    assert leaves == list(range(n_int, n))
    assert dfs_internal(trie) == list(range(n_int))
    lo, hi = trie.leaf_bounds(np.arange(n))
    starts, ends = trie.child_ranges(np.arange(n))
    depths = trie.leaf_depths()
    for node in range(n):
        tokens, kids = children(trie, node)
        assert trie.is_leaf(node) == (node >= n_int) == (tokens.size == 0)
        one_lo, one_hi = trie.leaf_bounds([node])
        assert (one_lo.tolist(), one_hi.tolist()) == ([lo[node]], [hi[node]])
        assert trie.count_allowed(node, trie.allowed_leaf_counts(None)) == hi[node] - lo[node]
        assert kids.tolist() == trie.child_node[starts[node] : ends[node]].tolist()
        assert tokens.tolist() == trie.child_tokens(np.arange(starts[node], ends[node])).tolist()
        assert np.all(np.diff(tokens) > 0), "children sorted by first token"
        for token, kid in zip(tokens.tolist(), kids.tolist(), strict=True):
            label = label_of(trie, kid).tolist()
            assert label[0] == token and trie.edge(kid, token) == label
            assert trie.edge(kid, 12345) == [12345, *label[1:]]
            assert depth_of(trie, kid) == depth_of(trie, node) + len(label)
            assert path(trie, kid).tolist() == path(trie, node).tolist() + label
        if node < n_int:
            assert kids.size and (node == 0 or kids.min() > node), "pre-order numbering"
            assert depth_of(trie, node) == int(trie.internal_depth[node])
            kid_lo, kid_hi = trie.leaf_bounds(kids)
            assert lo[node] == kid_lo[0] and hi[node] == kid_hi[-1]
            assert np.all(kid_hi[:-1] == kid_lo[1:]), "contiguous"
            if node != 0:  # path compression: a unary node exists only to mark a title end
                assert len(kids) >= 2 or trie.is_title_end_node(node)
                assert hi[node] - lo[node] >= 2
        else:
            assert len(label_of(trie, node)) == 1, "a leaf is one token below its parent"
            assert leaf_node(trie, node - n_int) == node
            assert (lo[node], hi[node]) == (node - n_int, node - n_int + 1)
            assert depth_of(trie, node) == depths[node - n_int] == len(path(trie, node))
    groups = [trie.passages_at(leaf_node(trie, r)) for r in range(trie.n_leaves)]
    assert np.concatenate(groups).tolist() == trie.leaf_passages.tolist()
    passage_leaf = trie.passage_leaves()
    for rank, ids in enumerate(groups):
        assert ids.size and np.all(np.diff(ids) > 0)
        assert np.all(passage_leaf[ids] == rank)
        assert (ids.size > 1) == (rank in trie.multi_leaf.tolist())
    assert sorted(trie.leaf_passages.tolist()) == list(range(trie.n_passages))
    # Unique depths: the length of each passage's cut key (end marker included).
    expected = [len(ref.cut[key]) for key in ref.ext]
    assert trie.unique_depths().tolist() == expected


def check_against_reference(trie: PassageTrie, keys: list[list[int]], ref: NaiveTrie) -> None:
    assert len(trie) == len(keys)
    check_structure(trie, ref)
    for cut, ids in ref.passages.items():
        leaf = walk(trie, cut)
        assert children(trie, leaf)[0].size == 0
        assert trie.passages_at(leaf).tolist() == ids
        assert path(trie, leaf).tolist() == list(cut)
        assert lookup(trie, list(cut)) == (leaf, 1)
    for prefix in all_prefixes(keys):
        assert trie.next_tokens(list(prefix)).tolist() == ref.next_tokens(prefix), prefix
        assert trie.passage_ids_for_prefix(prefix).tolist() == ref.identified(prefix), prefix
        in_trie = any(cut[: len(prefix)] == prefix for cut in ref.passages)
        if in_trie:
            node, offset = lookup(trie, prefix)
            tokens = path(trie, node).tolist()
            consumed = len(tokens) - len(label_of(trie, node)) + offset
            assert tokens[:consumed] == list(prefix) and consumed == len(prefix)
        else:
            with pytest.raises(KeyError):
                lookup(trie, prefix)


def check_titles(trie: PassageTrie, keys: list[list[int]], ref: NaiveTrie) -> None:
    expected = set()
    for key, title in zip(ref.ext, ref.titles, strict=True):
        cut = ref.cut[key]
        if 0 < title <= len(cut):
            expected.add(key[:title])
    marked = {tuple(path(trie, n).tolist()) for n in title_end_nodes(trie)}
    assert marked == expected
    assert trie.has_title_ends == bool(expected)
    flags = [trie.is_title_end_node(n) for n in range(trie.n_nodes)]
    assert np.flatnonzero(flags).tolist() == title_end_nodes(trie).tolist()
    for prefix in expected:  # the boundary is a real node end
        node, offset = lookup(trie, prefix)
        assert offset == len(label_of(trie, node)) and trie.is_title_end_node(node)


# ---------------------------------------------------------------------------- strategies

SPECIAL_IDS = [0, 1, 0xD7FE, 0xD7FF, 0xD800, 0xDFFF, 0xE000, MAX_TOKEN_ID]


@st.composite
def corpora(draw, special: bool = False, long: bool = False):
    vocab = st.sampled_from(SPECIAL_IDS) if special else st.integers(0, 3)
    if long:
        stem = draw(st.lists(vocab, min_size=15, max_size=45))
        keys = [
            stem[: draw(st.integers(0, len(stem)))] + draw(st.lists(vocab, max_size=4))
            for _ in range(draw(st.integers(1, 12)))
        ]
        keys = [k if k else [1] for k in keys]
    else:
        keys = draw(st.lists(st.lists(vocab, min_size=1, max_size=6), min_size=1, max_size=25))
    if draw(st.booleans()):  # exact duplicates
        keys += [list(keys[i]) for i in draw(st.lists(st.integers(0, len(keys) - 1), max_size=4))]
    titles = [draw(st.integers(0, len(k))) for k in keys]
    return keys, titles


FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------------------- golden tests


@FAST
@given(corpora())
def test_matches_naive_trie(corpus):
    keys, titles = corpus
    trie = PassageTrie.build(keys, titles)
    ref = NaiveTrie(keys, titles)
    check_against_reference(trie, keys, ref)
    check_titles(trie, keys, ref)


@FAST
@given(corpora(special=True))
def test_matches_naive_trie_on_extreme_token_ids(corpus):
    keys, titles = corpus
    trie = PassageTrie.build(keys, titles)
    check_against_reference(trie, keys, NaiveTrie(keys, titles))


@settings(max_examples=60, deadline=None)
@given(corpora(long=True))
def test_matches_naive_trie_on_long_shared_prefixes(corpus):
    keys, titles = corpus  # shared prefixes longer than one sorting window
    trie = PassageTrie.build(keys, titles)
    ref = NaiveTrie(keys, titles)
    check_against_reference(trie, keys, ref)
    check_titles(trie, keys, ref)


@FAST
@given(corpora(), st.randoms(use_true_random=False))
def test_filters_match_trie_of_allowed_passages(corpus, rnd):
    keys, _ = corpus
    trie = PassageTrie.build(keys)
    ref = NaiveTrie(keys)
    allowed = {i for i in range(len(keys)) if rnd.random() < 0.5}
    mask = np.zeros(len(keys), dtype=bool)
    mask[list(allowed)] = True
    counts = trie.allowed_leaf_counts(mask)
    assert len(counts) == trie.n_leaves + 1
    sub_ext = [(*keys[i], END_TOKEN) for i in sorted(allowed)]
    for prefix in all_prefixes(keys):
        got = trie.next_tokens(list(prefix), mask).tolist()
        assert got == trie.next_tokens(prefix, allowed_counts=counts).tolist()
        assert got == ref.next_tokens(prefix, allowed), prefix
        if any(cut[: len(prefix)] == prefix and len(cut) > len(prefix) for cut in ref.passages):
            # Same allowed set as a trie built from the allowed passages alone.
            sub = sorted({k[len(prefix)] for k in sub_ext if k[: len(prefix)] == prefix})
            assert got == sub, prefix
    for node in range(trie.n_nodes):
        below = set(trie.passages_at(node).tolist())
        assert (trie.count_allowed(node, counts) > 0) == bool(below & allowed)
    assert np.array_equal(trie.allowed_leaf_counts(None), np.arange(trie.n_leaves + 1))


def test_medium_random_corpus_against_reference():
    rng = np.random.default_rng(7)
    titles_pool = [rng.integers(0, 40, rng.integers(1, 4)).tolist() for _ in range(60)]
    keys, titles = [], []
    for _ in range(1500):
        title = titles_pool[int(rng.integers(len(titles_pool)))] + [99, 98]
        body = [*rng.integers(0, 6, int(rng.integers(1, 30))).tolist(), 100]
        keys.append(title + body)
        titles.append(len(title))
    keys += keys[:50]
    titles += titles[:50]
    trie = PassageTrie.build(keys, titles)
    ref = NaiveTrie(keys, titles)
    check_structure(trie, ref)
    for cut, ids in ref.passages.items():
        assert trie.passages_at(walk(trie, cut)).tolist() == ids
    for prefix in list(all_prefixes(keys))[::7]:
        assert trie.next_tokens(prefix).tolist() == ref.next_tokens(prefix)
    check_titles(trie, keys, ref)
    flat = PassageTrie.build_flat(
        np.concatenate([np.asarray(k) for k in keys]),
        np.concatenate([[0], np.cumsum([len(k) for k in keys])]),
        titles,
    )
    arrays = [np.asarray(k, dtype=np.int32) for k in keys]
    for other in (flat, PassageTrie.build(arrays, titles)):
        for name in trie.array_nbytes():
            assert np.array_equal(getattr(other, name), getattr(trie, name)), name


# ---------------------------------------------------------------------------- semantics


def test_prefix_key_gets_end_marker_and_identical_keys_share_a_leaf():
    keys = [[5, 1, 2, 9], [5, 1, 3, 9], [5, 1, 2, 9], [7, 9], [5, 1], [5, 1, 2]]
    trie = PassageTrie.build(keys)
    assert trie.end_token == END_TOKEN == -1
    assert trie.next_tokens([5, 1]).tolist() == [-1, 2, 3]
    assert trie.next_tokens([5, 1, 2]).tolist() == [-1, 9]
    assert trie.passage_ids_for_prefix([5, 1]).tolist() == []  # ambiguous
    assert trie.passage_ids_for_prefix([5, 1, -1]).tolist() == [4]
    assert trie.passage_ids_for_prefix([5, 1, 2, 9]).tolist() == [0, 2]
    assert trie.passage_ids_for_prefix([5, 1, 2, 9, 4, 4]).tolist() == [0, 2]  # tail unchecked
    assert trie.passage_ids_for_prefix([7]).tolist() == [3]  # cut after one token
    assert trie.next_tokens([7]).tolist() == [] and trie.next_tokens([8]).tolist() == []
    assert trie.passages_at(trie.root).tolist() == [4, 5, 0, 2, 1, 3]
    with pytest.raises(KeyError):
        lookup(trie, [7, 9])  # past the cut
    assert lookup(trie, []) == (0, 0)


def test_forced_title_boundary_on_a_single_child_run():
    keys = [[3, 4, 5, 6, 1, 0], [3, 4, 5, 6, 2, 0]]
    plain = PassageTrie.build(keys)
    assert plain.n_nodes == 4  # root, one run [3 4 5 6], two leaves
    trie = PassageTrie.build(keys, [2, 2])
    node, offset = lookup(trie, [3, 4])
    assert trie.is_title_end_node(node) and offset == len(label_of(trie, node)) == 2
    assert label_of(trie, children(trie, node)[1][0]).tolist() == [5, 6]
    assert trie.next_tokens([3, 4, 5]).tolist() == [6]
    assert trie.n_nodes == 5


def test_single_key():
    trie = PassageTrie.build([[4, 2, 0]], [2])
    assert trie.n_nodes == 2 and trie.n_leaves == 1
    assert trie.next_tokens([]).tolist() == [4]
    assert trie.passage_ids_for_prefix([4]).tolist() == [0]
    assert not trie.has_title_ends  # the title is longer than the one-token cut


@pytest.mark.parametrize(
    ("max_id", "dtype"),
    [(4, np.uint16), (65534, np.uint16), (65535, np.uint32), (MAX_TOKEN_ID, np.uint32)],
)
def test_token_codes_use_the_smallest_dtype(max_id, dtype):
    keys = [[1, max_id, 0], [1, max_id], [2]]
    trie = PassageTrie.build(keys)
    assert trie.token_dtype == dtype and trie.child_code.dtype == dtype
    assert trie.next_tokens([1]).tolist() == [max_id]
    assert trie.next_tokens([1, max_id]).tolist() == [-1, 0]
    assert trie.passage_ids_for_prefix([1, max_id, -1]).tolist() == [1]
    assert trie.next_tokens([1, max_id + 1]).tolist() == []  # beyond the codes: not found


def test_accessors_reject_unknown_nodes():
    trie = PassageTrie.build([[1, 2], [1, 3]])
    for node in (-1, trie.n_nodes):
        for accessor in (partial(label_of, trie), partial(depth_of, trie), partial(path, trie)):
            with pytest.raises(ValueError, match="not in this trie"):
                accessor(node)
    with pytest.raises(ValueError, match="leaf rank"):
        leaf_node(trie, trie.n_leaves)


def test_arrays_are_read_only():
    trie = PassageTrie.build([[1, 2], [1, 3]])
    with pytest.raises(ValueError):
        trie.child_code[0] = 5


# ---------------------------------------------------------------------------- errors


def test_input_errors():
    with pytest.raises(CorpusError, match="corpus is empty"):
        PassageTrie.build([])
    with pytest.raises(CorpusError, match="corpus is empty"):
        PassageTrie.build_flat(np.zeros(0, dtype=np.int64), np.zeros(1, dtype=np.int64))
    with pytest.raises(CorpusError, match="key 1 is empty"):
        PassageTrie.build([[1], []])
    with pytest.raises(CorpusError, match="token id -1"):
        PassageTrie.build([[1], [2, -1]])
    with pytest.raises(CorpusError, match="token id"):
        PassageTrie.build([[MAX_TOKEN_ID + 1]])
    with pytest.raises(CorpusError, match="title_lengths"):
        PassageTrie.build([[1, 2]], [3])
    with pytest.raises(CorpusError, match="title_lengths"):
        PassageTrie.build([[1, 2]], [1, 1])
    with pytest.raises(CorpusError, match="integer"):
        PassageTrie.build([["a", "b"]])
    with pytest.raises(CorpusError, match="integer"):
        PassageTrie.build([[1.0, 2.0]])
    with pytest.raises(CorpusError, match="integer"):
        PassageTrie.build([np.ones(2)])
    with pytest.raises(CorpusError, match="integer"):
        PassageTrie.build([[2**40]])
    trie = PassageTrie.build([[1, 2], [1, 3]])
    with pytest.raises(QueryError):
        trie.allowed_leaf_counts(np.ones(3, dtype=bool))
    with pytest.raises(QueryError):
        trie.allowed_leaf_counts(np.ones(2, dtype=np.int64))
    assert trie.next_tokens([1, -7]).tolist() == [] and trie.next_tokens([10**9]).tolist() == []


# ---------------------------------------------------------------------------- persistence


@pytest.fixture
def saved(tmp_path: Path) -> tuple[PassageTrie, Path, list[list[int]]]:
    rng = np.random.default_rng(3)
    keys = [[*rng.integers(0, 5, rng.integers(1, 12)).tolist(), 9] for _ in range(400)]
    titles = [int(rng.integers(0, 3)) for _ in keys]
    trie = PassageTrie.build(keys, titles)
    folder = trie.save(tmp_path / "trie")
    return trie, folder, keys


def is_memory_mapped(array: np.ndarray) -> bool:
    while array is not None:
        if isinstance(array, (np.memmap, mmap_module.mmap)):
            return True
        array = getattr(array, "base", None)
    return False


@pytest.mark.parametrize("mmap", [True, False])
def test_save_load_round_trip(saved, mmap):
    trie, folder, keys = saved
    files = {p.name for p in folder.iterdir()}
    assert {"trie.json", "trie.marisa", "child_start.npy", "label_code.npy"} <= files
    manifest = json.loads((folder / "trie.json").read_text())
    assert manifest["n_nodes"] == trie.n_nodes and manifest["end_token"] == -1
    assert manifest["token_dtype"] == "<u2" and manifest["n_internal"] == trie.n_internal
    loaded = PassageTrie.load(folder, mmap=mmap)
    assert is_memory_mapped(loaded.child_code) == mmap
    assert not loaded.child_code.flags.writeable
    for name in trie.array_nbytes():
        assert np.array_equal(getattr(loaded, name), getattr(trie, name)), name
        assert getattr(loaded, name).dtype == getattr(trie, name).dtype, name
    assert (loaded.n_nodes, loaded.n_leaves, len(loaded)) == (trie.n_nodes, trie.n_leaves, 400)
    assert loaded.n_internal == trie.n_internal and loaded.has_title_ends == trie.has_title_ends
    assert loaded.unique_depths().tolist() == trie.unique_depths().tolist()
    for key in keys[:100]:
        for length in range(len(key) + 1):
            prefix = key[:length]
            assert loaded.next_tokens(prefix).tolist() == trie.next_tokens(prefix).tolist()
        assert loaded.passage_ids_for_prefix(key).tolist() == (
            trie.passage_ids_for_prefix(key).tolist()
        )


@pytest.mark.parametrize(
    "name", ["label_code.npy", "trie.marisa", "trie.json", "node_of_key.npy", "multi_leaf.npy"]
)
def test_load_reports_missing_file(saved, name):
    _, folder, _ = saved
    (folder / name).unlink()
    with pytest.raises(ArtifactError, match=name.replace(".", r"\.")):
        PassageTrie.load(folder)


@pytest.mark.parametrize("name", ["internal_depth.npy", "child_node.npy", "trie.marisa"])
def test_load_reports_truncated_file(saved, name):
    _, folder, _ = saved
    path = folder / name
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ArtifactError, match=name.replace(".", r"\.")):
        PassageTrie.load(folder)


def test_load_refuses_the_format_1_layout(saved):
    _, folder, _ = saved
    manifest = json.loads((folder / "trie.json").read_text())
    manifest["format_version"] = 1
    (folder / "trie.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=r"version 1.*rebuild the trie"):
        PassageTrie.load(folder)


def test_load_reports_files_that_do_not_belong_together(saved, tmp_path):
    _, folder, _ = saved
    other = PassageTrie.build([[1, 2], [1, 3]]).save(tmp_path / "other")
    (folder / "label_code.npy").write_bytes((other / "label_code.npy").read_bytes())
    with pytest.raises(ArtifactError, match=r"label_code\.npy"):
        PassageTrie.load(folder)
