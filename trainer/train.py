"""Internalizing a corpus into a causal LM with the transformers ``Trainer`` (LoRA or full).

Why ``Trainer``: checkpoints, resume, gradient accumulation, mixed precision, DDP under
``accelerate launch`` and progress bars come from a maintained loop; this package only supplies
the data (``data``), the batches (``collation``) and the loss (``loss``).
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from selfretrieval_integrations.base_models import canonical_base_model_name, load_base_model
from selfretrieval_integrations.corpus import ChunkingConfig, Corpus, Document, Passage
from selfretrieval_integrations.index import PassageStore
from selfretrieval_integrations.retrieval import (
    IGNORE_INDEX,
    PromptTemplate,
    Renderer,
    RetrievalConfig,
    RetrievalMode,
    SelfRetrievalModel,
    as_corpus,
    build_trie,
    fit_hybrid,
    save_retrieval_config,
)
from selfretrieval_integrations.retrieval.fitting import GENERATION_TOKENS

from .collation import ExampleDataset, PackingCollator, packing_supported
from .config import TrainingConfig, TrainingError
from .data import TrainingSet, build_training_set, split_validation
from .loss import trainer_class

# TrainingConfig and TrainingError live in config.py; they stay importable from here.
#: The retrieval settings a trained artifact gets unless told otherwise.
TRAINED_DEFAULT = RetrievalConfig(mode=RetrievalMode.HYBRID)

__all__ = [
    "TRAINED_DEFAULT",
    "TrainingConfig",
    "TrainingError",
    "TrainingRun",
    "fit",
    "fit_fusion_weights",
    "save_artifact",
    "train",
]


def _training_arguments(
    config: TrainingConfig, output_dir: Path, *, use_cuda: bool, show_progress: bool
) -> Any:
    from transformers import TrainingArguments

    params = inspect.signature(TrainingArguments.__init__).parameters
    kwargs: dict[str, Any] = {
        "output_dir": str(output_dir),
        "num_train_epochs": config.epochs,
        "learning_rate": config.lr,
        "per_device_train_batch_size": config.batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "warmup_ratio": config.warmup_ratio,
        "lr_scheduler_type": config.lr_scheduler,
        "weight_decay": config.weight_decay,
        "logging_steps": config.logging_steps,
        "save_strategy": "steps",
        "save_steps": config.save_steps,
        "save_total_limit": 2,
        "seed": config.seed,
        "data_seed": config.seed,
        "report_to": [],
        "remove_unused_columns": False,
        "disable_tqdm": not show_progress,
        "bf16": use_cuda and torch.cuda.is_bf16_supported(),
        "use_cpu": not use_cuda,
        "dataloader_num_workers": 0,
    }
    # Without packing, length-grouped batches keep padding down (renamed in transformers 5).
    if not packing_supported():
        if "train_sampling_strategy" in params:
            kwargs["train_sampling_strategy"] = "group_by_length"
        else:
            kwargs["group_by_length"] = True
    if config.gradient_checkpointing:  # renamed activation_checkpointing in transformers 5
        name = "activation_checkpointing" if "activation_checkpointing" in params else None
        kwargs[name or "gradient_checkpointing"] = True
    if "warmup_ratio" not in params:
        kwargs.pop("warmup_ratio")
    return TrainingArguments(**{k: v for k, v in kwargs.items() if k in params})


def _last_checkpoint(folder: Path) -> str | None:
    """The newest *complete* checkpoint in ``folder``.

    ``Trainer`` writes ``trainer_state.json`` last, so a run killed while saving leaves a newer
    folder without a readable one; such folders are removed and the previous checkpoint is used.
    """
    if not folder.is_dir():
        return None
    steps = []
    for path in folder.glob("checkpoint-*"):
        suffix = path.name.rsplit("-", 1)[-1]
        if path.is_dir() and suffix.isdigit():
            steps.append((int(suffix), path))
    for _, path in sorted(steps, reverse=True):
        try:
            json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            if _is_main_process():
                shutil.rmtree(path, ignore_errors=True)
            continue
        return str(path)
    return None


def _out_of_memory(error: BaseException) -> bool:
    text = str(error).lower()
    return (
        isinstance(error, torch.cuda.OutOfMemoryError)
        or "out of memory" in text
        or (isinstance(error, MemoryError))
    )


@dataclass
class TrainingRun:
    """What ``fit`` returns: the trained (peft or plain) model and the run's summary."""

    model: Any
    summary: dict[str, Any]


