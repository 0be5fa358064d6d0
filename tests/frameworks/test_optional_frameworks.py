"""Frameworks are optional: the core never imports them; a missing one names its extra."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import importlib, pkgutil, sys
    import selfretrieval_integrations as package

    # 1. Every core module and exported name, and the trainer, load without any framework.
    for info in pkgutil.iter_modules(package.__path__):
        if info.name not in ("langchain", "llama_index"):
            importlib.import_module(f"selfretrieval_integrations.{info.name}")
    for name in package.__all__:
        getattr(package, name)
    importlib.import_module("selfretrieval_trainer.train")
    importlib.import_module("selfretrieval_trainer.updates")
    frameworks = ("langchain", "langchain_core", "langsmith", "llama_index")
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in frameworks)
    assert not loaded, f"the core imported {loaded}"

    # 2. With the frameworks made unimportable, the adapters name the extra to install.
    class Uninstalled:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in frameworks:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Uninstalled())
    for module, extra in (("langchain", "langchain"), ("llama_index", "llamaindex")):
        try:
            importlib.import_module(f"selfretrieval_integrations.{module}")
        except ImportError as error:
            hint = f'pip install "selfretrieval-integrations[{extra}]"'
            assert hint in str(error), str(error)
        else:
            raise AssertionError(f"selfretrieval_integrations.{module} imported without it")
    print("checked")
    """
)


def test_core_never_imports_a_framework_and_adapters_give_an_install_hint():
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "checked"
