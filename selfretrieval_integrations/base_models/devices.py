"""Which device and dtype a base model is loaded on: explicit choices checked, defaults picked."""

from __future__ import annotations

import torch

from selfretrieval_integrations.errors import ModelLoadError

__all__ = ["resolve_device_and_dtype"]

_DTYPE_NAMES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
}


def _parse_dtype(dtype: str | torch.dtype) -> torch.dtype | None:
    """Turn a dtype argument into a floating-point ``torch.dtype`` (``None`` for "auto")."""
    if isinstance(dtype, torch.dtype):
        if not dtype.is_floating_point:
            raise ModelLoadError(
                f"dtype={dtype} is not a floating-point dtype; use one of "
                "torch.float32, torch.bfloat16 or torch.float16."
            )
        return dtype
    if not isinstance(dtype, str):
        raise ModelLoadError(
            f"dtype must be a string or a torch.dtype, got {type(dtype).__name__} ({dtype!r})."
        )
    key = dtype.strip().lower().removeprefix("torch.")
    if key == "auto":
        return None
    if key not in _DTYPE_NAMES:
        allowed = ", ".join(sorted(_DTYPE_NAMES))
        raise ModelLoadError(
            f"Unknown dtype {dtype!r}. Allowed names: {allowed}, 'auto' (or a torch.dtype)."
        )
    return _DTYPE_NAMES[key]


def _parse_device(device: str | torch.device) -> torch.device | None:
    """Turn a device argument into a ``torch.device`` (``None`` for "auto"), checking it exists."""
    if isinstance(device, str):
        if device.strip().lower() == "auto":
            return None
        try:
            parsed = torch.device(device.strip())
        except RuntimeError as exc:
            raise ModelLoadError(
                f"Unknown device {device!r}: {exc}. Use 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto'."
            ) from exc
    elif isinstance(device, torch.device):
        parsed = device
    else:
        raise ModelLoadError(
            f"device must be a string or a torch.device, got {type(device).__name__} ({device!r})."
        )
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelLoadError(
                f"device={device!r} was requested but CUDA is not available here "
                f"(torch {torch.__version__}). Use device='cpu', or leave device unset."
            )
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ModelLoadError(
                f"device={device!r} was requested but only {torch.cuda.device_count()} CUDA "
                "device(s) are visible."
            )
    elif parsed.type == "mps" and not (
        getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    ):
        raise ModelLoadError(f"device={device!r} was requested but MPS is not available here.")
    return parsed


def resolve_device_and_dtype(
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
) -> tuple[torch.device, torch.dtype]:
    """Pick the device and dtype a base model is loaded with.

    By default: CUDA with bfloat16 when CUDA is available (float16 on GPUs without bfloat16
    support), otherwise CPU with float32. An explicit ``device`` or ``dtype`` always wins; the
    string ``"auto"`` means the default.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``, ``"auto"``, a ``torch.device``,
            or ``None``.
        dtype: ``"float32"``/``"fp32"``, ``"bfloat16"``/``"bf16"``, ``"float16"``/``"fp16"``,
            ``"auto"``, a floating-point ``torch.dtype``, or ``None``.

    Raises:
        ModelLoadError: unknown dtype name or device, or a device that is not available.
    """
    parsed_dtype = None if dtype is None else _parse_dtype(dtype)
    parsed_device = None if device is None else _parse_device(device)
    if parsed_device is None:
        parsed_device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if parsed_dtype is None:
        if parsed_device.type == "cuda":
            parsed_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            parsed_dtype = torch.float32
    return parsed_device, parsed_dtype
