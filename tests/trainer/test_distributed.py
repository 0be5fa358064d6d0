"""Data-parallel training with ``accelerate launch``: the same code path, two CPU processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from selfretrieval_integrations import SelfRetrievalModel
from selfretrieval_integrations.artifact import read_manifest

SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    import transformers.trainer as hf_trainer
    from selfretrieval_integrations import Document

    # Rank 1 lags as training ends, so that the main process reaches its clean-up first: it
    # must wait, not remove the checkpoint folder that rank 1 is about to list.
    listing = getattr(hf_trainer, "sort_checkpoints", None)
    if listing is not None and os.environ.get("RANK") == "1":
        def slow_listing(output_dir, *args, **kwargs):
            time.sleep(2)
            if not os.path.isdir(output_dir):
                raise RuntimeError("the checkpoint folder was removed while rank 1 still used it")
            return listing(output_dir, *args, **kwargs)
        hf_trainer.sort_checkpoints = slow_listing
    from selfretrieval_trainer.train import TrainingConfig, train
    docs = [Document(id=f"d{i}", title=f"T{i}", text=f"Sentence {i} about topic {i}.")
            for i in range(8)]
    train("tiny", docs, sys.argv[1], config=TrainingConfig(epochs=1, batch_size=2),
          show_progress=False)
    """
)


def test_two_process_training(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(SCRIPT)
    out = tmp_path / "artifact"
    # accelerate's "--cpu" launcher expects MPI for several processes; its torch.distributed
    # launcher ("--multi_gpu") also runs on CPUs, with the gloo backend.
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        str(script),
        str(out),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    manifest = read_manifest(out)
    assert manifest["training"]["world_size"] == 2
    assert len(SelfRetrievalModel.from_pretrained(out).retrieve("topic", k=3)) == 3
