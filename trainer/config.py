"""What a training run is asked to do (``TrainingConfig``, recorded in the artifact's manifest),
and the error raised when it cannot be done."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from selfretrieval_integrations.errors import SelfRetrievalError
from selfretrieval_integrations.retrieval.fitting import (
    GENERATION_TOKENS,
    checked_generation_tokens,
)

from .data import MixConfig

DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class TrainingError(SelfRetrievalError, RuntimeError):
    """Training could not run; the message says what to change."""


@dataclass(frozen=True)
class TrainingConfig:
    """How the corpus is trained into the model (recorded in the artifact's manifest)."""

    epochs: float = 2.0
    """Default 2: the second epoch doubled Self-Retrieval Hits@1 on the SQuAD small slice, and
    a third did not pay for its time on the bundled corpus (benchmarks/RESULTS.md)."""
    full_finetune: bool = True
    """Update every weight (the default: it beat LoRA clearly for the 135M offline model, see
    benchmarks/RESULTS.md, and the paper's choice); False trains a LoRA adapter, which needs
    less memory for larger models."""
    learning_rate: float | None = None
    """Default: 3e-4 with LoRA, 1e-4 for full fine-tuning (measured: 2e-5 trained too slowly,
    Hits@1 0.20 against 0.32 after one epoch on the bundled corpus; see RESULTS.md)."""
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    warmup_ratio: float = 0.03
    lr_scheduler: str = "cosine"
    weight_decay: float = 0.0
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: tuple[str, ...] = DEFAULT_LORA_TARGETS
    gradient_checkpointing: bool = False
    target_logits_only: bool = True
    """Project to the vocabulary only where a label is trained. Targets are a small share of the
    tokens (about 13% on SQuAD), and the vocabulary projection and its loss are a fifth of the
    model's work per token, so this saves that work at every other position. The loss is the
    same; False computes every position's logits, as models do by default."""
    max_length: int = 1024
    """Examples longer than this many tokens are cut (the labels with them)."""
    seed: int = 0
    save_steps: int = 50
    """Checkpoint every this many optimizer steps (a killed run resumes from the last one)."""
    logging_steps: int = 10
    keep_checkpoints: bool = False
    mix: MixConfig = field(default_factory=MixConfig)
    validation_fraction: float = 0.2
    """Share of the training questions held out of training; the hybrid's and the
    SelfReranker's fusion weights are fitted on them after training (0: keep the defaults)."""
    fit_fusion: bool = True
    """Fit the fusion weights on the held-out questions (needs ``validation_fraction > 0``)."""
    fusion_generation_tokens: tuple[int, ...] = GENERATION_TOKENS
    """The generation-score lengths the fusion fit chooses from (``HybridConfig.generation_tokens``:
    fewer tokens score each candidate faster, see benchmarks/RESULTS.md)."""

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "fusion_generation_tokens",
            checked_generation_tokens(
                self.fusion_generation_tokens, "TrainingConfig.fusion_generation_tokens"
            ),
        )
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(
                "TrainingConfig.validation_fraction must be in [0, 1), got "
                f"{self.validation_fraction}"
            )
        if self.epochs <= 0:
            raise ValueError(f"TrainingConfig.epochs must be > 0, got {self.epochs}")
        for name in (
            "batch_size",
            "gradient_accumulation_steps",
            "lora_rank",
            "max_length",
            "save_steps",
            "logging_steps",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainingConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.learning_rate is not None and self.learning_rate <= 0:
            raise ValueError(f"TrainingConfig.learning_rate must be > 0, got {self.learning_rate}")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(
                f"TrainingConfig.lora_dropout must be in [0, 1), got {self.lora_dropout}"
            )

    @property
    def lr(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return 1e-4 if self.full_finetune else 3e-4

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["mix"] = self.mix.to_dict()
        data["lora_target_modules"] = list(self.lora_target_modules)
        data["fusion_generation_tokens"] = list(self.fusion_generation_tokens)
        data["learning_rate"] = self.lr
        return data
