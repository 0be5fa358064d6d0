"""Tiny randomly initialised Llama-style models for tests, with tokenizers trained in memory.

Built in well under a second, deterministic, offline: ``"tiny"`` has a GPT-2 style byte-level BPE
tokenizer, ``"tiny-sp"`` a Llama/Mistral style SentencePiece-like BPE tokenizer with byte
fallback. Both tokenizers are trained on one fixed text, so their ids (and fingerprints) never
change.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from tokenizers import Tokenizer
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["TINY", "TINY_SP", "build_tiny_model", "build_tiny_tokenizer"]

TINY = "tiny"
TINY_SP = "tiny-sp"

_TINY_SEED = 0
_TINY_CONTEXT_LENGTH = 4096
_TINY_BPE_VOCAB_SIZE = 2000

# A fixed, varied English text the tiny tokenizers are trained on. Changing it changes the
# tiny tokenizers (and so their fingerprints): keep it as it is.
_TINY_TRAINING_TEXT = """\
Self-retrieval turns one small language model into a complete retrieval system. The model \
reads every passage of a corpus during indexing, learns to reproduce the passages it has seen, \
and at query time it writes the title and the opening words of the passages that answer the \
question. A prefix tree over the corpus keeps the generation on text that really exists.

The quick brown fox jumps over the lazy dog. A wizard's job is to vex chumps quickly in fog. \
Pack my box with five dozen liquor jugs! How vexingly quick daft zebras jump? Sphinx of black \
quartz, judge my vow.

On Monday, 3 March 2025, the library opened at 9:30 and closed at 17:45; 1,284 visitors \
borrowed 2,917 books, 63 maps and 12 records. The average loan lasted 14.5 days, which is 8% \
shorter than last year. Call +1 (555) 010-2030 or write to info@example.org for details.

Rivers carry water from the mountains to the sea. Along the way they shape valleys, feed \
forests and farms, and give cities a reason to grow on their banks. When the snow melts in \
spring, the water rises quickly; in late summer the same river may be shallow enough to cross \
on foot.

def retrieve(query: str, k: int = 4) -> list[str]:
    \"\"\"Return the k best passages for the query.\"\"\"
    scores = {doc_id: score(query, text) for doc_id, text in corpus.items()}
    return sorted(scores, key=scores.get, reverse=True)[:k]

Question: Who wrote the first computer program? Answer: Ada Lovelace described an algorithm \
for Charles Babbage's Analytical Engine in 1843. Question: What is the boiling point of water \
at sea level? Answer: 100 degrees Celsius, or 212 degrees Fahrenheit.

"Don't panic," she said, and then, after a pause: "It's only a test - nothing more." He \
wasn't sure; they'd heard that before. Isn't it strange how we're always told it'll be fine?

Photosynthesis converts light energy into chemical energy. Plants, algae and some bacteria \
absorb carbon dioxide and water and, using sunlight, produce glucose and oxygen. Chlorophyll \
gives leaves their green colour and captures most of the light they need.

The committee reviewed the proposal, discussed the budget, and agreed to postpone the final \
decision until the next meeting. Members asked for clearer estimates, a realistic timeline, \
and a short summary of the risks that could delay construction.

Title: Mount Everest | Text: Mount Everest is Earth's highest mountain above sea level, \
located in the Himalayas on the border between Nepal and China. Title: Pacific Ocean | Text: \
The Pacific is the largest and deepest of the oceans, covering about a third of the surface.

Café, naïve, résumé, façade, jalapeño, Ångström, Zürich, São Paulo and Kraków are words and \
names with accents; tokenizers must treat them with care.

In 1969 the crew of Apollo 11 landed on the Moon. Neil Armstrong stepped onto the surface first, \
followed by Buzz Aldrin, while Michael Collins orbited above in the command module. Millions of \
people watched the grainy television pictures as they happened.

To bake simple bread, mix 500 grams of flour, 10 grams of salt, 7 grams of dried yeast and 320 \
millilitres of warm water. Knead the dough for ten minutes, let it rise for an hour, shape it, \
and bake it at 220 degrees for about thirty-five minutes until the crust sounds hollow.

Volcanoes form where molten rock, called magma, reaches the surface. Some erupt explosively and \
throw ash high into the atmosphere; others release slow rivers of lava. Iceland, Japan, \
Indonesia and Hawaii are famous for their volcanic landscapes and hot springs.

SELECT title, year FROM films WHERE rating >= 8.5 ORDER BY year DESC LIMIT 10; -- find classics
{"id": "doc-042", "title": "Jupiter", "text": "Jupiter is the largest planet.", "score": 0.97}
<html><body><h1>Welcome</h1><p>Read the <a href="/docs/index.html">documentation</a>.</p>

