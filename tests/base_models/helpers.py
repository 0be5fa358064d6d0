"""What several base-model test modules share."""

from __future__ import annotations

UNICODE_TEXTS = [
    "plain ASCII text, with punctuation: (a) [b] {c}; x=1 & y<2 > z!",
    "中文检索系统和日本語のテキスト、한국어 문장",
    "emoji 🤖👍🏽 family 👨\u200d👩\u200d👧 flags 🇫🇷🇯🇵",
    "עברית שלום עולם and العربية مرحبا بالعالم mixed",
    "combining marks: e\u0301 a\u0308 n\u0303 Z\u0351\u0320a\u0362l\u0327go",
    "Crème brûlée, Ångström, ß, İstanbul, ǅ, ﬁ ligature, ①②③",
    "tabs\tand\nnewlines\r\n  double  spaces   and trailing ",
    "math ∑ ∫ √ ≠ ≤ ∞ and control-ish \u200b zero width \ufeff BOM",
    "rare CJK 𠀀𪚥 and supplementary 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 and private \ue000",
]


def state(model):
    """A copy of ``model``'s weights, to compare two models tensor by tensor."""
    return {key: value.detach().clone() for key, value in model.state_dict().items()}
