"""``SelfRetrievalModel``: one causal LM that retrieves, reranks and answers over its corpus."""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
import torch

from selfretrieval_integrations import artifact
from selfretrieval_integrations.base_models import (
    checked_quantize,
    dtype_kwarg,
    load_base_model,
    quantize_int8,
    quiet_weight_loading,
    resolve_device_and_dtype,
    tokenizer_fingerprint,
)
from selfretrieval_integrations.corpus import ChunkingConfig, Corpus, Document, Passage
from selfretrieval_integrations.errors import ArtifactError, QueryError
from selfretrieval_integrations.index import (
    BM25Index,
    DenseIndex,
    Filter,
    PassageKeys,
    PassageStore,
    PassageTrie,
    filter_mask,
)
from selfretrieval_integrations.training import load_trainer
from selfretrieval_integrations.validation import checked_int

from . import compute_thread
from .assessment import AssessmentConfig, SelfAssessor
from .batching import RequestBatcher
from .convex import HybridConfig, RetrievalMode, bounded_convex_scores
from .decoding import ConstrainedDecoder, DecodingConfig, DecodingStats, Hypothesis
from .fusion import (
    Candidates,
    Fusion,
    bounded_relevance,
    judged,
    logprob_fused,
    rank_candidates,
)
from .rendering import PromptTemplate, Renderer
from .updates import delete_documents, remaining_passages

T = TypeVar("T")


@dataclass(frozen=True)
class RetrievalConfig:
    """Everything that decides how a query becomes a ranked list (saved in the manifest)."""

    decoding: DecodingConfig = field(default_factory=DecodingConfig)
    assessment: AssessmentConfig = field(default_factory=AssessmentConfig)
    fusion: Fusion = Fusion.CONVEX
    """How ``self`` mode ranks the beams' passages: ``convex`` (default: the fitted weights
    ``HybridConfig.self_weights`` of generation and relevance, the best on the SQuAD benchmark,
    see benchmarks/RESULTS.md), ``logprob`` (generation log-probability + log relevance, the
    default of artifacts saved before), ``paper`` or ``generation`` (no self-assessment)."""
    temperature: float = 0.4
    """Temperature of the paper's fusion softmaxes."""
    max_query_tokens: int = 256
    """Longer queries are cut to their first this many tokens, with a warning (a pasted document
    or chat history must not cost minutes of CPU); questions are far shorter."""
    mode: RetrievalMode = RetrievalMode.SELF
    """``self``: the model's beams alone; ``hybrid``: the beams' passages and BM25's top
    candidates, ranked by the convex fusion of ``hybrid``."""
    hybrid: HybridConfig = field(default_factory=HybridConfig)
    """Candidate depth and fusion weights of the hybrid mode and of the convex SelfReranker."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "fusion", Fusion(self.fusion))
        object.__setattr__(self, "mode", RetrievalMode(self.mode))
        checked_int(self.max_query_tokens, "RetrievalConfig.max_query_tokens")
        if self.temperature <= 0:
            raise ValueError(f"RetrievalConfig.temperature must be > 0, got {self.temperature}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["fusion"] = self.fusion.value
        data["mode"] = self.mode.value
        data["hybrid"]["weights"] = dict(self.hybrid.weights)
        data["hybrid"]["rerank_weights"] = dict(self.hybrid.rerank_weights)
        data["hybrid"]["self_weights"] = dict(self.hybrid.self_weights)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RetrievalConfig:
        def known(kind: type, values: Mapping[str, Any] | None) -> dict[str, Any]:
            return {k: v for k, v in (values or {}).items() if k in kind.__dataclass_fields__}

        assessment = known(AssessmentConfig, data.get("assessment"))
        if data.get("assessment") is not None and "method" not in assessment:
            # Saved before query likelihood: trained and fitted with the refusal, so keep it.
            assessment["method"] = "refusal"
        return cls(
            decoding=DecodingConfig(**known(DecodingConfig, data.get("decoding"))),
            assessment=AssessmentConfig(**assessment),
            fusion=Fusion(data.get("fusion", Fusion.LOGPROB)),
            temperature=float(data.get("temperature", 0.4)),
            max_query_tokens=int(data.get("max_query_tokens", cls.max_query_tokens)),
            mode=RetrievalMode(data.get("mode", RetrievalMode.SELF)),
            hybrid=HybridConfig(**known(HybridConfig, data.get("hybrid"))),
        )


@dataclass(frozen=True)
class RetrievalResult:
    """One retrieved passage, verbatim, with the scores that ranked it."""

    passage_id: str
    doc_id: str
    title: str
    text: str
    score: float
    rank: int
    metadata: Mapping[str, Any] = field(default_factory=dict)
    generation_logprob: float | None = None
    title_logprob: float | None = None
    relevance: float | None = None
    bm25_score: float | None = None
    """In hybrid mode, the passage's BM25 score (None otherwise)."""
    dense_score: float | None = None
    """In hybrid mode with a ``dense`` weight, the passage's cosine to the query."""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["metadata"] = dict(self.metadata)
        return data


