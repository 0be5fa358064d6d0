"""Tests of ``selfretrieval_integrations.base_models.devices``."""

from __future__ import annotations

import pytest
import torch

from selfretrieval_integrations.base_models import load_base_model, resolve_device_and_dtype
from selfretrieval_integrations.errors import ModelLoadError


def test_default_device_and_dtype_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device_and_dtype() == (torch.device("cpu"), torch.float32)
    assert resolve_device_and_dtype("auto", "auto") == (torch.device("cpu"), torch.float32)


def test_default_device_and_dtype_with_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert resolve_device_and_dtype() == (torch.device("cuda"), torch.bfloat16)
    assert resolve_device_and_dtype(dtype="fp32") == (torch.device("cuda"), torch.float32)
    assert resolve_device_and_dtype(device="cpu") == (torch.device("cpu"), torch.float32)


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        ("float32", torch.float32),
        ("fp16", torch.float16),
        ("BF16", torch.bfloat16),
        ("torch.bfloat16", torch.bfloat16),
        ("half", torch.float16),
        (torch.float16, torch.float16),
    ],
)
def test_explicit_dtype_wins(dtype, expected):
    assert resolve_device_and_dtype("cpu", dtype) == (torch.device("cpu"), expected)


@pytest.mark.parametrize("dtype", ["float33", "int8", torch.int64, 32])
def test_bad_dtype_is_a_clear_error(dtype):
    with pytest.raises(ModelLoadError, match="dtype"):
        resolve_device_and_dtype("cpu", dtype)


def test_unknown_dtype_lists_allowed_names():
    with pytest.raises(ModelLoadError, match=r"Unknown dtype 'float33'.*bfloat16"):
        load_base_model("tiny", dtype="float33")


def test_bad_device_is_a_clear_error():
    with pytest.raises(ModelLoadError, match="Unknown device 'banana'"):
        resolve_device_and_dtype("banana")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_requested_without_cuda():
    with pytest.raises(ModelLoadError, match="CUDA is not available"):
        resolve_device_and_dtype("cuda")
