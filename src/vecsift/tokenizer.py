"""`load_tokenizer`: texts → :class:`Encoding` with the model's own fast tokenizer.

The tokenizer.json of many models carries padding and truncation settings of
its own (the bundled MiniLM pads every input to 128 and truncates at 128); they
are replaced: no padding, truncation at min(requested, sentence-transformers'
``max_seq_length``, the model's position limit).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Sequence
from itertools import accumulate, chain

import numpy as np
from tokenizers import Tokenizer as FastTokenizer

from vecsift.encoding import Encoding
from vecsift.errors import EncodingError, ModelLoadError, is_int
from vecsift.models.arch_config import arch_config
from vecsift.models.config import ModelFiles, load_model_files
from vecsift.models.resolve import DEFAULT_MODEL


class Tokenizer:
    """A model's tokenizer with vecsift's truncation rule; safe to share between threads."""

    def __init__(self, tokenizer_json: str, position_limit: int, default_max_tokens: int) -> None:
        self._json = tokenizer_json
        self.position_limit = position_limit
        self.default_max_tokens = min(default_max_tokens, position_limit)
        self._by_limit: dict[tuple[int, str, bool], FastTokenizer] = {}
        self._lock = threading.Lock()
        probe = self._configured(self.default_max_tokens).encode("probe")  # fail at load time, not at first use
        #: single texts get token type 0 throughout (BERT's post-processor): no type ids to copy per text
        self._zero_types = not any(probe.type_ids)
        #: for BERT's normalizer: whether it lowercases (None: another normalizer, no plain-text path)
        self._plain_lowercase = _bert_normalizer_lowercases(tokenizer_json)
        #: read-only ones and zeros every Encoding's mask and token types view (no arrays made per call)
        self._ones = np.ones(position_limit, dtype=np.int64)
        self._zeros = np.zeros(position_limit, dtype=np.int64)
        self._ones.setflags(write=False)
        self._zeros.setflags(write=False)

    def _configured(self, limit: int, direction: str = "right", plain: bool = False) -> FastTokenizer:
        """The tokenizer truncating at ``limit`` from ``direction``; ``plain``: without its normalizer, for
        texts :func:`_is_plain` accepts (see :meth:`_encode_batch`)."""
        tokenizer = self._by_limit.get((limit, direction, plain))  # lock-free once made (a request's hot path)
        if tokenizer is not None:
            return tokenizer
        with self._lock:
            tokenizer = self._by_limit.get((limit, direction, plain))
            if tokenizer is None:
                tokenizer = FastTokenizer.from_str(self._json)
                tokenizer.no_padding()
                tokenizer.enable_truncation(max_length=limit, direction=direction)
                if plain:
                    tokenizer.normalizer = None
                self._by_limit[(limit, direction, plain)] = tokenizer
            return tokenizer

    def _encode_batch(self, texts: list[str], limit: int, direction: str) -> list:
        """The tokenizer's encodings of ``texts`` (no offsets). BERT's normalizer is a third of the tokenizing
        time, and on printable ASCII (what source code mostly is) it only lowercases (no accents to strip, no
        CJK to space, no control characters to drop; tab and newlines split words either way), so such texts
        are lowercased here and tokenized without it: the same ids, faster."""
        full = self._configured(limit, direction)
        plain = [i for i, text in enumerate(texts) if _is_plain(text)] if self._plain_lowercase is not None else []
        if not plain:
            return [full.encode(texts[0])] if len(texts) == 1 else full.encode_batch_fast(texts)
        lower = self._plain_lowercase
        plain_texts = [texts[i].lower() if lower else texts[i] for i in plain]
        fast = self._configured(limit, direction, plain=True)
        out = fast.encode_batch_fast(plain_texts) if len(plain_texts) > 1 else [fast.encode(plain_texts[0])]
        if len(plain) == len(texts):
            return out
        merged: list = [None] * len(texts)
        for index, encoding in zip(plain, out, strict=True):
            merged[index] = encoding
        rest = [i for i, encoding in enumerate(merged) if encoding is None]
        for index, encoding in zip(rest, full.encode_batch_fast([texts[i] for i in rest]), strict=True):
            merged[index] = encoding
        return merged

    def limit_for(self, max_tokens: int | None) -> int:
        """The truncation length used for a request of ``max_tokens`` (None: the model default)."""
        if max_tokens is None:
            return self.default_max_tokens
        if not is_int(max_tokens) or max_tokens < 2:
            raise EncodingError(f"max_tokens must be an integer ≥ 2 (room for the special tokens), got {max_tokens!r}")
        return min(max_tokens, self.default_max_tokens)

    def encode(self, texts: Sequence[str], max_tokens: int | None = None, direction: str = "right") -> list[Encoding]:
        """Tokenize ``texts`` (in parallel, in Rust); longer inputs are truncated, never rejected.

        ``direction="left"`` cuts the start of an over-long text instead of its end.
        """
        if direction not in ("right", "left"):
            raise EncodingError(f"truncation direction must be 'right' or 'left', got {direction!r}")
        if isinstance(texts, str):
            raise EncodingError("encode takes a sequence of texts, got a single str; wrap it in a list")
        texts = list(texts)
        if not set(map(type, texts)) <= {str}:  # one C pass; the loop only to name the culprit
            for index, text in enumerate(texts):
                if not isinstance(text, str):
                    raise EncodingError(f"text {index} is a {type(text).__name__}, not a str")
        limit = self.limit_for(max_tokens)
        bound = limit * _CHARS_PER_TOKEN_BOUND
        long = [i for i, size in enumerate(map(len, texts)) if size > bound]
        shortened = texts.copy()
        for index in long:
            shortened[index] = _shortened(texts[index], bound, direction)
        cut = {i for i in long if shortened[i] is not texts[i]}
        raw = self._encode_batch(shortened, limit, direction)
        for index in cut:
            if len(raw[index]) < limit:  # the cut left fewer tokens than the limit: the whole text after all
                raw[index] = self._encode_batch([texts[index]], limit, direction)[0]
        id_lists = [e.ids for e in raw]
        lengths = list(map(len, id_lists))
        # at the limit: cut texts always lost tokens; others did when the tokenizer kept an overflow
        truncated = [n == limit and (index in cut or bool(raw[index].overflowing)) for index, n in enumerate(lengths)]
        return self._encodings(raw, id_lists, lengths, truncated)

    def _encodings(self, raw: list, id_lists: list[list[int]], lengths: list[int],
                   truncated: list[bool]) -> list[Encoding]:
        """The tokenizer's output as Encodings without a NumPy call per text: every text's ids land in one
        flat array and each Encoding views its slice (mask and token types view shared read-only arrays of
        ones and zeros: no padding, single texts). Tokenizer output needs no validation."""
        ids = np.fromiter(chain.from_iterable(id_lists), dtype=np.int64, count=sum(lengths))
        ids.setflags(write=False)
        ends = list(accumulate(lengths))
        if self._zero_types:
            type_rows = [self._zeros[:n] for n in lengths]
        else:
            flat_types = np.fromiter(chain.from_iterable(e.type_ids for e in raw), dtype=np.int64, count=len(ids))
            flat_types.setflags(write=False)
            type_rows = [flat_types[end - n : end] for end, n in zip(ends, lengths, strict=True)]
        ones = self._ones
        return [Encoding.trusted(ids[end - n : end], ones[:n], type_row, cut)
                for end, n, type_row, cut in zip(ends, lengths, type_rows, truncated, strict=True)]

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """How many tokens each text has before truncation (special tokens included)."""
        tokenizer = self._configured(_UNTRUNCATED)
        return [len(e.ids) for e in tokenizer.encode_batch(list(texts))]

    def pieces(self, texts: Sequence[str], max_tokens: int | None = None) -> list[list[dict]]:
        """Each text's tokens as TEI's ``/tokenize`` lists them: id, text, special, start, stop (characters)."""
        tokenizer = self._configured(self.limit_for(max_tokens))
        out = []
        for text, encoding in zip(texts, tokenizer.encode_batch(list(texts)), strict=True):
            out.append([{"id": i, "text": text[a:b] if not special else token, "special": bool(special),
                         "start": a if not special else None, "stop": b if not special else None}
                        for i, token, (a, b), special in zip(encoding.ids, encoding.tokens, encoding.offsets,
                                                             encoding.special_tokens_mask, strict=True)])
        return out


_UNTRUNCATED = 1 << 30  # a truncation length no text reaches: counts the whole text
#: texts longer than this many characters per token of the limit are cut (at whitespace) before tokenizing,
#: so a 100 MB line costs what its first tokens cost; a cut that leaves fewer tokens than the limit is
#: undone (the whole text is tokenized), so the result is always the full text's, truncated
_CHARS_PER_TOKEN_BOUND = 32
_WHITESPACE = re.compile(r"\s")
_UP_TO_LAST_WHITESPACE = re.compile(r".*\s", re.S)


#: printable ASCII, tab and line breaks: a text with any other character goes through the full normalizer
_PLAIN_BYTES = bytes([0x09, 0x0A, 0x0D, *range(0x20, 0x7F)])


def _is_plain(text: str) -> bool:
    """Whether ``text`` is printable ASCII, tabs and line breaks only (deleting those bytes leaves nothing:
    a C loop, 4× faster than a regular expression on source code)."""
    return text.isascii() and not text.encode("ascii").translate(None, _PLAIN_BYTES)


def _bert_normalizer_lowercases(tokenizer_json: str) -> bool | None:
    """Whether the tokenizer's normalizer is BERT's alone, and if so whether it lowercases (None otherwise)."""
    normalizer = json.loads(tokenizer_json).get("normalizer") or {}
    if normalizer.get("type") != "BertNormalizer":
        return None
    return bool(normalizer.get("lowercase", True))


def _shortened(text: str, bound: int, direction: str) -> str:
    """The ``bound`` characters of ``text`` that truncation keeps (its start, or its end for ``left``), cut at
    whitespace so no word is split; ``text`` itself when there is no whitespace to cut at."""
    if direction == "right":
        found = _UP_TO_LAST_WHITESPACE.match(text, 0, bound)
        return text[: found.end() - 1] if found and found.end() > 1 else text
    found = _WHITESPACE.search(text, len(text) - bound)
    return text[found.start():] if found else text


def tokenizer_for(files: ModelFiles) -> Tokenizer:
    """The tokenizer of an already resolved model directory."""
    position_limit = arch_config(files).max_positions
    try:
        tokenizer_json = files.tokenizer_path.read_text(encoding="utf-8")
        return Tokenizer(tokenizer_json, position_limit, files.max_seq_length or position_limit)
    except (OSError, UnicodeDecodeError) as err:
        raise ModelLoadError(f"cannot read {files.tokenizer_path}: {err}") from err
    except Exception as err:  # tokenizers raises a bare Exception on a malformed file
        raise ModelLoadError(f"{files.tokenizer_path} is not a valid tokenizer.json: {err}") from err


def load_tokenizer(model: str = DEFAULT_MODEL) -> Tokenizer:
    """The tokenizer of ``model`` (same resolution as :func:`vecsift.load_backend`)."""
    return tokenizer_for(load_model_files(model))
