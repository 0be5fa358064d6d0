"""A LlamaIndex query engine over the bundled corpus, offline on the CPU.

    SelfRetriever (generate passages) -> SelfReranker (self-assessment) -> LLM (compact answer)

One SmolLM2 in memory serves the retriever, the reranker and the LLM. Without ``--artifact`` the
model indexes the 32 bundled SQuAD paragraphs zero-shot (no training); train one first
(``selfretrieval quickstart``) and pass ``--artifact selfretrieval-quickstart`` for better results.

    python examples/llamaindex_query_engine.py "Who founded the Mongol Empire?"
    python examples/llamaindex_query_engine.py --base-model tiny     # a random model, smoke test
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import torch
from llama_index.core.base.llms.types import CompletionResponse, LLMMetadata
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.llms.custom import CustomLLM
from llama_index.core.query_engine import RetrieverQueryEngine

from selfretrieval_integrations import SelfRetrievalModel, load_corpus
from selfretrieval_integrations.corpus import quickstart_dir
from selfretrieval_integrations.llama_index import SelfReranker, SelfRetriever


class LocalLLM(CustomLLM):
    """A LlamaIndex LLM over a ``SelfRetrievalModel``'s own causal LM: greedy, no downloads."""

    context_window: int = 2048
    num_output: int = 48
    _srm: SelfRetrievalModel = PrivateAttr()

    def __init__(self, model: SelfRetrievalModel, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._srm = model

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(
            context_window=self.context_window,
            num_output=self.num_output,
            model_name=str(self._srm.base_model),
        )

    def _generate(self, prompt: str) -> str:
        tokenizer, lm = self._srm.tokenizer, self._srm.model
        if getattr(tokenizer, "chat_template", None):  # SmolLM2-Instruct is a chat model
            prompt = tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
        device = next(lm.parameters()).device
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids.to(device)
        with self._srm.lock, torch.inference_mode():  # the retriever shares these weights
            out = lm.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=self.num_output,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
            )
        return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=self._generate(prompt))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
        text = self._generate(prompt)
        yield CompletionResponse(text=text, delta=text)


def build_query_engine(
    model: SelfRetrievalModel, *, k: int = 4, top_n: int = 2, max_new_tokens: int = 48
) -> RetrieverQueryEngine:
    """Retriever, reranker and LLM over one loaded model, as a LlamaIndex query engine."""
    return RetrieverQueryEngine.from_args(
        SelfRetriever(model, similarity_top_k=k),
        llm=LocalLLM(model, num_output=max_new_tokens),
        node_postprocessors=[SelfReranker(model, top_n=top_n)],
        response_mode="compact",
    )


def load_model(base_model: str, artifact: str | None) -> SelfRetrievalModel:
    if artifact:
        return SelfRetrievalModel.from_pretrained(artifact, device="cpu")
    return SelfRetrievalModel.from_base(base_model, load_corpus(quickstart_dir()), device="cpu")


def main(argv: Sequence[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("question", nargs="?", default="Who founded the Mongol Empire?")
    parser.add_argument("--base-model", default="smollm2-135m", help="smollm2-135m or tiny")
    parser.add_argument("--artifact", help="a trained artifact folder instead of zero-shot")
    parser.add_argument("-k", type=int, default=4, help="passages retrieved")
    parser.add_argument("--top-n", type=int, default=2, help="passages kept by the reranker")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    args = parser.parse_args(argv)

    model = load_model(args.base_model, args.artifact)
    engine = build_query_engine(
        model, k=args.k, top_n=args.top_n, max_new_tokens=args.max_new_tokens
    )
    response = engine.query(args.question)
    print(f"Question: {args.question}")
    for source in response.source_nodes:
        title = source.node.metadata["title"]
        print(f"  source {source.node.node_id} ({title}, reranked score {source.score:.4f})")
    print(f"Answer: {response.response}")
    return str(response.response)


if __name__ == "__main__":
    main()
