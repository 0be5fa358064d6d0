"""``SelfRetrievalModel``: one causal LM that retrieves, reranks and answers over its corpus."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from selfretrieval_integrations import artifact
from selfretrieval_integrations.base_models import (
    dtype_kwarg,
    load_base_model,
    resolve_device_and_dtype,
    tokenizer_fingerprint,
)
from selfretrieval_integrations.corpus import ChunkingConfig, Corpus, Document, Passage
from selfretrieval_integrations.errors import ArtifactError, QueryError
from selfretrieval_integrations.index import Filter, PassageStore, PassageTrie, filter_mask
from selfretrieval_integrations.validation import checked_int

from .assessment import AssessmentConfig, SelfAssessor
from .decoding import ConstrainedDecoder, DecodingConfig, DecodingStats, Hypothesis
from .fusion import Candidates, Fusion, rank_candidates
from .rendering import PromptTemplate, Renderer


@dataclass(frozen=True)
class RetrievalConfig:
    """Everything that decides how a query becomes a ranked list (saved in the manifest)."""

    decoding: DecodingConfig = field(default_factory=DecodingConfig)
    assessment: AssessmentConfig = field(default_factory=AssessmentConfig)
    fusion: Fusion = Fusion.LOGPROB
    """``logprob`` (default: the best on the SQuAD benchmark, see benchmarks/RESULTS.md),
    ``paper`` or ``generation`` (no self-assessment)."""
    temperature: float = 0.4
    """Temperature of the paper's fusion softmaxes."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "fusion", Fusion(self.fusion))
        if self.temperature <= 0:
            raise ValueError(f"RetrievalConfig.temperature must be > 0, got {self.temperature}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["fusion"] = self.fusion.value
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RetrievalConfig:
        def known(kind: type, values: Mapping[str, Any] | None) -> dict[str, Any]:
            return {k: v for k, v in (values or {}).items() if k in kind.__dataclass_fields__}

        return cls(
            decoding=DecodingConfig(**known(DecodingConfig, data.get("decoding"))),
            assessment=AssessmentConfig(**known(AssessmentConfig, data.get("assessment"))),
            fusion=Fusion(data.get("fusion", Fusion.LOGPROB)),
            temperature=float(data.get("temperature", 0.4)),
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
    ) -> SelfRetrievalModel:
        """Load an artifact folder written by ``save_pretrained`` (validated before use).

        A LoRA adapter is merged into the base weights for fast inference, unless
        ``trainable_adapter`` asks for the peft model itself (to train it further).
        """
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder = Path(path)
        manifest = artifact.read_manifest(folder, verify=verify)
        tokenizer_dir = folder / artifact.TOKENIZER_DIR
        if not tokenizer_dir.is_dir():
            raise ArtifactError(f"artifact tokenizer folder is missing: {tokenizer_dir}")
        tokenizer = AutoTokenizer.from_pretrained(
            tokenizer_dir, trust_remote_code=trust_remote_code
        )
        fingerprint = tokenizer_fingerprint(tokenizer)
        if fingerprint != manifest.get("tokenizer_fingerprint"):
            raise ArtifactError(
                f"the tokenizer in {tokenizer_dir} does not match the manifest's fingerprint "
                f"({fingerprint[:12]} != {str(manifest.get('tokenizer_fingerprint'))[:12]}): the "
                "trie was built with another tokenizer; rebuild the artifact"
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
        dev, torch_dtype = resolve_device_and_dtype(device, dtype)
        weights = manifest.get("weights", "full")
        if weights == "full":
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
        model.to(dev).eval()
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

    def save_pretrained(self, path: str | Path, *, adapter: Any = None) -> Path:
        """Write the artifact atomically (a temporary folder renamed into place).

        ``adapter``: a peft model whose LoRA adapter is saved instead of full weights.
        """
        path = Path(path)
        fingerprint = tokenizer_fingerprint(self.tokenizer)
        with artifact.atomic_folder(path) as tmp:
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
                **{k: v for k, v in self.manifest.items() if k not in ("files",)},
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
        return path

    # -- retrieval ----------------------------------------------------------------------------

    def retrieve(self, query: str, k: int = 10, filter: Filter = None) -> list[RetrievalResult]:
        """The ``k`` best passages for ``query`` (fewer only if fewer are allowed)."""
        return self.retrieve_batch([query], k, filter=filter)[0]

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
        queries = [self.template.normalize_query(q) for q in queries]
        if isinstance(filter, (list, tuple)):
            if len(filter) != len(queries):
                raise QueryError(f"got {len(queries)} queries but {len(filter)} filters")
            masks = [filter_mask(self.store, f) for f in filter]
        else:
            mask = filter_mask(self.store, filter)
            masks = [mask] * len(queries)
        results: list[list[RetrievalResult]] = []
        stats = DecodingStats()
        with self.lock:
            for start in range(0, len(queries), batch_size):
                chunk = queries[start : start + batch_size]
                prompts = [self.renderer.encode_prompt(q) for q in chunk]
                hyps, chunk_stats = self.decoder.decode(
                    prompts, k, masks[start : start + batch_size]
                )
                stats.add(chunk_stats)
                results.extend(self._rank(q, h, k) for q, h in zip(chunk, hyps, strict=True))
            self.last_stats = stats
        return results

    def _rank(self, query: str, hyps: list[Hypothesis], k: int) -> list[RetrievalResult]:
        """Expand hypotheses to passages, self-assess them, fuse the scores, keep ``k``."""
        entries = [(h, int(p)) for h in hyps for p in h.passages]
        if not entries:
            return []
        passages = [self.store[p] for _, p in entries]
        relevance = None
        if self.config.fusion is not Fusion.GENERATION:
            relevance = self.assessor.relevance(query, [(p.title, p.text) for p in passages])
        candidates = Candidates(
            passages=[p for _, p in entries],
            titles=[p.title for p in passages],
            title_logprobs=np.array([h.title_logprob for h, _ in entries]),
            logprobs=np.array([h.logprob for h, _ in entries]),
            relevance=relevance,
        )
        order, scores = rank_candidates(candidates, self.config.fusion, self.config.temperature)
        return [
            RetrievalResult(
                passage_id=passages[i].id,
                doc_id=passages[i].doc_id,
                title=passages[i].title,
                text=passages[i].text,
                score=float(scores[i]),
                rank=rank,
                metadata=dict(passages[i].metadata),
                generation_logprob=float(entries[i][0].logprob),
                title_logprob=float(entries[i][0].title_logprob),
                relevance=None if relevance is None else float(relevance[i]),
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

    def assess(self, query: str, passages: Sequence[Passage | str | tuple[str, str]]) -> np.ndarray:
        """Relevance of each passage to ``query`` in [0, 1); passages need not be indexed."""
        query = self.template.normalize_query(query)
        pairs = self._as_pairs(passages)
        with self.lock:
            return self.assessor.relevance(query, pairs)

    def answer(
        self,
        query: str,
        passages: Sequence[Passage | str | tuple[str, str]] | None = None,
        *,
        max_new_tokens: int = 48,
    ) -> str:
        """Write an answer from the first passage (retrieved first when none is given)."""
        query = self.template.normalize_query(query)
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
        with self.lock, torch.inference_mode():
            ids = self.renderer.encode_prompt(query)
            ids += self.renderer.assessment_context_ids(title, text)
            out = self.model.generate(
                input_ids=torch.as_tensor([ids], device=device),
                attention_mask=torch.ones((1, len(ids)), dtype=torch.long, device=device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=self.renderer.eos_id,
                pad_token_id=self.decoder.pad_token_id,
            )
        return self.tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True).strip()

    def info(self) -> dict[str, Any]:
        """A summary for ``selfretrieval info``."""
        return {
            "base_model": self.base_model,
            "passages": len(self.store),
            "trie_nodes": int(self.trie.n_nodes),
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "device": str(next(self.model.parameters()).device),
            "fusion": self.config.fusion.value,
            "decoding": asdict(self.config.decoding),
            "corpus_checksum": self.manifest.get("corpus_checksum"),
            "training": self.manifest.get("training"),
            "library_versions": self.manifest.get("library_versions"),
        }


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
    renderer = Renderer(tokenizer, template)
    passages = list(corpus)
    iterator: Iterable[Passage] = passages
    if show_progress:
        from tqdm.auto import tqdm

        iterator = tqdm(passages, desc="tokenizing passages", unit="passage")
    targets = [renderer.encode_target(p.title, p.text) for p in iterator]
    return PassageTrie.build(
        [t.ids for t in targets], [t.title_length for t in targets], show_progress=show_progress
    )