def fit(
    model: Any,
    tokenizer: Any,
    training_set: TrainingSet,
    config: TrainingConfig,
    checkpoint_dir: Path,
    *,
    show_progress: bool = True,
) -> TrainingRun:
    """Train ``model`` on ``training_set``, resuming from a checkpoint in ``checkpoint_dir``.

    With LoRA the model is wrapped in a peft adapter (unless it already is one, as when an
    artifact is updated) and returned wrapped; the caller saves or merges it.
    """
    from transformers import Trainer, set_seed

    if not training_set.examples:
        raise TrainingError("no training examples: the corpus produced nothing to learn from")
    set_seed(config.seed)
    if not config.full_finetune and not hasattr(model, "peft_config"):
        from peft import LoraConfig, get_peft_model

        names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
        targets = [t for t in config.lora_target_modules if t in names]
        if not targets:
            raise TrainingError(
                f"none of the LoRA target modules {list(config.lora_target_modules)} exist in "
                f"{type(model).__name__}; set TrainingConfig.lora_target_modules"
            )
        lora = LoraConfig(
            r=config.lora_rank,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=targets,
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, lora)
    if config.gradient_checkpointing and hasattr(model, "enable_input_require_grads"):
        model.enable_input_require_grads()
    model.train()
    use_cuda = next(model.parameters()).device.type == "cuda"
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    collator = PackingCollator(int(pad))
    args = _training_arguments(
        config, checkpoint_dir, use_cuda=use_cuda, show_progress=show_progress
    )
    chosen_class = trainer_class(config.target_logits_only, model)
    trainer = chosen_class(
        model=model,
        args=args,
        train_dataset=ExampleDataset(training_set.examples, config.max_length),
        data_collator=collator,
    )
    resume = _last_checkpoint(checkpoint_dir)
    started = time.perf_counter()
    try:
        result = trainer.train(resume_from_checkpoint=resume)
    except (RuntimeError, MemoryError) as error:
        if _out_of_memory(error):
            raise TrainingError(
                f"out of memory while training ({error}). Try a smaller --batch-size (now "
                f"{config.batch_size}) with more gradient accumulation, gradient checkpointing "
                "(TrainingConfig.gradient_checkpointing=True), LoRA instead of full fine-tuning, "
                "or a shorter max_length"
            ) from error
        raise
    elapsed = time.perf_counter() - started
    model.eval()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    summary = {
        "examples": len(training_set.examples),
        "example_kinds": training_set.stats.get("kinds", training_set.stats),
        "tokens_per_epoch": sum(len(e.input_ids) for e in training_set.examples),
        "target_tokens_per_epoch": sum(
            sum(1 for label in e.labels if label != IGNORE_INDEX) for e in training_set.examples
        ),
        "tokens_trained": collator.real_tokens,
        "padding_fraction": round(collator.padding_fraction, 4),
        "packed": collator.pack,
        "target_logits_only": chosen_class is not Trainer,
        "tokens_per_second": round(collator.real_tokens / elapsed, 1) if elapsed > 0 else None,
        "runtime_seconds": round(elapsed, 1),
        "steps": trainer.state.global_step,
        "epochs": config.epochs,
        "final_loss": losses[-1] if losses else getattr(result, "training_loss", None),
        "train_loss": getattr(result, "training_loss", None),
        "resumed_from": os.path.basename(resume) if resume else None,
        "world_size": args.world_size,
        "config": config.to_dict(),
        "data": {k: v for k, v in training_set.stats.items() if k != "kinds"},
    }
    # Every process lists the checkpoint folder as ``train`` ends: the main process may remove
    # it only once the others are past that, or they fail on a folder that has gone.
    trainer.accelerator.wait_for_everyone()
    if trainer.is_world_process_zero() and not config.keep_checkpoints:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return TrainingRun(model=model, summary=summary)


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def train(
    base_model: str | tuple[Any, Any],
    corpus: Corpus | Iterable[Document | Passage | Mapping[str, Any]],
    out: str | Path,
    *,
    queries: Mapping[str, str] | None = None,
    qrels: Mapping[str, Mapping[str, int]] | None = None,
    answers: Mapping[str, Sequence[str]] | None = None,
    config: TrainingConfig | None = None,
    template: PromptTemplate | None = None,
    retrieval_config: RetrievalConfig | None = None,
    chunking: ChunkingConfig | None = None,
    checkpoint_dir: str | Path | None = None,
    device: str | None = None,
    trust_remote_code: bool = False,
    show_progress: bool = True,
) -> SelfRetrievalModel:
    """Train ``base_model`` on ``corpus`` (and optional queries) and save the artifact to ``out``.

    ``out`` is replaced atomically at the end: an earlier artifact there stays loadable until
    the new one is complete. Checkpoints go to ``checkpoint_dir`` (default: ``<out>.checkpoints``)
    so that running the same command again after a crash resumes instead of restarting.

    ``retrieval_config`` defaults to the hybrid mode (``TRAINED_DEFAULT``): on the SQuAD
    benchmark it ranked far better than the trained model's beams alone (benchmarks/RESULTS.md).
    """
    config = config or TrainingConfig()
    retrieval_config = retrieval_config or TRAINED_DEFAULT
    out = Path(out)
    checkpoint_dir = (
        Path(checkpoint_dir) if checkpoint_dir else out.with_name(out.name + ".checkpoints")
    )
    template = template or PromptTemplate()
    corpus = as_corpus(corpus, chunking)
    if isinstance(base_model, str):
        model, tokenizer = load_base_model(
            base_model, device=device, dtype="float32", trust_remote_code=trust_remote_code
        )
        # A local folder is recorded absolute: the artifact reloads it to apply the adapter.
        local = Path(base_model).expanduser()
        is_local = canonical_base_model_name(base_model) is None and local.exists()
        base_name: str | None = str(local.resolve()) if is_local else base_model
    else:
        model, tokenizer = base_model
        base_name = None
    trie = build_trie(tokenizer, template, corpus, show_progress=show_progress)
    renderer = Renderer(tokenizer, template)
    held_out: dict[str, dict[str, int]] = {}
    if qrels and config.validation_fraction > 0:
        qrels, held_out = split_validation(qrels, config.validation_fraction, config.seed)
    training_set = build_training_set(
        renderer, corpus, trie, queries=queries, qrels=qrels, answers=answers, mix=config.mix
    )
    run = fit(model, tokenizer, training_set, config, checkpoint_dir, show_progress=show_progress)
    trained = save_artifact(
        run,
        tokenizer,
        trie,
        PassageStore(list(corpus)),
        template,
        retrieval_config,
        base_name,
        corpus.checksum(),
        out,
        history=[],
    )
    if held_out and queries and config.fit_fusion and _is_main_process():
        fit_fusion_weights(
            trained,
            queries,
            held_out,
            show_progress=show_progress,
            generation_tokens=config.fusion_generation_tokens,
        )
    return trained