class SelfRetrievalModel:
    """A causal LM, its tokenizer, the corpus trie and the passage store, used together.

    Create one over a corpus from a base model (``from_base``, zero-shot or before training), load
    a trained artifact (``from_pretrained``), then ``retrieve``, ``assess`` or ``answer``.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        trie: PassageTrie,
        store: PassageStore,
        *,
        template: PromptTemplate | None = None,
        config: RetrievalConfig | None = None,
        base_model: str | None = None,
        manifest: Mapping[str, Any] | None = None,
    ) -> None:
        if len(trie) != len(store):
            raise ArtifactError(
                f"the trie covers {len(trie)} passages but the store holds {len(store)}"
            )
        self.model = model
        self.tokenizer = tokenizer
        self.trie = trie
        self.store = store
        self.template = template or PromptTemplate()
        self.config = config or RetrievalConfig()
        self.base_model = base_model
        self.manifest: dict[str, Any] = dict(manifest or {})
        self.renderer = Renderer(tokenizer, self.template)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.renderer.eos_id
        self.decoder = ConstrainedDecoder(
            model,
            trie,
            eos_token_id=self.renderer.eos_id,
            pad_token_id=pad,
            config=self.config.decoding,
        )
        self.assessor = SelfAssessor(model, self.renderer, self.config.assessment)
        self.last_stats = DecodingStats()
        """What the last finished ``retrieve``/``retrieve_batch`` call cost (assigned whole, once
        per call, so it is never seen half updated)."""
        self.lock = threading.RLock()
        """One call at a time on these weights: ``retrieve``, ``assess`` and ``answer`` hold it.

        Not for the decoder's or assessor's sake (they keep no per-call state), but because calls
        running together on one device gain no speed while each holds its own key/value cache,
        and because Hugging Face fast tokenizers rewrite their settings on every call. Hold it
        too when you run ``model`` or ``tokenizer`` yourself beside retrieval (a RAG generator).
        """
        self.artifact_path: Path | None = None
        """The artifact this model was loaded from or last saved to (what ``refresh`` reads)."""
        self.generation: int | None = None
        """The artifact generation in use (None: not from an artifact, or one before format 2)."""
        self.refresh_every: float | None = None
        """Seconds between automatic checks for a newer generation (None: only ``refresh()``)."""
        self._config_given = False
        self._load_options: dict[str, Any] = {
            "device": None,
            "dtype": None,
            "trust_remote_code": False,
            "verify": True,
            "quantize": None,
        }
        self._checked_at = time.monotonic()
        self._bm25: tuple[PassageStore, BM25Index] | None = None
        self._dense: tuple[PassageStore, DenseIndex] | None = None
        self._batcher: RequestBatcher | None = None

    @property
    def config(self) -> RetrievalConfig:
        """How queries are answered; assigning a new one takes effect from the next call
        (decoding and assessment settings included)."""
        return self._config

    @config.setter
    def config(self, config: RetrievalConfig) -> None:
        self._config = config
        decoder = getattr(self, "decoder", None)
        if decoder is not None:
            decoder.config = config.decoding
        assessor = getattr(self, "assessor", None)
        if assessor is not None:
            assessor.config = config.assessment
            assessor.scorer.batch_size = config.assessment.batch_size
            assessor.context_scorer.batch_size = config.assessment.batch_size
            assessor.context_scorer.cache.resize(config.assessment.cache_megabytes << 20)

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_base(
        cls,
        base_model: str | tuple[Any, Any],
        corpus: Corpus | Iterable[Document | Passage | Mapping[str, Any]],
        *,
        template: PromptTemplate | None = None,
        config: RetrievalConfig | None = None,
        chunking: ChunkingConfig | None = None,
        device: str | None = None,
        dtype: str | None = None,
        trust_remote_code: bool = False,
        show_progress: bool = False,
    ) -> SelfRetrievalModel:
        """A model over ``corpus`` without training (zero-shot, or the trainer's starting point).

        ``base_model`` is a name (``tiny``, ``smollm2-135m``, a hub id or a local path) or an
        already loaded ``(model, tokenizer)`` pair.
        """
        if isinstance(base_model, str):
            model, tokenizer = load_base_model(
                base_model, device=device, dtype=dtype, trust_remote_code=trust_remote_code
            )
            name = base_model
        else:
            model, tokenizer = base_model
            name = getattr(getattr(model, "config", None), "_name_or_path", None) or "custom"
        corpus = as_corpus(corpus, chunking)
        template = template or PromptTemplate()
        trie = build_trie(tokenizer, template, corpus, show_progress=show_progress)
        return cls(
            model,
            tokenizer,
            trie,
            PassageStore(list(corpus)),
            template=template,
            config=config,
            base_model=name,
            manifest={"corpus_checksum": corpus.checksum(), "training": None},
        )

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        device: str | None = None,
        dtype: str | None = None,
        trust_remote_code: bool = False,
        config: RetrievalConfig | None = None,
        verify: bool = True,
        trainable_adapter: bool = False,
        refresh_every: float | None = None,
        quantize: str | None = None,
    ) -> SelfRetrievalModel:
        """Load an artifact's current generation (validated before use).

        A LoRA adapter is merged into the base weights for fast inference, unless
        ``trainable_adapter`` asks for the peft model itself (to train it further).
        ``quantize="int8"``: dynamic int8 linear layers for CPU inference (faster on a small
        CPU; ``benchmarks/latency.py`` measures speed and quality); not with a trainable adapter.
        ``refresh_every``: check for a newer generation (another process's delete or add) at most
        every this many seconds, before a query; ``refresh()`` checks on demand.
        """
        path = Path(path)
        quantize = checked_quantize(quantize)
        if quantize and trainable_adapter:
            raise ValueError("a quantized model cannot be trained: drop quantize or the adapter")
        for attempt in range(3):
            folder, generation = artifact.resolve(path)
            try:
                loaded = cls._load_generation(
                    folder,
                    device=device,
                    dtype=dtype,
                    trust_remote_code=trust_remote_code,
                    config=config,
                    verify=verify,
                    trainable_adapter=trainable_adapter,
                    quantize=quantize,
                )
                break
            except (ArtifactError, OSError):
                # Its generation was removed while we read it (a load slower than the retention
                # time): start again from the pointer, which names a newer one.
                if attempt == 2 or artifact.current_generation(path) == generation:
                    raise
        loaded.artifact_path = path
        loaded.generation = generation
        loaded.refresh_every = refresh_every
        loaded._config_given = config is not None
        loaded._load_options = {
            "device": device,
            "dtype": dtype,
            "trust_remote_code": trust_remote_code,
            "verify": verify,
            "quantize": quantize,
        }
        return loaded

    @classmethod
    def _load_generation(
        cls,
        folder: Path,
        *,
        device: str | None,
        dtype: str | None,
        trust_remote_code: bool,
        config: RetrievalConfig | None,
        verify: bool,
        trainable_adapter: bool = False,
        weights_of: SelfRetrievalModel | None = None,
        quantize: str | None = None,
    ) -> SelfRetrievalModel:
        """One generation's model; ``weights_of`` lends its weights and tokenizer instead."""
        from transformers import AutoTokenizer

        manifest = artifact.read_manifest(folder, verify=verify, verify_weights=weights_of is None)
        if weights_of is not None:
            tokenizer = weights_of.tokenizer
        else:
            tokenizer_dir = folder / artifact.TOKENIZER_DIR
            if not tokenizer_dir.is_dir():
                raise ArtifactError(f"artifact tokenizer folder is missing: {tokenizer_dir}")
            tokenizer = AutoTokenizer.from_pretrained(
                tokenizer_dir, trust_remote_code=trust_remote_code
            )
        fingerprint = tokenizer_fingerprint(tokenizer)
        if fingerprint != manifest.get("tokenizer_fingerprint"):
            raise ArtifactError(
                f"the tokenizer in {folder / artifact.TOKENIZER_DIR} does not match the "
                f"manifest's fingerprint ({fingerprint[:12]} != "
                f"{str(manifest.get('tokenizer_fingerprint'))[:12]}): the trie was built with "
                "another tokenizer; rebuild the artifact"
            )
        trie_meta = artifact.load_trie_fingerprint(folder)
        if trie_meta.get("tokenizer_fingerprint") != fingerprint:
            raise ArtifactError(
                f"the trie in {folder / artifact.TRIE_DIR} was built with tokenizer "
                f"{str(trie_meta.get('tokenizer_fingerprint'))[:12]}, but the artifact's tokenizer "
                f"is {fingerprint[:12]}: token ids would not match; rebuild the artifact"
            )
        trie = PassageTrie.load(folder / artifact.TRIE_DIR, mmap=True)
        store = PassageStore.load(folder / artifact.STORE_DIR)
        if weights_of is not None:
            model = weights_of.model
        else:
            model = cls._load_weights(
                folder, manifest, device, dtype, trust_remote_code, trainable_adapter
            )
            if quantize == "int8":
                model = quantize_int8(model)
        return cls(
            model,
            tokenizer,
            trie,
            store,
            template=PromptTemplate.from_dict(manifest.get("prompt_template", {})),
            config=config or RetrievalConfig.from_dict(manifest.get("retrieval_config", {})),
            base_model=manifest.get("base_model"),
            manifest=manifest,
        )

    @staticmethod
    def _load_weights(
        folder: Path,
        manifest: Mapping[str, Any],
        device: str | None,
        dtype: str | None,
        trust_remote_code: bool,
        trainable_adapter: bool,
    ) -> Any:
        from transformers import AutoModelForCausalLM

        dev, torch_dtype = resolve_device_and_dtype(device, dtype)
        weights = manifest.get("weights", "full")
        if weights == "full":
            with quiet_weight_loading():
                model = AutoModelForCausalLM.from_pretrained(
                    folder / artifact.MODEL_DIR,
                    trust_remote_code=trust_remote_code,
                    **{dtype_kwarg(): torch_dtype},
                )
        elif weights == "lora":
            from peft import PeftModel

            base, _ = load_base_model(
                manifest["base_model"],
                device="cpu",
                dtype=torch_dtype,
                trust_remote_code=trust_remote_code,
            )
            model = PeftModel.from_pretrained(
                base, folder / artifact.ADAPTER_DIR, is_trainable=trainable_adapter
            )
            if not trainable_adapter:
                model = model.merge_and_unload()
        else:
            raise ArtifactError(
                f"unknown weights kind {weights!r} in {folder / artifact.MANIFEST_FILE}"
            )
        return model.to(dev).eval()

    def save_pretrained(
        self, path: str | Path, *, adapter: Any = None, lock_timeout: float | None = None
    ) -> Path:
        """Write the model as a new generation of the artifact at ``path`` (created if needed).

        Readers of ``path`` go on reading the previous generation until this one is complete.
        ``adapter``: a peft model whose LoRA adapter is saved instead of full weights.
        """
        path = Path(path)
        if self._load_options.get("quantize") and adapter is None:
            raise ArtifactError(
                "this model was loaded with quantize=... for inference; its int8 weights are not "
                "saved: load the artifact without quantize to save it"
            )
        fingerprint = tokenizer_fingerprint(self.tokenizer)
        with artifact.new_generation(path, "save", lock_timeout=lock_timeout) as tmp:
            self.tokenizer.save_pretrained(tmp / artifact.TOKENIZER_DIR)
            if adapter is not None:
                adapter.save_pretrained(tmp / artifact.ADAPTER_DIR)
                weights = "lora"
            else:
                self.model.save_pretrained(tmp / artifact.MODEL_DIR)
                weights = "full"
            artifact.save_index(
                tmp,
                self.trie,
                self.store,
                tokenizer_fingerprint=fingerprint,
                prompt_template=self.template.to_dict(),
            )
            manifest = {
                **{k: v for k, v in self.manifest.items() if k not in ("files", "generation")},
                "base_model": self.base_model,
                "weights": weights,
                "tokenizer_fingerprint": fingerprint,
                "prompt_template": self.template.to_dict(),
                "retrieval_config": self.config.to_dict(),
                "trie": {
                    "n_passages": len(self.trie),
                    "n_nodes": int(self.trie.n_nodes),
                    "eos_token_id": self.renderer.eos_id,
                },
                "n_passages": len(self.store),
            }
            self.manifest = artifact.write_manifest(tmp, manifest)
        with self.lock:
            self.artifact_path = path
            self.generation = artifact.current_generation(path)
            self.manifest["generation"] = self.generation
        return path

    # -- keeping current ------------------------------------------------------------------------

    def refresh(self) -> bool:
        """Switch to the artifact's current generation if another write made a newer one.

        Cheap when nothing changed (one small file read). Unchanged weights are kept: only the
        trie, the passages and the manifest are read, so a delete elsewhere costs little here.
        Returns whether anything changed. Queries already running finish on what they started.
        """
        self._checked_at = time.monotonic()
        if self.artifact_path is None:
            return False
        generation = artifact.current_generation(self.artifact_path)
        if generation == self.generation:
            return False
        folder, generation = artifact.resolve(self.artifact_path)
        options = dict(self._load_options)
        manifest = artifact.read_manifest(folder, verify=False)
        same_weights = _weights_key(manifest) == _weights_key(self.manifest)
        if same_weights:
            fresh = self._load_generation(
                folder,
                **options,
                config=self.config if self._config_given else None,
                weights_of=self,
            )
        else:
            fresh = self.from_pretrained(
                self.artifact_path, **options, config=self.config if self._config_given else None
            )
        self._adopt(fresh, generation)
        return True

    def _adopt(self, fresh: SelfRetrievalModel, generation: int | None) -> None:
        """Take ``fresh``'s state between two calls (the lock waits for running ones)."""
        with self.lock:
            for name in _STATE:
                setattr(self, name, getattr(fresh, name))
            self.generation = generation

    def _maybe_refresh(self) -> None:
        every = self.refresh_every
        if every is not None and time.monotonic() - self._checked_at >= every:
            self.refresh()

    def delete_documents(self, ids: Sequence[str], *, lock_timeout: float | None = None) -> int:
        """Remove documents (or passages) by id; the next query no longer finds them.

        A model from an artifact writes a new generation there (other processes see it after
        their ``refresh``); a model never saved changes only in memory. Returns the number of
        passages removed.
        """
        if self.artifact_path is not None:
            removed = delete_documents(self.artifact_path, ids, lock_timeout=lock_timeout)
            self.refresh()
            return removed
        with self.lock:
            kept = remaining_passages(list(self.store), ids)
            checksum = Corpus.from_passages(kept).checksum()
            fresh = type(self)(
                self.model,
                self.tokenizer,
                build_trie(self.tokenizer, self.template, kept),
                PassageStore(kept),
                template=self.template,
                config=self.config,
                base_model=self.base_model,
                manifest={**self.manifest, "corpus_checksum": checksum},
            )
            removed = len(self.store) - len(kept)
            self._adopt(fresh, self.generation)
        return removed

    def add_documents(
        self, documents: Iterable[Document | Mapping[str, Any]], **options: Any
    ) -> int:
        """Train new documents in (the ``train`` extra) and use them from the next query on.

        The artifact gets a new generation (the trainer's ``add_documents``: new passages plus a
        replay sample of old ones, ``options`` as it takes them). Returns the passages added.
        """
        if self.artifact_path is None:
            raise ArtifactError(
                "add_documents trains into an artifact: save_pretrained(path) first"
            )
        before = len(self.store)
        load_trainer().add_documents(self.artifact_path, documents, **options)
        self.refresh()
        return len(self.store) - before

    def _compute(self, work: Callable[[], T]) -> T:
        """``work()`` under the lock, on the compute thread of this model's device
        (``compute_thread``: one OpenMP team whichever thread calls).

        A caller that holds the lock already (``fitting``, or a user running the model beside
        retrieval) runs it on its own thread: the compute thread would wait for that lock
        forever."""

        def locked() -> T:
            with self.lock:
                return work()

        if self.lock._is_owned():  # type: ignore[attr-defined]
            return locked()
        return compute_thread.run(locked, str(next(self.model.parameters()).device))

    # -- retrieval ----------------------------------------------------------------------------

    def retrieve(self, query: str, k: int = 10, filter: Filter = None) -> list[RetrievalResult]:
        """The ``k`` best passages for ``query`` (fewer only if fewer are allowed)."""
        return self.retrieve_batch([query], k, filter=filter)[0]

    async def aretrieve(
        self, query: str, k: int = 10, filter: Filter = None
    ) -> list[RetrievalResult]:
        """``retrieve`` for async code: concurrent calls are decoded together as one batch
        (``batcher``), each returning what ``retrieve`` would."""
        return await self.batcher().retrieve(query, k, filter)

    def batcher(self) -> RequestBatcher:
        """The worker that merges concurrent ``aretrieve`` calls (started on first use).

        It merges up to 16 waiting calls into one batch: on the 2-core benchmark machine 16
        concurrent calls finished 1.31-1.41x sooner than one after another (3 runs), where one
        call at a time gave 0.97-1.05x (``benchmarks/RESULTS.md``). Merged calls return the same
        passages as ``retrieve``, with scores equal up to a larger batch's float rounding (about
        1e-7). With int8 weights it runs one call at a time, because their activation scales
        depend on the batch. Replace it to choose (``max_batch=1`` for bit-identical scores):
        ``model._batcher = RequestBatcher(model, max_batch=n)``.
        """
        with self.lock:
            if self._batcher is None:
                quantized = bool(self._load_options.get("quantize"))
                self._batcher = RequestBatcher(self, max_batch=1 if quantized else 16)
            return self._batcher

    def retrieve_batch(
        self,
        queries: Sequence[str],
        k: int = 10,
        filter: Filter | Sequence[Filter] = None,
        *,
        batch_size: int = 8,
    ) -> list[list[RetrievalResult]]:
        """``retrieve`` for several queries, decoded together ``batch_size`` at a time."""
        k = checked_int(k, "k", error=QueryError)
        batch_size = checked_int(batch_size, "batch_size", error=QueryError)
        if isinstance(queries, str):
            raise QueryError("retrieve_batch takes a list of queries; use retrieve() for one")
        self._maybe_refresh()
        queries = [self._bounded_query(q) for q in queries]
        per_query = isinstance(filter, (list, tuple))
        if per_query and len(filter) != len(queries):
            raise QueryError(f"got {len(queries)} queries but {len(filter)} filters")
        filters = cast("list[Filter]", list(filter)) if per_query else None  # type: ignore[arg-type]
        shared = None if per_query else cast("Filter", filter)

        def decode_and_rank() -> list[list[RetrievalResult]]:
            results: list[list[RetrievalResult]] = []
            stats = DecodingStats()
            # Masks are positions in the store: computed under the lock, against the generation
            # this call decodes with, so a refresh cannot slip in between.
            if filters is not None:
                masks = [filter_mask(self.store, f) for f in filters]
            else:
                masks = [filter_mask(self.store, shared)] * len(queries)
            for start in range(0, len(queries), batch_size):
                chunk = queries[start : start + batch_size]
                prompts = [self.renderer.encode_prompt(q) for q in chunk]
                hyps, chunk_stats = self.decoder.decode(
                    prompts,
                    max(k, self.config.decoding.candidates),
                    masks[start : start + batch_size],
                )
                stats.add(chunk_stats)
                if self.config.mode is RetrievalMode.HYBRID:
                    chunk_masks = masks[start : start + batch_size]
                    results.extend(
                        self._rank_hybrid(q, h, k, m)
                        for q, h, m in zip(chunk, hyps, chunk_masks, strict=True)
                    )
                else:
                    results.extend(self._rank(q, h, k) for q, h in zip(chunk, hyps, strict=True))
            self.last_stats = stats
            return results

        return self._compute(decode_and_rank)

    def _bounded_query(self, query: str) -> str:
        """The query checked and cut to ``RetrievalConfig.max_query_tokens`` (with a warning)."""
        query = self.template.normalize_query(query)
        limit = self.config.max_query_tokens
        query, cut = self.renderer.cut_to_tokens(query, limit)
        if cut:
            warnings.warn(
                f"the query was cut to its first {limit} tokens (RetrievalConfig.max_query_tokens)",
                UserWarning,
                stacklevel=3,
            )
        return query

    def _rank(self, query: str, hyps: list[Hypothesis], k: int) -> list[RetrievalResult]:
        """Expand hypotheses to passages, self-assess them, fuse the scores, keep ``k``."""
        entries = [(h, int(p)) for h in hyps for p in h.passages]
        if not entries:
            return []
        passages = [self.store[p] for _, p in entries]
        logprobs = np.array([h.logprob for h, _ in entries])
        pairs = [(p.title, p.text) for p in passages]
        relevance = None
        if self.config.fusion is Fusion.CONVEX:
            return self._rank_convex(query, entries, passages, logprobs, k)
        if self.config.fusion is Fusion.LOGPROB:
            judge = self.assessor.relevance_of(query)
            relevance = bounded_relevance(
                logprobs,
                self.exact_places(k),
                lambda chosen: judge([pairs[i] for i in chosen]),
                logprob_fused(logprobs),
            )
        elif self.config.fusion is not Fusion.GENERATION:
            relevance = self.assessor.relevance(query, pairs)
        candidates = Candidates(
            passages=[p for _, p in entries],
            titles=[p.title for p in passages],
            title_logprobs=np.array([h.title_logprob for h, _ in entries]),
            logprobs=logprobs,
            relevance=relevance,
        )
        order, scores = rank_candidates(candidates, self.config.fusion, self.config.temperature)
        return [
            _result(
                passages[i],
                rank,
                scores[i],
                generation_logprob=float(entries[i][0].logprob),
                title_logprob=float(entries[i][0].title_logprob),
                relevance=judged(relevance, i),
            )
            for rank, i in enumerate(order[:k], start=1)
        ]

    def _rank_convex(
        self,
        query: str,
        entries: list[tuple[Hypothesis, int]],
        passages: list[Passage],
        logprobs: np.ndarray,
        k: int,
    ) -> list[RetrievalResult]:
        """The beams' passages ranked by the ``convex`` fusion of generation and relevance."""
        hybrid = self.config.hybrid
        pairs = [(p.title, p.text) for p in passages]
        judge = self.assessor.relevance_of(query)
        scores, relevance = bounded_convex_scores(
            {"generation": logprobs},
            hybrid.self_weights,
            lambda chosen: judge([pairs[i] for i in chosen]),
            self.exact_places(k),
            as_is=hybrid.as_is,
        )
        order = sorted(range(len(entries)), key=lambda i: (-scores[i], entries[i][1]))
        return [
            _result(
                passages[i],
                rank,
                scores[i],
                generation_logprob=float(entries[i][0].logprob),
                title_logprob=float(entries[i][0].title_logprob),
                relevance=judged(relevance, i),
            )
            for rank, i in enumerate(order[:k], start=1)
        ]

    def bm25_index(self) -> BM25Index:
        """BM25 over this model's passages, built on first use and again after the store changes
        (a refresh or an update swaps the store; the index follows it)."""
        with self.lock:
            cached = self._bm25
            if cached is None or cached[0] is not self.store:
                cached = self._bm25 = (self.store, BM25Index(list(self.store)))
            return cached[1]

    def dense_index(self) -> DenseIndex:
        """The ``HybridConfig.dense_model`` embeddings of this model's passages, encoded on first
        use; after the store changes only new or edited passages are encoded again."""

        def current() -> DenseIndex:
            cached = self._dense
            name = self.config.hybrid.dense_model
            if cached is None or cached[0] is not self.store or cached[1].model_name != name:
                previous = None if cached is None else cached[1]
                index = DenseIndex(list(self.store), model=name, reuse=previous)
                cached = self._dense = (self.store, index)
            return cached[1]

        return self._compute(current)

    def generation_scores(self, query: str, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Log-probability of the first ``HybridConfig.generation_tokens`` tokens of each
        passage's trie key after ``query``: how strongly the model would generate it."""
        return self._generation_scores(self._bounded_query(query), pairs)

    def _generation_scores(self, query: str, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """``generation_scores`` of a query already checked and cut."""
        tokens = self.config.hybrid.generation_tokens
        logprobs = self._compute(lambda: self.assessor.target_logprobs(query, pairs, tokens))
        return np.array([float(lp.sum()) for lp in logprobs], dtype=np.float64)

    def _rank_hybrid(
        self, query: str, hyps: list[Hypothesis], k: int, mask: np.ndarray | None
    ) -> list[RetrievalResult]:
        """The beams' passages and BM25's best, ranked by the convex fusion of their scores."""
        hybrid = self.config.hybrid
        bm25 = self.bm25_index().scores(query)
        if mask is not None:
            bm25 = np.where(mask, bm25, -np.inf)
        by_bm25 = _top_indices(bm25, hybrid.bm25_depth)
        beams = [int(p) for h in hyps for p in h.passages]
        union = list(dict.fromkeys([*beams, *(i for i in by_bm25 if np.isfinite(bm25[i]))]))
        if not union:
            return []
        passages = [self.store[i] for i in union]
        pairs = [(p.title, p.text) for p in passages]
        features = {"bm25": bm25[union]}
        # Scores with weight 0 change no rank, so they are not computed: the generation score
        # is most of a hybrid query's cost, and a fit may give it no weight.
        if hybrid.weights["generation"] > 0:
            features["generation"] = self._generation_scores(query, pairs)
        if hybrid.weights["dense"] > 0:
            features["dense"] = self.dense_index().scores([query])[0][union]
        judge = self.assessor.relevance_of(query)
        scores, relevance = bounded_convex_scores(
            features,
            hybrid.weights,
            lambda chosen: judge([pairs[i] for i in chosen]),
            self.exact_places(k),
            as_is=hybrid.as_is,
        )
        order = sorted(range(len(union)), key=lambda i: (-scores[i], union[i]))
        return [
            _result(
                passages[i],
                rank,
                scores[i],
                generation_logprob=(
                    float(features["generation"][i]) if "generation" in features else None
                ),
                relevance=judged(relevance, i),
                bm25_score=float(features["bm25"][i]),
                dense_score=float(features["dense"][i]) if "dense" in features else None,
            )
            for rank, i in enumerate(order[:k], start=1)
        ]

    # -- assessment and answers -------------------------------------------------------------------

    def _as_pairs(
        self, passages: Sequence[Passage | str | tuple[str, str]]
    ) -> list[tuple[str, str]]:
        pairs = []
        for item in passages:
            if isinstance(item, Passage):
                pairs.append((item.title, item.text))
            elif isinstance(item, str):
                pairs.append(("", item))
            elif isinstance(item, tuple) and len(item) == 2:
                pairs.append((str(item[0]), str(item[1])))
            else:
                raise QueryError(
                    "passages must be Passage objects, strings, or (title, text) pairs; got "
                    f"{type(item).__name__}"
                )
            if not pairs[-1][1].strip():
                raise QueryError("cannot assess an empty passage text")
        return pairs

    def warm_cache(self, *, show_progress: bool = True) -> int:
        """Read every passage of the corpus into the self-assessment's cache now (query
        likelihood only), in the order of the store, until ``AssessmentConfig.cache_megabytes``
        is full: the first queries then cost what later ones do. Returns how many were read.

        Worth it for a service that keeps the model loaded; the SQuAD small slice (304 passages)
        needs about 3.5 GB in float32, the bundled corpus (32) about 300 MB."""
        if self.config.assessment.method != "query_likelihood":
            return 0
        self._maybe_refresh()
        cache = self.assessor.context_scorer.cache
        passages = [(p.title, p.text) for p in self.store]
        batch = self.config.assessment.batch_size
        chunks = range(0, len(passages), batch)
        if show_progress:
            from tqdm.auto import tqdm

            chunks = tqdm(chunks, desc="reading passages", unit="batch")
        read = 0
        for start in chunks:
            chunk = passages[start : start + batch]
            read += self._compute(partial(self.assessor.read_passages, chunk))
            if cache.bytes + cache.bytes / max(len(cache), 1) * batch > cache.max_bytes:
                break  # the next batch would push the first ones out again
        return read

    def assess(self, query: str, passages: Sequence[Passage | str | tuple[str, str]]) -> np.ndarray:
        """Relevance of each passage to ``query`` in [0, 1); passages need not be indexed.

        Passages longer than ``AssessmentConfig.max_passage_tokens`` are judged by their start.
        """
        self._maybe_refresh()
        query = self._bounded_query(query)
        pairs = self.bounded_pairs(passages, stacklevel=3)
        return self._compute(lambda: self.assessor.relevance(query, pairs))

    def exact_places(self, k: int) -> int:
        """How many leading places of ``k`` results must come out as if every candidate were
        assessed (``AssessmentConfig.exact_ranks``; the rest may rank by a bound)."""
        return min(k, self.config.assessment.exact_ranks or k)

    def relevance_of(
        self, query: str, passages: Sequence[Passage | str | tuple[str, str]]
    ) -> Callable[[Sequence[int]], np.ndarray]:
        """``assess`` a few of ``passages`` at a time: a function from positions in
        ``passages`` to their relevance. Checks, cuts and the query's prompt are done once; each
        call holds the lock, and all calls judge with the weights this call found."""
        self._maybe_refresh()
        query = self._bounded_query(query)
        pairs = self.bounded_pairs(passages, stacklevel=3)
        judge = self.assessor.relevance_of(query)

        def relevance(chosen: Sequence[int]) -> np.ndarray:
            return self._compute(lambda: judge([pairs[i] for i in chosen]))

        return relevance

    def bounded_pairs(
        self, passages: Sequence[Passage | str | tuple[str, str]], *, stacklevel: int = 2
    ) -> list[tuple[str, str]]:
        """``(title, text)`` of each passage, texts cut to ``AssessmentConfig.max_passage_tokens``
        (with a warning)."""
        limit = self.config.assessment.max_passage_tokens
        pairs = []
        for title, text in self._as_pairs(passages):
            text, cut = self.renderer.cut_to_tokens(text, limit)
            if cut:
                warnings.warn(
                    f"a passage was cut to its first {limit} tokens for assessment "
                    "(AssessmentConfig.max_passage_tokens)",
                    UserWarning,
                    stacklevel=stacklevel + 1,
                )
            pairs.append((title, text))
        return pairs

    def answer(
        self,
        query: str,
        passages: Sequence[Passage | str | tuple[str, str]] | None = None,
        *,
        max_new_tokens: int = 48,
        refuse: bool = False,
    ) -> str:
        """Write an answer from the first passage (retrieved first when none is given).

        Training teaches the model to answer ``PromptTemplate.refusal`` for a passage that does
        not hold the answer, but on the SQuAD small slice it refused for 45% of the questions
        even given the right passage, so by default the refusal's first token is forbidden (EM
        0.225 to 0.295 from the gold passage, 0.220 to 0.270 from the hybrid's first;
        ``benchmarks/RESULTS.md``). ``refuse=True`` lets it refuse."""
        query = self._bounded_query(query)
        if passages is None:
            retrieved = self.retrieve(query, k=1)
            if not retrieved:
                return ""
            passages = [(retrieved[0].title, retrieved[0].text)]
        pairs = self._as_pairs(passages)
        if not pairs:
            raise QueryError("answer() needs at least one passage")
        title, text = pairs[0]
        device = next(self.model.parameters()).device
        suppressed = {} if refuse else {"begin_suppress_tokens": self.renderer.refusal_ids()[:1]}

        def generate() -> str:
            with torch.inference_mode():
                ids = self.renderer.encode_prompt(query)
                ids += self.renderer.assessment_context_ids(title, text)
                out = self.model.generate(
                    **suppressed,
                    input_ids=torch.as_tensor([ids], device=device),
                    attention_mask=torch.ones((1, len(ids)), dtype=torch.long, device=device),
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    eos_token_id=self.renderer.eos_id,
                    pad_token_id=self.decoder.pad_token_id,
                )
            return self.tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True).strip()

        return self._compute(generate)

    def info(self) -> dict[str, Any]:
        """A summary for ``selfretrieval info``."""
        return {
            "base_model": self.base_model,
            "passages": len(self.store),
            "trie_nodes": int(self.trie.n_nodes),
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "device": str(next(self.model.parameters()).device),
            "fusion": self.config.fusion.value,
            "mode": self.config.mode.value,
            "hybrid": self.config.to_dict()["hybrid"],
            "decoding": asdict(self.config.decoding),
            "corpus_checksum": self.manifest.get("corpus_checksum"),
            "training": self.manifest.get("training"),
            "library_versions": self.manifest.get("library_versions"),
        }


_TOKENIZE_BATCH = 1024
"""Passages tokenized per call while building the trie (the tokenizer parallelises a batch)."""

#: What a model holds that one generation of its artifact determines (swapped whole by refresh).
_STATE = (
    "model",
    "tokenizer",
    "trie",
    "store",
    "template",
    "config",
    "base_model",
    "manifest",
    "renderer",
    "decoder",
    "assessor",
)


def _result(passage: Passage, rank: int, score: float, **scores: float | None) -> RetrievalResult:
    """One ranked passage, verbatim, with the scores that ranked it."""
    return RetrievalResult(
        passage_id=passage.id,
        doc_id=passage.doc_id,
        title=passage.title,
        text=passage.text,
        score=float(score),
        rank=rank,
        metadata=dict(passage.metadata),
        **scores,
    )


def _top_indices(scores: np.ndarray, n: int) -> list[int]:
    """Indices of the ``n`` highest scores, best first, ties to the lower index (a partial sort:
    linear in the corpus size, not n log n)."""
    n = min(n, len(scores))
    if n <= 0:
        return []
    if n < len(scores):
        kth = -np.partition(-scores, n - 1)[n - 1]
        part = np.flatnonzero(scores >= kth)  # every tie at the cut, so the lowest index wins
    else:
        part = np.arange(len(scores))
    return sorted((int(i) for i in part), key=lambda i: (-scores[i], i))[:n]


def _weights_key(manifest: Mapping[str, Any]) -> tuple[Any, ...]:
    """What identifies a generation's weights and tokenizer (equal: no need to reload them)."""
    files = manifest.get("files") or {}
    digests = sorted(
        (name, info.get("sha256"))
        for name, info in files.items()
        if name.split("/")[0] in artifact.WEIGHT_DIRS
    )
    return manifest.get("weights"), manifest.get("base_model"), tuple(digests)


def as_corpus(
    corpus: Corpus | Iterable[Document | Passage | Mapping[str, Any]],
    chunking: ChunkingConfig | None = None,
) -> Corpus:
    """Accept a Corpus, Documents, Passages, or plain mappings (documents unless typed)."""
    if isinstance(corpus, Corpus):
        return corpus
    items = list(corpus)
    if items and all(isinstance(item, Passage) for item in items):
        return Corpus.from_passages(items)
    return Corpus.from_documents(items, chunking=chunking)


def build_trie(
    tokenizer: Any,
    template: PromptTemplate,
    corpus: Iterable[Passage],
    *,
    show_progress: bool = False,
) -> PassageTrie:
    """The trie over the rendered targets of ``corpus`` (the same ids the trainer teaches)."""
    return passage_keys(tokenizer, template, corpus, show_progress=show_progress).trie(
        show_progress=show_progress
    )


def passage_keys(
    tokenizer: Any,
    template: PromptTemplate,
    corpus: Iterable[Passage],
    *,
    show_progress: bool = False,
) -> PassageKeys:
    """The token ids of every passage's target, tokenized in batches: what the trie is built of."""
    renderer = Renderer(tokenizer, template)
    passages = list(corpus)
    batches: Iterable[int] = range(0, len(passages), _TOKENIZE_BATCH)
    if show_progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="tokenizing passages", unit="batch")
    targets = [
        target
        for start in batches
        for target in renderer.encode_targets(
            [(p.title, p.text) for p in passages[start : start + _TOKENIZE_BATCH]]
        )
    ]
    return PassageKeys.from_keys([t.ids for t in targets], [t.title_length for t in targets])
