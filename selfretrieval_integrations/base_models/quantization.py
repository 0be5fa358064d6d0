"""Dynamic int8 quantization of a model's linear layers, for CPU inference.

A 135M-parameter model on a small CPU spends its time in the linear layers' matrix products;
torch's dynamic quantization stores their weights as int8 and quantizes activations on the fly,
which runs those products on the CPU's integer units. Embeddings and norms stay in float. The
speed and the retrieval quality with and without it are measured by ``benchmarks/latency.py``.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

#: The quantization modes ``SelfRetrievalModel.from_pretrained(quantize=...)`` accepts.
QUANTIZATIONS = ("int8",)


def checked_quantize(quantize: str | None) -> str | None:
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be None or one of {list(QUANTIZATIONS)}, got {quantize!r}")
    return quantize


def quantize_int8(model: Any, *, keep_float: tuple[str, ...] = ("lm_head",)) -> Any:
    """``model`` with its ``nn.Linear`` layers replaced by dynamically quantized int8 ones (CPU
    only; inference only: the quantized layers have no gradients).

    ``keep_float``: module names left in float. The output head stays float by default: every
    score the library reads is a log-probability over the whole vocabulary, and quantizing the
    head's activations per tensor cost SmolLM2-135M a third of its Hits@1 on the bundled corpus
    (``benchmarks/RESULTS.md``); the transformer body is most of the work anyway.
    """
    device = next(model.parameters()).device
    if device.type != "cpu":
        raise ValueError(f"int8 dynamic quantization runs on the CPU, but the model is on {device}")
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        # torch marks its quantized tensor functions deprecated in favour of torchao, which has
        # no CPU int8 dynamic path for this use yet; the API still works and is tested here.
        warnings.simplefilter("ignore", (DeprecationWarning, UserWarning, FutureWarning))
        qconfig = torch.ao.quantization.default_dynamic_qconfig
        layers = {
            name: qconfig
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and name.split(".")[-1] not in keep_float
        }
        return quantize_dynamic(model, layers, dtype=torch.qint8).eval()