def fit_fusion_weights(
    model: SelfRetrievalModel,
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    *,
    show_progress: bool = True,
    generation_tokens: Sequence[int] = GENERATION_TOKENS,
) -> SelfRetrievalModel:
    """Fit the hybrid's and the SelfReranker's weights (and the generation score's length, of
    ``generation_tokens``) on held-out questions, and save them as a new generation of the
    model's artifact (the model switches to it)."""
    hybrid = fit_hybrid(
        model, queries, qrels, show_progress=show_progress, generation_tokens=generation_tokens
    )
    config = replace(model.config, hybrid=hybrid)
    if model.artifact_path is not None:
        save_retrieval_config(model.artifact_path, config)
        model.refresh()
    model.config = config
    return model


def save_artifact(
    run: TrainingRun,
    tokenizer: Any,
    trie: Any,
    store: PassageStore,
    template: PromptTemplate,
    retrieval_config: RetrievalConfig | None,
    adapter_base: str | None,
    checksum: str,
    out: Path,
    *,
    history: list[dict[str, Any]],
    base_label: str | None = None,
    previous_training: dict[str, Any] | None = None,
) -> SelfRetrievalModel:
    """Save the artifact of a run to ``out`` and return the model with any LoRA adapter merged.

    The artifact keeps just the adapter when its base can be reloaded by name
    (``adapter_base``); otherwise the adapter is merged and full weights are saved. ``train`` and
    ``add_documents`` both end here, so both write artifacts alike.
    """
    model = run.model
    is_lora = hasattr(model, "peft_config")
    if is_lora and adapter_base is None:
        model, is_lora = model.merge_and_unload(), False
    manifest = {
        "corpus_checksum": checksum,
        "training": previous_training or run.summary,
        "history": history,
    }
    kwargs = {
        "template": template,
        "config": retrieval_config,
        "base_model": adapter_base or base_label or "custom",
    }
    srm = SelfRetrievalModel(model, tokenizer, trie, store, manifest=manifest, **kwargs)
    if _is_main_process():
        srm.save_pretrained(out, adapter=model if is_lora else None)
    if is_lora:
        saved = srm
        srm = SelfRetrievalModel(
            model.merge_and_unload(), tokenizer, trie, store, manifest=saved.manifest, **kwargs
        )
        srm.artifact_path, srm.generation = saved.artifact_path, saved.generation
    return srm
