"""The vecsift command line: inputs, outputs, summaries and errors."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest

from vecsift.cli.main import main
from vecsift.cli.output import atomic_file


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "repo"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "a.py").write_text("def add(a, b):\n    return a + b\n")
    (root / "pkg" / "b.md").write_text("\n".join(f"line {i} of the docs" for i in range(95)))
    (root / "blob.bin").write_bytes(b"\x00\x01\x02binary")
    (root / "latin1.txt").write_bytes("caf\xe9 ol\xe9".encode("latin-1") * 10)
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("[core]")
    return root


def test_embed_directory_to_npy(tree, tmp_path, capsys):
    out = tmp_path / "vectors.npy"
    assert main(["embed", str(tree), "-o", str(out), "--no-progress"]) == 0
    vectors = np.load(out)
    ids = [json.loads(line) for line in (tmp_path / "vectors.ids.jsonl").read_text().splitlines()]
    assert vectors.shape == (len(ids), 384)
    names = [row["id"] for row in ids]
    assert names == [f"{tree}/pkg/a.py", f"{tree}/pkg/b.md:1-40", f"{tree}/pkg/b.md:41-80", f"{tree}/pkg/b.md:81-95"]
    assert [row["index"] for row in ids] == [0, 1, 2, 3]
    assert np.load(out, mmap_mode="r").shape == (4, 384)
    summary = capsys.readouterr().err
    assert "embedded 4 texts" in summary and "CPU (torch)" in summary and "dim 384" in summary


def test_whole_files_and_jsonl_output(tree, tmp_path):
    out = tmp_path / "vectors.jsonl"
    assert main(["embed", str(tree / "pkg"), "--chunk-lines", "0", "-o", str(out), "--no-progress"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"{tree}/pkg/a.py", f"{tree}/pkg/b.md"]
    assert abs(np.linalg.norm(rows[0]["vector"]) - 1.0) < 1e-5


def test_jsonl_input_with_field(tmp_path, capsys):
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": "x1", "body": "retry with backoff"}\n\n{"id": "x2", "body": "parse json"}\n')
    assert main(["embed", "--jsonl", str(source), "--field", "body", "--id-field", "id", "--no-progress"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["id"] for r in rows] == ["x1", "x2"] and len(rows[0]["vector"]) == 384


def test_stdin_lines(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"first line\nsecond line\n")))
    assert main(["embed", "--no-progress"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["id"] for r in rows] == ["<stdin>:1", "<stdin>:2"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["embed", "/no/such/path"], "input path /no/such/path does not exist"),
        (["embed", "--jsonl", "{bad}"], "not valid JSON"),
        (["embed", "--jsonl", "{nofield}"], "field 'text' is missing"),
        (["embed", "{tree}", "-o", "{tmp}/out.txt"], "cannot tell the format"),
        (["embed", "{tree}", "--format", "npy"], "needs an output file"),
        (["embed", "{tree}", "-o", "{tmp}/missing/out.npy"], "output folder .* does not exist"),
        (["embed", "{tree}", "--model", "{tmp}"], "has no model.safetensors|missing file"),
        (["info", "--precision", "fp16"], "precision 'fp16' is not supported by the torch driver on cpu"),
    ],
)
def test_errors_exit_1_with_a_message_and_write_nothing(argv, message, tree, tmp_path, capsys):
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{not json\n')
    (tmp_path / "nofield.jsonl").write_text('{"body": "x"}\n')
    substitutions = {"{tree}": str(tree), "{tmp}": str(tmp_path), "{bad}": str(tmp_path / "bad.jsonl"),
                     "{nofield}": str(tmp_path / "nofield.jsonl")}
    for key, value in substitutions.items():
        argv = [a.replace(key, value) for a in argv]
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(argv) == 1
    import re

    assert re.search(message, capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_stdin_lines_to_npy(tmp_path, monkeypatch, backend, tokenizer):
    texts = [f"line {i} " + "word " * (i % 50) for i in range(300)]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(("\n".join(texts) + "\n").encode())))
    out = tmp_path / "lines.npy"
    assert main(["embed", "--no-progress", "--batch-size", "16", "-o", str(out)]) == 0
    np.testing.assert_allclose(np.load(out), backend.embed_batch(tokenizer.encode(texts)), atol=1e-6)


def test_atomic_file_leaves_nothing_when_interrupted(tmp_path):
    target = tmp_path / "out.npy"
    with pytest.raises(KeyboardInterrupt), atomic_file(target, "wb") as handle:
        handle.write(b"partial")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_info(capsys):
    assert main(["info"]) == 0
    text = capsys.readouterr().out
    for expected in ["ClassicBert", "384", "512", "CPU (torch)", "torch_threads"]:
        assert expected in text
    assert main(["info", "--driver", "numpy"]) == 0
    assert "CPU (numpy)" in (text := capsys.readouterr().out) and "openblas" in text
    assert main(["info", "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["dim"] == 384 and facts["pooling"] == "mean" and facts["truncation"] == 256


def test_console_entry_point_runs(tmp_path):
    done = subprocess.run([sys.executable, "-m", "vecsift", "embed", "--no-progress"], input="hello\n",
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["vector"]) == 384
    bad = subprocess.run([sys.executable, "-m", "vecsift", "embed", "--batch-size", "0"], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "must be ≥ 1" in bad.stderr


def test_ctrl_c_stops_a_streaming_run_and_writes_nothing(tmp_path):
    """A real SIGINT while `vecsift embed` waits on its input: exit 130 within seconds, no output file."""
    import signal
    import time

    out = tmp_path / "vectors.npy"
    process = subprocess.Popen([sys.executable, "-m", "vecsift", "embed", "--no-progress", "--driver", "numpy",
                                "-o", str(out)], stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.stdin.write("".join(f"line {i}\n" for i in range(500)))
    process.stdin.flush()  # stdin stays open: the run is mid-stream when interrupted
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".vectors.npy.*")) and time.monotonic() < deadline:
        time.sleep(0.05)  # the temporary output appears once the model has loaded
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)  # a hang guard, not a timing assertion
    assert process.returncode == 130 and "interrupted" in stderr
    assert list(tmp_path.iterdir()) == []


def test_embed_walks_like_search_and_counts_what_it_skips(tree, tmp_path, capsys):
    (tree / ".gitignore").write_text("ignored.py\n")
    (tree / "ignored.py").write_text("x = 1\n")
    out = tmp_path / "vectors.jsonl"
    assert main(["embed", str(tree), "-o", str(out), "--no-progress", "--verbose"]) == 0
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert not any("ignored.py" in i or "blob.bin" in i or "latin1.txt" in i for i in ids)
    err = capsys.readouterr().err
    assert "2 files skipped" in err
    assert f"skipped {tree}/blob.bin: lock, generated or binary file (*.bin)" in err
    assert f"skipped {tree}/latin1.txt: not valid UTF-8 (line 1)" in err


def test_a_binary_file_named_explicitly_is_skipped_with_a_warning(tree, tmp_path, capsys):
    (tree / "program").write_bytes(b"\x7fELF\x00\x01")
    out = tmp_path / "vectors.jsonl"
    assert main(["embed", str(tree / "program"), str(tree / "pkg" / "a.py"), str(tree), "-o", str(out),
                 "--no-progress"]) == 0  # no -v: a file named on the command line is reported all the same
    assert str(tree / "pkg" / "a.py") in [json.loads(line)["id"] for line in out.read_text().splitlines()]
    err = capsys.readouterr().err
    assert f"skipped {tree / 'program'}: binary (NUL byte)" in err
    assert "blob.bin" not in err  # what a walked directory skips is listed with -v only


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == "vecsift 0.1.0"


@pytest.mark.parametrize(("argv", "message"), [
    (["embed", "{tree}", "--field", "body"], "--field and --id-field apply to --jsonl input only"),
    (["embed", "{tree}", "--id-field", "id"], "--field and --id-field apply to --jsonl input only"),
    (["embed", "--jsonl", "{ids}", "--id-field", "nope"], "in.jsonl:1: no field 'nope' for the record id"),
    (["embed", "{tree}", "-o", "{tmp}/x.npy", "--format", "jsonl"], "--format jsonl would write jsonl into"),
    (["embed", "{tree}", "-o", "{tmp}/missing/x.npy", "--model", "/no/such/model"], "output folder .* does not exist"),
])
def test_options_that_do_not_fit_are_refused_before_any_work(argv, message, tree, tmp_path, capsys):
    (tmp_path / "in.jsonl").write_text('{"id": "a", "text": "x"}\n')
    values = {"tree": str(tree), "tmp": str(tmp_path), "ids": str(tmp_path / "in.jsonl")}
    assert main([a.format(**values) for a in argv]) == 1
    import re

    assert re.search(message, capsys.readouterr().err)


def test_max_tokens_below_two_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["embed", "--max-tokens", "1"])
    assert exit_info.value.code == 2 and "must be ≥ 2" in capsys.readouterr().err


def test_output_files_follow_the_umask_and_keep_an_existing_mode(tree, tmp_path):
    import os
    import stat

    previous = os.umask(0o022)
    try:
        out = tmp_path / "new.jsonl"
        assert main(["embed", str(tree / "pkg" / "a.py"), "-o", str(out), "--no-progress"]) == 0
        assert stat.S_IMODE(out.stat().st_mode) == 0o644
        kept = tmp_path / "kept.npy"
        kept.write_bytes(b"old")
        kept.chmod(0o640)
        assert main(["embed", str(tree / "pkg" / "a.py"), "-o", str(kept), "--no-progress"]) == 0
        assert stat.S_IMODE(kept.stat().st_mode) == 0o640 and np.load(kept).shape == (1, 384)
    finally:
        os.umask(previous)


def test_sigterm_stops_a_run_like_ctrl_c_and_leaves_no_partial_file(tmp_path):
    import signal
    import time

    out = tmp_path / "vectors.npy"
    process = subprocess.Popen([sys.executable, "-m", "vecsift", "embed", "--no-progress", "--driver", "numpy",
                                "-o", str(out)], stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.stdin.write("".join(f"line {i}\n" for i in range(500)))
    process.stdin.flush()
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".vectors.npy.*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 143 and "terminated; no output was written" in stderr
    assert list(tmp_path.iterdir()) == []


def test_stdin_to_stdout_is_incremental(tmp_path):
    """Each line typed into a pipe comes back as its vector before the next line is written (the input
    pauses, so the partial window goes on; stdout is flushed per row)."""
    import select

    process = subprocess.Popen([sys.executable, "-m", "vecsift", "embed", "--no-progress", "--driver", "numpy"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for number in (1, 2, 3):
            process.stdin.write(f"line number {number}\n")
            process.stdin.flush()  # stdin stays open: only this line is there to embed
            ready, _, _ = select.select([process.stdout], [], [], 120)  # a hang guard, not a timing assertion
            assert ready, f"no vector for line {number} while the input stayed open"
            row = json.loads(process.stdout.readline())
            assert row["id"] == f"<stdin>:{number}" and len(row["vector"]) == 384
        process.stdin.close()
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()


@pytest.mark.parametrize("delay", [0.05, 0.2, 0.35, 0.5, 0.7, 1.0, 1.5, 3.0])
@pytest.mark.parametrize(("signum", "status", "word"), [(2, 130, "interrupted"), (15, 143, "terminated")])
def test_a_signal_at_any_moment_is_one_line_and_a_clean_exit(tmp_path, delay, signum, status, word):
    """While the interpreter imports the engine (numpy, tokenizers, torch), loads the model or embeds: the
    same single line, the same status, no traceback, no abort (a signal handled inside torch's import used to
    end in ``terminate called ... pybind11::error_already_set``, exit 134), no output file."""
    import time

    out = tmp_path / "vectors.npy"
    process = subprocess.Popen([sys.executable, "-m", "vecsift", "embed", "--no-progress", "-o", str(out)],
                               stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.stdin.write("one line\n")
    process.stdin.flush()  # stdin stays open: the run cannot finish on its own
    time.sleep(delay)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)  # a hang guard, not a timing assertion
    assert process.returncode == status, stderr
    assert f"vecsift: {word}" in stderr and "Traceback" not in stderr and "terminate called" not in stderr
    assert list(tmp_path.iterdir()) == []


def test_the_summary_counts_truncated_texts_and_invalid_utf8_names_its_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"short\n" + b"word " * 400 + b"\nalso short\n")))
    assert main(["embed", "--no-progress", "--driver", "numpy", "-o", str(tmp_path / "v.npy")]) == 0
    assert "1 texts truncated at 256 tokens" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"fine\nbad \xff byte\n")))
    assert main(["embed", "--no-progress", "--driver", "numpy"]) == 1
    assert "<stdin>:2: not valid UTF-8 (byte 5 of the line)" in capsys.readouterr().err
    (tmp_path / "in.jsonl").write_bytes(b'{"text": "ok"}\n{"text": "\xc3("}\n')
    assert main(["embed", "--no-progress", "--driver", "numpy", "--jsonl", str(tmp_path / "in.jsonl")]) == 1
    assert "in.jsonl:2: not valid UTF-8" in capsys.readouterr().err


def test_ctrl_c_while_the_command_line_is_parsed_is_one_line(monkeypatch, capsys):
    """The parser is built before any command runs; an interrupt there once escaped as a traceback."""
    from vecsift.cli import main as cli

    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert main(["embed", "-o", "x.npy"]) == 130
    assert capsys.readouterr().err == "vecsift: interrupted\n"
