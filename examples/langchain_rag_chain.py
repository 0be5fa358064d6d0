"""A LangChain RAG chain (LCEL) over the bundled corpus, offline on the CPU.

    {docs: retriever, question} | assign(answer = format | prompt | LLM | parser)

The LLM is the very SmolLM2 that retrieves: one set of weights in memory does indexing,
retrieval and the answer. Without ``--artifact`` the model indexes the 32 bundled SQuAD paragraphs
zero-shot (no training), which takes seconds; train one first (``selfretrieval quickstart``) and
pass ``--artifact selfretrieval-quickstart`` for better retrieval.

    python examples/langchain_rag_chain.py "Who founded the Mongol Empire?"
    python examples/langchain_rag_chain.py --base-model tiny     # a random model, for a smoke test
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import torch
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.documents import Document
from langchain_core.language_models.llms import LLM
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import PromptTemplate
from langchain_core.runnables import (
    Runnable,
    RunnableLambda,
    RunnableParallel,
    RunnablePassthrough,
)
from pydantic import ConfigDict

from selfretrieval_integrations import SelfRetrievalModel, load_corpus
from selfretrieval_integrations.corpus import quickstart_dir
from selfretrieval_integrations.langchain import SelfRetriever

PROMPT = PromptTemplate.from_template(
    "Answer the question in a few words, using only the context.\n\n"
    "Context:\n{context}\n\nQuestion: {question}\nAnswer:"
)


class LocalLLM(LLM):
    """A LangChain LLM over a ``SelfRetrievalModel``'s own causal LM: greedy, no downloads."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model: SelfRetrievalModel
    max_new_tokens: int = 48

    @property
    def _llm_type(self) -> str:
        return "selfretrieval-local"

    def _call(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> str:
        tokenizer, lm = self.model.tokenizer, self.model.model
        if getattr(tokenizer, "chat_template", None):  # SmolLM2-Instruct is a chat model
            prompt = tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
        device = next(lm.parameters()).device
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids.to(device)
        with self.model.lock, torch.inference_mode():  # the retriever shares these weights
            out = lm.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
            )
        text = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
        for marker in stop or []:
            text = text.split(marker)[0]
        return text.strip()


def format_docs(docs: Sequence[Document]) -> str:
    return "\n\n".join(f"[{d.metadata['title']}] {d.page_content}" for d in docs)


def build_chain(model: SelfRetrievalModel, *, k: int = 2, max_new_tokens: int = 48) -> Runnable:
    """The LCEL chain ``question -> {"docs", "question", "answer"}`` over one loaded model.

    Retrieval runs once; its documents go both to the prompt and to the output (the sources).
    """
    retriever = SelfRetriever(model=model, k=k)
    llm = LocalLLM(model=model, max_new_tokens=max_new_tokens)
    answer = (
        RunnableLambda(lambda x: {"context": format_docs(x["docs"]), "question": x["question"]})
        | PROMPT
        | llm
        | StrOutputParser()
    )
    return RunnableParallel(docs=retriever, question=RunnablePassthrough()).assign(answer=answer)


def load_model(base_model: str, artifact: str | None) -> SelfRetrievalModel:
    if artifact:
        return SelfRetrievalModel.from_pretrained(artifact, device="cpu")
    return SelfRetrievalModel.from_base(base_model, load_corpus(quickstart_dir()), device="cpu")


def main(argv: Sequence[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("question", nargs="?", default="Who founded the Mongol Empire?")
    parser.add_argument("--base-model", default="smollm2-135m", help="smollm2-135m or tiny")
    parser.add_argument("--artifact", help="a trained artifact folder instead of zero-shot")
    parser.add_argument("-k", type=int, default=2, help="passages given to the LLM")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    args = parser.parse_args(argv)

    model = load_model(args.base_model, args.artifact)
    chain = build_chain(model, k=args.k, max_new_tokens=args.max_new_tokens)
    result = chain.invoke(args.question)
    print(f"Question: {args.question}")
    for doc in result["docs"]:
        print(f"  retrieved {doc.id} ({doc.metadata['title']}, score {doc.metadata['score']:.3f})")
    print(f"Answer: {result['answer']}")
    return str(result["answer"])


if __name__ == "__main__":
    main()
