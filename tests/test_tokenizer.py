"""load_tokenizer: the file's padding is gone, truncation follows the model, bad input is named."""

from __future__ import annotations

import sysconfig
from pathlib import Path

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


LONG_TEXTS = {
    "source": "".join(p.read_text(encoding="utf-8") for p in sorted(Path(sysconfig.get_paths()["stdlib"])
                                                                    .glob("*.py"))[:40]),
    "long words first": ("x" * 150 + " ") * 2000 + "word " * 5000,  # 150-char words are one [UNK] each
    "no whitespace": "a," * 200_000,
    "blank runs": ("  \n\t " * 3000 + "word ") * 300,
}


@pytest.mark.parametrize("direction", ["right", "left"])
@pytest.mark.parametrize("name", list(LONG_TEXTS))
def test_long_texts_are_cut_before_tokenizing_and_give_the_full_texts_tokens(tokenizer, monkeypatch, name,
                                                                               direction):
    """A huge text costs what its kept tokens cost: it is cut at whitespace before tokenizing; where a cut
    would keep too few tokens it is undone. Either way the ids equal tokenizing the whole text."""
    import vecsift.tokenizer as module

    text = LONG_TEXTS[name]
    cuts = []
    shortened = module._shortened
    monkeypatch.setattr(module, "_shortened", lambda *a: cuts.append(len(cut := shortened(*a))) or cut)
    for limit in (16, 256):
        got = tokenizer.encode([text, "short"], max_tokens=limit, direction=direction)[0]
        whole = tokenizer._configured(limit, direction).encode(text)
        assert got.input_ids.tolist() == whole.ids and len(got) == limit
    if name in ("source", "blank runs"):
        assert cuts and max(cuts) < len(text) // 10  # really cut


def test_plain_ascii_path_gives_the_full_tokenizers_ids(tokenizer):
    """Printable ASCII skips BERT's normalizer (lowercased here instead); anything else goes through it. Either
    way the ids are the full tokenizer's, in input order, whatever the mix in one call."""
    from texts import varied_texts

    texts = [*varied_texts(300, seed=3), "HELLO World CamelCase", "tab\tnew\nline\rcr", "form\x0cfeed",
             "vertical\x0btab", "escape \x1b[31mred\x1b[0m", "del\x7f", "nul\x00byte", "café", "ÀÉÎ upper"]
    for direction in ("right", "left"):
        full = tokenizer._configured(64, direction)
        got = tokenizer.encode(texts, max_tokens=64, direction=direction)
        want = full.encode_batch(texts)
        assert [e.input_ids.tolist() for e in got] == [w.ids for w in want]
        assert [e.token_type_ids.tolist() for e in got] == [w.type_ids for w in want]
        assert all(e.attention_mask.all() and not e.input_ids.flags.writeable for e in got)


def test_encodings_say_whether_truncation_cut_them(tokenizer):
    exact, over, short = tokenizer.encode(["word " * 254, "word " * 255, "short"])  # 254 words + 2 specials = 256
    assert (len(exact), exact.truncated) == (256, False)
    assert (len(over), over.truncated) == (256, True)
    assert short.truncated is False
    huge = tokenizer.encode(["word " * 100_000], max_tokens=16)[0]  # cut before tokenizing
    assert len(huge) == 16 and huge.truncated
    assert Encoding.from_ids([101, 102]).truncated is False
