"""Reading a corpus into a Ray Dataset of ``(id, text)`` rows: JSONL and Parquet files, a directory, a glob.

Files are read inside Ray tasks, one file per task, in slices of :data:`ROWS_PER_SLICE` rows, so a file larger
than memory streams. Ids are the ``id_field`` when given, else ``FILE:LINE`` (JSONL) or ``FILE:ROW`` (Parquet,
1-based), the same ids ``vecsift embed --jsonl`` gives; a bad row fails the read with its id in the message.
"""

from __future__ import annotations

import glob
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import ray
from ray.data import Dataset

from vecsift.errors import UsageError
from vecsift.sources import read_jsonl

FORMATS = (".jsonl", ".parquet")
ROWS_PER_SLICE = 1024
#: logical CPUs a read task reserves: reading is light next to embedding, and a whole CPU could starve it
READ_CPUS = 0.25
ROW_SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string())])


def input_files(inputs: list[str]) -> list[Path]:
    """Every ``.jsonl``/``.parquet`` file named by ``inputs`` (files, directories searched recursively, globs),
    sorted and without repeats; a missing input or a file of another format is a :class:`UsageError`."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            matches = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in FORMATS)
            if not matches:
                raise UsageError(f"input directory {item} holds no .jsonl or .parquet files")
        elif path.is_file():
            matches = [path]
        elif glob.has_magic(item):
            matches = sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
            if not matches:
                raise UsageError(f"input pattern {item!r} matches no files")
        else:
            raise UsageError(f"input path {item} does not exist")
        for match in matches:
            if match.suffix.lower() not in FORMATS:
                raise UsageError(f"cannot tell the format of {match} from its suffix; the Ray engine reads "
                                 f"{' and '.join(FORMATS)} files")
        found.extend(matches)
    return sorted({p.resolve(): p for p in found}.values(), key=str)


def read_records(files: list[Path], field: str = "text", id_field: str | None = None) -> Dataset:
    """A Dataset of ``id``/``text`` string rows from ``files`` (see :func:`input_files`)."""
    items = [{"path": str(p.resolve()), "label": str(p)} for p in files]
    return ray.data.from_items(items, override_num_blocks=max(1, len(items))).map_batches(
        _ReadFile, fn_kwargs={"field": field, "id_field": id_field}, batch_size=1, batch_format="pyarrow",
        num_cpus=READ_CPUS)


def _ReadFile(batch: pa.Table, field: str, id_field: str | None) -> Iterator[pa.Table]:
    """The map_batches generator: one input file in (read by its absolute path, named in ids and errors as the
    user named it), slices of that file's rows out."""
    for path, label in zip(batch.column("path").to_pylist(), batch.column("label").to_pylist(), strict=True):
        reader = _parquet_rows if path.lower().endswith(".parquet") else _jsonl_rows
        yield from reader(path, label, field, id_field)


def _jsonl_rows(path: str, label: str, field: str, id_field: str | None) -> Iterator[pa.Table]:
    ids: list[str] = []
    texts: list[str] = []
    with open(path, "rb") as handle:
        for record in read_jsonl(handle, field, id_field, label):
            ids.append(record.id)
            texts.append(record.text)
            if len(ids) == ROWS_PER_SLICE:
                yield pa.table([ids, texts], schema=ROW_SCHEMA)
                ids, texts = [], []
    if ids:
        yield pa.table([ids, texts], schema=ROW_SCHEMA)


def _parquet_rows(path: str, label: str, field: str, id_field: str | None) -> Iterator[pa.Table]:
    parquet = pq.ParquetFile(path)
    names = parquet.schema_arrow.names
    for column, option in ((field, "--field"), (id_field, "--id-field")):
        if column is not None and column not in names:
            raise UsageError(f"{label}: no column {column!r} ({option}); columns: {', '.join(names)}")
    text_type = parquet.schema_arrow.field(field).type
    if not (pa.types.is_string(text_type) or pa.types.is_large_string(text_type)):
        raise UsageError(f"{label}: column {field!r} holds {text_type}, not strings")
    first_row = 1
    columns = [field] if id_field is None else [field, id_field]
    for piece in parquet.iter_batches(batch_size=ROWS_PER_SLICE, columns=columns):
        texts = piece.column(field).to_pylist()
        if id_field is None:
            ids = [f"{label}:{first_row + i}" for i in range(len(texts))]
        else:
            ids = [_row_id(value, label, first_row + i) for i, value in enumerate(piece.column(id_field).to_pylist())]
        for row_id, text in zip(ids, texts, strict=True):
            if text is None:
                raise UsageError(f"{label}: row with id {row_id!r} has no {field!r} (null)")
        first_row += len(texts)
        yield pa.table([ids, texts], schema=ROW_SCHEMA)


def _row_id(value: object, path: str, row: int) -> str:
    if value is None:
        raise UsageError(f"{path}: row {row} has no id (null in the --id-field column)")
    return str(value)
