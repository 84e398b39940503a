"""`load_tokenizer`: texts → :class:`Encoding` with the model's own fast tokenizer.

The tokenizer.json of many models carries padding and truncation settings of
its own (the bundled MiniLM pads every input to 128 and truncates at 128); they
are replaced: no padding, truncation at min(requested, sentence-transformers'
``max_seq_length``, the model's position limit).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
from tokenizers import Tokenizer as FastTokenizer

from vecsift.encoding import Encoding
from vecsift.errors import EncodingError, ModelLoadError
from vecsift.models.config import ModelFiles, load_model_files
from vecsift.models.resolve import DEFAULT_MODEL


class Tokenizer:
    """A model's tokenizer with vecsift's truncation rule; safe to share between threads."""

    def __init__(self, tokenizer_json: str, position_limit: int, default_max_tokens: int) -> None:
        self._json = tokenizer_json
        self.position_limit = position_limit
        self.default_max_tokens = min(default_max_tokens, position_limit)
        self._by_limit: dict[tuple[int, str], FastTokenizer] = {}
        self._lock = threading.Lock()
        self._configured(self.default_max_tokens)  # fail at load time, not at first use

    def _configured(self, limit: int, direction: str = "right") -> FastTokenizer:
        with self._lock:
            tokenizer = self._by_limit.get((limit, direction))
            if tokenizer is None:
                tokenizer = FastTokenizer.from_str(self._json)
                tokenizer.no_padding()
                tokenizer.enable_truncation(max_length=limit, direction=direction)
                self._by_limit[(limit, direction)] = tokenizer
            return tokenizer

    def limit_for(self, max_tokens: int | None) -> int:
        """The truncation length used for a request of ``max_tokens`` (None: the model default)."""
        if max_tokens is None:
            return self.default_max_tokens
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 2:
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
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise EncodingError(f"text {index} is a {type(text).__name__}, not a str")
        tokenizer = self._configured(self.limit_for(max_tokens), direction)
        return [
            Encoding(
                np.asarray(e.ids, dtype=np.int64),
                np.asarray(e.attention_mask, dtype=np.int64),
                np.asarray(e.type_ids, dtype=np.int64),
            )
            # one text: the sequential call (encode_batch hands even one text to its thread pool)
            for e in ([tokenizer.encode(texts[0])] if len(texts) == 1 else tokenizer.encode_batch(texts))
        ]


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


def tokenizer_for(files: ModelFiles) -> Tokenizer:
    """The tokenizer of an already resolved model directory."""
    try:
        tokenizer_json = files.tokenizer_path.read_text(encoding="utf-8")
        position_limit = int(files.config.get("max_position_embeddings", 512))
        default = files.max_seq_length or position_limit
        return Tokenizer(tokenizer_json, position_limit, default)
    except (OSError, UnicodeDecodeError) as err:
        raise ModelLoadError(f"cannot read {files.tokenizer_path}: {err}") from err
    except Exception as err:  # tokenizers raises a bare Exception on a malformed file
        raise ModelLoadError(f"{files.tokenizer_path} is not a valid tokenizer.json: {err}") from err


def load_tokenizer(model: str = DEFAULT_MODEL) -> Tokenizer:
    """The tokenizer of ``model`` (same resolution as :func:`vecsift.load_backend`)."""
    return tokenizer_for(load_model_files(model))
