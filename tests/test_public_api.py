"""The names ``import vecsift`` promises: adding or removing one is a decision, made here on purpose."""

from __future__ import annotations

import vecsift

PUBLIC = [
    "RING_SIZE",
    "EmbedBackend",
    "Embedder",
    "EmbeddingStream",
    "Encoding",
    "GenericBackend",
    "Tokenizer",
    "detect_backends",
    "embed_distributed",
    "embed_stream",
    "load_backend",
    "load_tokenizer",
]


def test_all_is_pinned_and_every_name_exists():
    assert sorted(vecsift.__all__) == sorted(PUBLIC)
    for name in PUBLIC:
        assert getattr(vecsift, name) is not None
    assert vecsift.RING_SIZE == 4  # the seed's ring bound


def test_version_is_the_package_version():
    from importlib.metadata import version

    assert vecsift.__version__ == version("vecsift")
