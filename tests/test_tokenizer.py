"""load_tokenizer: the file's padding is gone, truncation follows the model, bad input is named."""

from __future__ import annotations

import pytest

from vecsift import Encoding
from vecsift.errors import EncodingError


def test_no_padding_and_model_truncation(tokenizer):
    short, long = tokenizer.encode(["hi", "word " * 2000])
    assert isinstance(short, Encoding)
    assert len(short) == 3 and short.input_ids.tolist()[0] == 101 and short.input_ids.tolist()[-1] == 102
    assert len(long) == 256 and long.input_ids[-1] == 102  # sentence_bert_config's max_seq_length
    assert tokenizer.default_max_tokens == 256 and tokenizer.position_limit == 512


def test_requested_truncation_is_capped_by_the_model(tokenizer):
    assert len(tokenizer.encode(["word " * 2000], max_tokens=16)[0]) == 16
    assert len(tokenizer.encode(["word " * 2000], max_tokens=10_000)[0]) == 256
    assert tokenizer.limit_for(None) == 256 and tokenizer.limit_for(64) == 64


def test_matches_the_reference_tokenizer(tokenizer, bundled_dir):
    from transformers import AutoTokenizer

    reference = AutoTokenizer.from_pretrained(bundled_dir)
    texts = ["Ünïcödé café 日本語 🚀", "def f(x):\n    return x ** 2", "", "   "]
    for text, encoding in zip(texts, tokenizer.encode(texts), strict=True):
        assert encoding.input_ids.tolist() == reference(text, truncation=True, max_length=256)["input_ids"]


@pytest.mark.parametrize("max_tokens", [0, 1, -5, 2.5, True, "10"])
def test_bad_max_tokens(tokenizer, max_tokens):
    with pytest.raises(EncodingError, match="max_tokens must be an integer"):
        tokenizer.encode(["x"], max_tokens=max_tokens)


def test_bad_texts(tokenizer):
    with pytest.raises(EncodingError, match="single str"):
        tokenizer.encode("not a list")
    with pytest.raises(EncodingError, match="text 1 is a bytes, not a str"):
        tokenizer.encode(["fine", b"bytes"])


def test_empty_list(tokenizer):
    assert tokenizer.encode([]) == []
