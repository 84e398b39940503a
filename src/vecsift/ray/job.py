"""`vecsift embed --engine ray`: JSONL/Parquet in, Parquet shards of ``id``/``embedding`` out, streamed by Ray Data.

The shards are written into a hidden ``.NAME.*.partial`` folder beside the output and renamed into place only
when the whole dataset is written, so a failed or interrupted job never leaves a folder that looks complete.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import ray.exceptions
from ray.data import DataContext

from vecsift import errors
from vecsift.errors import BackendError, UsageError, VecsiftError
from vecsift.models.config import load_model_files
from vecsift.ray.dataset import ActorPlan, embed_dataset
from vecsift.ray.embed_batches import embedding_type
from vecsift.ray.reading import READ_CPUS, ROW_SCHEMA, read_records

#: how a vecsift error raised inside a Ray task appears in the text of the error Ray hands the driver
#: (Ray Data re-raises user errors as UserCodeException without the original as its cause)
_REMOTE_ERROR = re.compile(r"^vecsift\.errors\.(\w+): (.+)$", re.MULTILINE)


@dataclass(frozen=True)
class EmbedJob:
    """What to read, how to embed it, where to write."""

    inputs: list[str]
    output: Path
    model: str
    field: str = "text"
    id_field: str | None = None
    kind: str = "cpu"
    driver: str | None = None
    precision: str = "fp32"
    batch_size: int = 32
    max_tokens: int | None = None
    progress: bool = True


@dataclass(frozen=True)
class JobReport:
    rows: int
    dim: int
    files: list[Path]
    seconds: float


def check_output_directory(output: Path) -> None:
    """The output must be a new or empty directory in an existing folder: shards are never mixed with old ones."""
    if not output.parent.is_dir():
        raise UsageError(f"output folder {output.parent} does not exist")
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise UsageError(f"output {output} exists and is not an empty directory; the Ray engine writes a directory "
                         "of Parquet shards (-o NEW_DIR)")


def run_embed_job(job: EmbedJob, files: list[Path], plan: ActorPlan) -> JobReport:
    """Runs ``job`` over ``files`` (:func:`input_files` of its inputs) on the connected cluster; the output
    appears complete or not at all."""
    check_output_directory(job.output)
    context = DataContext.get_current()
    context.enable_progress_bars = job.progress
    logging.getLogger("ray.data").setLevel(logging.INFO if job.progress else logging.WARNING)
    started = time.perf_counter()
    partial = Path(tempfile.mkdtemp(prefix=f".{job.output.name}.", suffix=".partial", dir=job.output.parent))
    umask = os.umask(0)
    os.umask(umask)
    partial.chmod(0o777 & ~umask)  # mkdtemp makes 0700: the finished folder should not be private
    try:
        records = read_records(files, job.field, job.id_field)
        embedded = embed_dataset(records, job.model, kind=job.kind, driver=job.driver, precision=job.precision,
                                 batch_size=job.batch_size, max_tokens=job.max_tokens, plan=plan)
        try:
            embedded.select_columns(["id", "embedding"]).write_parquet(
                str(partial), ray_remote_args={"num_cpus": READ_CPUS})
        except ray.exceptions.RayError as err:
            raise remote_error(err) from None
        shards = sorted(partial.glob("*.parquet"))
        rows = sum(pq.ParquetFile(shard).metadata.num_rows for shard in shards)
        if not shards:  # an empty dataset: one empty shard, so readers get the schema and zero rows
            shards = [_write_empty_shard(partial, job)]
        dim = pq.read_schema(shards[0]).field("embedding").type.list_size
        if job.output.exists():
            job.output.rmdir()  # checked empty above
        partial.rename(job.output)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return JobReport(rows, dim, [job.output / shard.name for shard in shards], time.perf_counter() - started)


def remote_error(err: Exception) -> VecsiftError:
    """The vecsift error a Ray task raised (its type and message), else a :class:`BackendError` saying where."""
    text = str(err)
    found = _REMOTE_ERROR.findall(text)
    if found:
        kind, message = found[-1]
        error_class = getattr(errors, kind, None)
        if isinstance(error_class, type) and issubclass(error_class, VecsiftError):
            return error_class(message)
        return VecsiftError(message)
    lines = [line for line in text.splitlines() if line.strip()]
    return BackendError(f"the Ray job failed: {lines[-1] if lines else type(err).__name__}")


def _write_empty_shard(folder: Path, job: EmbedJob) -> Path:
    dim = int(load_model_files(job.model).require("hidden_size"))
    schema = pa.schema([ROW_SCHEMA.field("id"), pa.field("embedding", embedding_type(dim))])
    path = folder / "empty-0.parquet"
    pq.write_table(schema.empty_table(), path)
    return path
