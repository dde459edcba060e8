"""The token estimate used wherever a model's own counter is unavailable.

One estimate for the gateway (a provider that reports no usage, a tokenizer that is
not available offline) and for OpenAI-compatible servers without a tokenizer endpoint,
so a text is never counted two ways. Never tiktoken: it is the wrong tokenizer for most
models, and it downloads its tables at first use.
"""

from __future__ import annotations

import re

_WORDISH = re.compile(r"\w+|[^\w\s]")


def estimate_tokens(text: str) -> int:
    """A conservative token count: the words and punctuation marks of ``text``, or
    about 3.2 characters per token (English under BPE), whichever is larger. Counting
    words and punctuation alone underestimates subword tokenizers on long words,
    numbers and code."""
    return max(len(_WORDISH.findall(text)), len(text) * 10 // 32)