The heart pumps blood through arteries, capillaries and veins. Red blood cells carry oxygen \
from the lungs to every tissue, while white blood cells defend the body against infection. \
Regular exercise strengthens the heart and lowers blood pressure.

Economists study how households, firms and governments allocate scarce resources. Inflation \
measures the rising prices of goods and services over time; central banks raise interest rates \
when inflation is high and lower them when the economy needs encouragement.

Chess is played on a board of sixty-four squares. Each player begins with sixteen pieces: one \
king, one queen, two rooks, two bishops, two knights and eight pawns. The aim is to checkmate \
the opposing king, leaving it attacked with no legal move to escape.

Shakespeare wrote comedies, histories and tragedies, among them Hamlet, Macbeth, Othello and \
King Lear. His plays were performed at the Globe Theatre in London, and many of his phrases, \
such as "break the ice" and "wild-goose chase", are still used every day.
"""


def _tiny_training_lines() -> list[str]:
    return [line for line in _TINY_TRAINING_TEXT.splitlines() if line.strip()]


def _build_byte_level_tokenizer() -> Tokenizer:
    """GPT-2 style byte-level BPE: ``<|endoftext|>`` (id 0) and ``<|bos|>`` (id 1)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_TINY_BPE_VOCAB_SIZE,
        special_tokens=["<|endoftext|>", "<|bos|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_tiny_training_lines(), trainer=trainer)
    return tokenizer


def _build_sentencepiece_style_tokenizer() -> Tokenizer:
    """Llama/Mistral style BPE: Metaspace, byte fallback, ``<unk>``=0, ``<s>``=1, ``</s>``=2.

    Bytes ``<0x00>``..``<0xFF>`` take ids 3..258 as in Llama, so any text is encodable.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    specials = ["<unk>", "<s>", "</s>"]
    trained = Tokenizer(models.BPE(unk_token="<unk>"))
    # Train on whitespace-split words so that no merge crosses a word boundary (as SentencePiece).
    trained.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.BpeTrainer(
        vocab_size=_TINY_BPE_VOCAB_SIZE - 256, special_tokens=specials, show_progress=False
    )
    trained.train_from_iterator(_tiny_training_lines(), trainer=trainer)
    state = json.loads(trained.to_str())["model"]

    vocab: dict[str, int] = {token: index for index, token in enumerate(specials)}
    for byte in range(256):
        vocab[f"<0x{byte:02X}>"] = len(vocab)
    for token, _ in sorted(state["vocab"].items(), key=lambda item: item[1]):
        if token not in vocab:
            vocab[token] = len(vocab)
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in state["merges"]]

    tokenizer = Tokenizer(
        models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True)
    )
    # As transformers' LlamaConverter (legacy=False): one "▁" before the first word only.
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement="▁", prepend_scheme="first", split=False
    )
    tokenizer.decoder = decoders.Sequence(
        [
            decoders.Replace("▁", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(content=" ", left=1, right=0),
        ]
    )
    tokenizer.add_special_tokens(
        [AddedToken(token, special=True, normalized=False) for token in specials]
    )
    return tokenizer


def build_tiny_tokenizer(name: str) -> PreTrainedTokenizerBase:
    """The transformers tokenizer of ``name`` (:data:`TINY` or :data:`TINY_SP`), trained afresh."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    if name == TINY:
        backend = _build_byte_level_tokenizer()
        return PreTrainedTokenizerFast(
            tokenizer_object=backend,
            bos_token="<|bos|>",
            eos_token="<|endoftext|>",
            pad_token="<|endoftext|>",
            add_bos_token=False,
            add_eos_token=False,
            model_max_length=_TINY_CONTEXT_LENGTH,
            name_or_path=TINY,
        )
    backend = _build_sentencepiece_style_tokenizer()
    bos_id = backend.token_to_id("<s>")
    backend.post_processor = processors.TemplateProcessing(
        single="<s>:0 $A:0",
        pair="<s>:0 $A:0 <s>:1 $B:1",
        special_tokens=[("<s>", bos_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        add_bos_token=True,
        add_eos_token=False,
        model_max_length=_TINY_CONTEXT_LENGTH,
        name_or_path=TINY_SP,
    )


def build_tiny_model(tokenizer: PreTrainedTokenizerBase, name: str) -> PreTrainedModel:
    """A tiny random Llama, seeded through a forked RNG so the global RNG state is untouched.

    ``tokenizer`` must have its pad token already: its id is written into the config.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        max_position_embeddings=_TINY_CONTEXT_LENGTH,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_TINY_SEED)
        model = LlamaForCausalLM(config)
    model.config._name_or_path = name
    return model
