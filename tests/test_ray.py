"""vecsift on Ray Data, on a real local cluster: the same vectors as ``Embedder.embed``, every id once, bad rows
named, nothing half-written, nothing left running."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from processes import gone, ray_processes
from texts import varied_texts
from vecsift import Embedder
from vecsift.cli.main import main
from vecsift.errors import UsageError
from vecsift.ray import EmbedBatches, embed_dataset, plan_actors
from vecsift.ray.cluster import ray_cluster
from vecsift.ray.reading import input_files

pytestmark = pytest.mark.usefixtures("ray_cluster_session")


def corpus(count: int) -> list[str]:
    """Real texts: the varied test corpus (long, empty, unicode) topped up with one to five stdlib lines."""
    texts = varied_texts(120)
    lines = [line for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:40]
             for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for start in range(0, len(lines), 7):
        if len(texts) == count:
            break
        texts.append("\n".join(lines[start : start + 1 + start % 5]))
    return texts


@pytest.fixture(scope="module")
def reference():
    return Embedder("all-MiniLM-L6-v2")


def read_output(folder: Path) -> pa.Table:
    assert folder.is_dir()
    assert all(p.suffix == ".parquet" for p in folder.iterdir()), sorted(folder.iterdir())
    return pq.read_table(folder)


def current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def no_partial_folders(parent: Path) -> bool:
    return not [p for p in parent.iterdir() if p.name.endswith(".partial")]


@pytest.mark.slow
def test_cli_vectors_equal_embedder_for_jsonl_and_parquet(tmp_path, reference, capsys):
    texts = corpus(2500)
    half = len(texts) // 2
    with open(tmp_path / "part1.jsonl", "w", encoding="utf-8") as handle:
        for i, text in enumerate(texts[:half]):
            handle.write(json.dumps({"doc": f"doc-{i}", "text": text}) + "\n")
    (tmp_path / "more").mkdir()
    pq.write_table(pa.table({"doc": [f"doc-{i}" for i in range(half, len(texts))], "text": texts[half:]}),
                   tmp_path / "more" / "part2.parquet", row_group_size=300)

    out = tmp_path / "vectors"
    argv = ["embed", "--engine", "ray", str(tmp_path / "part1.jsonl"), str(tmp_path / "more"), "-o", str(out),
            "--id-field", "doc", "--no-progress"]
    assert main(argv) == 0
    assert f"embedded {len(texts)} texts" in capsys.readouterr().err

    table = read_output(out)
    assert out.stat().st_mode & 0o777 == 0o777 & ~current_umask()  # not mkdtemp's private 0700
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 384)
    assert table.schema.field("id").type == pa.string()
    ids = table.column("id").to_pylist()
    assert sorted(ids) == sorted(f"doc-{i}" for i in range(len(texts)))  # every id exactly once
    got = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    expected = reference.embed(texts)
    order = [int(i.removeprefix("doc-")) for i in ids]
    np.testing.assert_allclose(got, expected[order], atol=1e-5)
    assert no_partial_folders(tmp_path)


def test_default_ids_name_file_and_line_or_row(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "one"}\n\n{"text": "two"}\n')
    pq.write_table(pa.table({"text": ["three", "four"]}), tmp_path / "b.parquet")
    assert main(["embed", "--engine", "ray", str(tmp_path / "*.*"), "-o", str(tmp_path / "out"), "--no-progress"]) == 0
    ids = sorted(read_output(tmp_path / "out").column("id").to_pylist())
    assert ids == sorted([f"{tmp_path}/a.jsonl:1", f"{tmp_path}/a.jsonl:3", f"{tmp_path}/b.parquet:1",
                          f"{tmp_path}/b.parquet:2"])


def test_empty_dataset_writes_one_empty_shard_with_the_schema(tmp_path, capsys):
    (tmp_path / "empty.jsonl").write_text("")
    out = tmp_path / "out"
    out.mkdir()  # an existing empty directory is fine
    assert main(["embed", "--engine", "ray", str(tmp_path / "empty.jsonl"), "-o", str(out), "--no-progress"]) == 0
    table = read_output(out)
    assert table.num_rows == 0
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 384)
    assert "embedded 0 texts" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (lambda d: (d / "in.jsonl").write_text('{"doc": "a", "text": "ok"}\n{"doc": "bad-7", "body": "x"}\n'),
         r"in.jsonl:2 \(id 'bad-7'\): field 'text' is missing"),
        (lambda d: (d / "in.jsonl").write_text('{"doc": "a", "text": "ok"}\n{"doc": "bad-8", "text": 5}\n'),
         r"in.jsonl:2 \(id 'bad-8'\): field 'text' is a int, not a string"),
        (lambda d: (d / "in.jsonl").write_bytes(b'{"doc": "a", "text": "ok"}\n{"doc": "b", "text": "\xff"}\n'),
         r"in.jsonl:2: not valid UTF-8"),
        (lambda d: pq.write_table(pa.table({"doc": ["a", "bad-9"], "text": ["ok", None]}), d / "in.parquet"),
         r"in.parquet: row with id 'bad-9' has no 'text' \(null\)"),
        (lambda d: pq.write_table(pa.table({"doc": ["a"], "text": [1]}), d / "in.parquet"),
         r"in.parquet: column 'text' holds int64, not strings"),
        (lambda d: pq.write_table(pa.table({"text": ["a"]}), d / "in.parquet"),
         r"in.parquet: no column 'doc' \(--id-field\)"),
    ],
)
def test_a_bad_row_fails_the_job_naming_it_and_writes_nothing(tmp_path, capsys, write, message):
    source = tmp_path / "src"
    source.mkdir()
    write(source)
    out = tmp_path / "out"
    argv = ["embed", "--engine", "ray", str(source), "-o", str(out), "--id-field", "doc", "--no-progress"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert "Traceback" not in err.split("vecsift: error:")[-1]
    assert not out.exists()
    assert no_partial_folders(tmp_path)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["embed", "--engine", "ray", "{tmp}/in.jsonl"], "pass -o OUTPUT_DIR"),
        (["embed", "--engine", "ray", "-o", "{tmp}/out"], "name JSONL/Parquet files"),
        (["embed", "--engine", "ray", "{tmp}/in.jsonl", "-o", "{tmp}/out", "--jsonl", "{tmp}/in.jsonl"],
         "--jsonl does not apply to --engine ray"),
        (["embed", "--engine", "ray", "{tmp}/in.jsonl", "-o", "{tmp}/out", "--chunk-lines", "5"],
         "--chunk-lines does not apply"),
        (["embed", "{tmp}/in.jsonl", "--address", "auto"], "--address applies to --engine ray only"),
        (["embed", "--engine", "ray", "{tmp}/in.txt", "-o", "{tmp}/out"], "cannot tell the format of"),
        (["embed", "--engine", "ray", "{tmp}/nothing*.jsonl", "-o", "{tmp}/out"], "matches no files"),
        (["embed", "--engine", "ray", "{tmp}/in.jsonl", "-o", "{tmp}/full"], "exists and is not an empty directory"),
        (["embed", "--engine", "ray", "{tmp}/in.jsonl", "-o", "{tmp}/no/such/out"], "output folder .* does not exist"),
    ],
)
def test_option_errors_exit_1_before_any_work(tmp_path, capsys, argv, message):
    (tmp_path / "in.jsonl").write_text('{"text": "x"}\n')
    (tmp_path / "in.txt").write_text("x\n")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "old.parquet").write_text("")
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 1
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


def test_input_files_expand_directories_and_globs_once(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    for name in ("d/a.jsonl", "d/sub/b.parquet", "d/notes.txt"):
        (tmp_path / name).write_text("")
    found = input_files([str(tmp_path / "d"), str(tmp_path / "d" / "*.jsonl")])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["d/a.jsonl", "d/sub/b.parquet"]


def test_library_keeps_every_column_and_accepts_numpy_batches(ray_cluster_session):
    ray = ray_cluster_session
    rows = [{"id": i, "text": f"text number {i}", "source": "s"} for i in range(40)]
    dataset = ray.data.from_items(rows)
    embedded = embed_dataset(dataset, "all-MiniLM-L6-v2").take_all()
    assert sorted(r["id"] for r in embedded) == list(range(40))
    assert all(r["source"] == "s" and len(r["embedding"]) == 384 for r in embedded)

    as_numpy = dataset.map_batches(EmbedBatches, fn_constructor_kwargs={"embedding_column": "vec"},
                                   batch_format="numpy", **plan_actors(rows_per_call=16).map_batches_options())
    vectors = {r["id"]: np.asarray(r["vec"]) for r in as_numpy.take_all()}
    expected = Embedder("all-MiniLM-L6-v2").embed([r["text"] for r in rows])
    np.testing.assert_allclose(np.stack([vectors[i] for i in range(40)]), expected, atol=1e-5)


@pytest.mark.parametrize(("rows", "message"), [
    ([{"id": "good", "text": "x"}, {"id": "bad-3", "text": None}], r"row with id 'bad-3': 'text' is missing"),
    ([{"id": "bad-4", "text": 4}], r"row with id 'bad-4': 'text' is int, not a string"),
    ([{"id": "bad-5", "body": "x"}], r"the dataset has no text column 'text' \(columns: id, body\)"),
])
def test_library_names_the_bad_row(ray_cluster_session, rows, message):
    dataset = ray_cluster_session.data.from_items(rows, override_num_blocks=1)
    with pytest.raises(Exception, match=message):
        embed_dataset(dataset, "all-MiniLM-L6-v2").take_all()


def test_plan_leaves_cpus_for_readers_and_checks_counts():
    plan = plan_actors("cpu")
    assert (plan.actors, plan.cpus_per_actor, plan.workers) == (1, 1.0, 2)  # 2 CPUs: one left for reads/writes
    assert plan_actors("cpu", actors=2).cpus_per_actor == 0.5
    with pytest.raises(UsageError, match="no GPUs"):
        plan_actors("cuda")
    with pytest.raises(UsageError, match="actors must be a positive integer"):
        plan_actors("cpu", actors=0)


def test_unreachable_address_is_refused_before_ray_waits_on_it(monkeypatch):
    import socket

    import ray

    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as in a fresh process (the session cluster runs)
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # closed again: nothing listens there
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):  # refused by vecsift's own check, before Ray
        with pytest.raises(UsageError, match=f"cannot reach the Ray cluster at '{address}': Connection refused"), \
                ray_cluster(address):
            pass
    with pytest.raises(UsageError, match="is not 'local', 'auto'"), ray_cluster("not-an-address"):
        pass


@pytest.mark.slow
def test_ctrl_c_stops_the_job_shuts_its_cluster_down_and_writes_nothing(tmp_path):
    with open(tmp_path / "big.jsonl", "w") as handle:
        for i in range(40_000):
            handle.write(json.dumps({"text": f"def function_{i}(value): return value * {i}  # a line of code"}) + "\n")
    before = ray_processes()
    out = tmp_path / "out"
    argv = ["embed", "--engine", "ray", str(tmp_path / "big.jsonl"), "-o", str(out), "--no-progress"]
    process = subprocess.Popen([sys.executable, "-m", "vecsift", *argv], stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 120
        while not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]:  # the job is running
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        time.sleep(3)  # actors are embedding
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=90)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert "vecsift: interrupted; no output was written" in err
    assert "Traceback" not in err
    assert not out.exists() and no_partial_folders(tmp_path)
    assert gone(ray_processes() - before)
