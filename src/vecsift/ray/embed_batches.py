"""`EmbedBatches`: the callable class a Ray Data ``map_batches`` runs, one vecsift engine per actor."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from vecsift.embedder import Embedder
from vecsift.errors import UsageError
from vecsift.models.resolve import DEFAULT_MODEL

#: the batch shapes ``map_batches`` hands over: ``batch_format="pyarrow"`` or ``"numpy"``/``"default"``
Batch = pa.Table | dict[str, np.ndarray]


def embedding_array(vectors: np.ndarray) -> pa.FixedSizeListArray:
    """``(n, dim)`` float32 as Arrow's ``fixed_size_list<float32>[dim]``: a column any Arrow or Parquet reader
    reads without Ray's tensor extension."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])


def embedding_type(dim: int) -> pa.DataType:
    return pa.list_(pa.float32(), dim)


class EmbedBatches:
    """Loads the model once per actor; each call embeds the batch's ``text_column`` into ``embedding_column``.

    Every input column is carried through (the ids with them). A row whose text is missing or not a string
    fails the job with that row's ``id_column`` value in the message, so a bad row in a large corpus can be
    found.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        text_column: str = "text",
        embedding_column: str = "embedding",
        id_column: str | None = "id",
        **engine: Any,
    ) -> None:
        """``engine``: :class:`vecsift.Embedder`'s options (``kind``, ``driver``, ``precision``, ``batch_size``,
        ``workers``, ``max_tokens``)."""
        self.embedder = Embedder(model, **engine)
        self.text_column = text_column
        self.embedding_column = embedding_column
        self.id_column = id_column

    def __call__(self, batch: Batch) -> Batch:
        if isinstance(batch, pa.Table):
            vectors = self.embedder.embed(self._texts(batch.column_names, batch))
            return batch.append_column(self.embedding_column, embedding_array(vectors))
        if isinstance(batch, dict):
            vectors = self.embedder.embed(self._texts(list(batch), batch))
            return {**batch, self.embedding_column: vectors}
        raise UsageError(f"EmbedBatches takes pyarrow or numpy batches (batch_format='pyarrow' or 'numpy'), "
                         f"got {type(batch).__name__}")

    def _texts(self, columns: list[str], batch: Any) -> list[str]:
        """The batch's texts, each checked to be a string (a null or a number names its row)."""
        if self.text_column not in columns:
            raise UsageError(f"the dataset has no text column {self.text_column!r} (columns: {', '.join(columns)})")
        values = batch[self.text_column]
        texts = values.to_pylist() if isinstance(values, pa.ChunkedArray) else list(values)
        for row, text in enumerate(texts):
            if not isinstance(text, str):
                raise UsageError(f"{self._row_name(columns, batch, row)}: {self.text_column!r} is "
                                 f"{'missing' if text is None else type(text).__name__ + ', not a string'}")
        return texts

    def _row_name(self, columns: list[str], batch: Any, row: int) -> str:
        if self.id_column is not None and self.id_column in columns:
            ids = batch[self.id_column]
            value = ids[row].as_py() if isinstance(ids, pa.ChunkedArray) else ids[row]
            return f"row with {self.id_column} {value!r}"
        return f"row {row} of a batch (no {self.id_column!r} column to name it)"
