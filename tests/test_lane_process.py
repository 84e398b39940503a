"""A server lane's forward passes in a child process (`vecsift.server.lane_process`): the same vectors as
the engine in this process, typed errors back over the pipe, and a child that never outlives its lane."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from vecsift.backend.loader import load_backend
from vecsift.backend.token_batch import TokenBatch
from vecsift.errors import BackendError, VecsiftError
from vecsift.scheduling.threads import single_threaded_kernels
from vecsift.server import batcher as batcher_module
from vecsift.server.batcher import Batcher, Job
from vecsift.server.lane_process import LaneProcess, LaneSpec
from vecsift.tokenizer import load_tokenizer

MODEL = "all-MiniLM-L6-v2"
TEXTS = ["retry a request with exponential backoff", "parse a configuration file", "def add(a, b): return a + b",
         "x", "least recently used cache " * 20]
NUMPY_FP32 = LaneSpec(MODEL, "numpy", "fp32")


@contextlib.contextmanager
def started(spec: LaneSpec, name: str) -> Iterator[LaneProcess]:
    """A lane process with its model loaded, always closed."""
    child = LaneProcess(spec, name)
    try:
        child.wait_ready()
        yield child
    finally:
        child.close()


@pytest.fixture(scope="module")
def lane() -> Iterator[LaneProcess]:
    with started(NUMPY_FP32, "test-lane") as child:
        yield child


@pytest.fixture(scope="module")
def encodings() -> list:
    return load_tokenizer(MODEL).encode(TEXTS)


def _two_lanes(in_processes: bool = True) -> Batcher:
    """A batcher of two lanes on the NumPy fp32 backend: lane processes, or lane threads."""
    backend = load_backend("cpu", MODEL, driver="numpy", precision="fp32")
    return Batcher([backend], max_batch_tokens=16384, batch_size=32, workers=2,
                   lane_spec=NUMPY_FP32 if in_processes else None)


def _reference(spec: LaneSpec, encodings: list, normalize: bool = True) -> tuple[np.ndarray, TokenBatch]:
    """What the same backend computes in this process, single-threaded as a lane runs it."""
    backend = load_backend("cpu", spec.model, driver=spec.driver, precision=spec.precision)
    with single_threaded_kernels([backend]):
        rows = backend.embed_batch(encodings) if normalize else backend.embed_pooled(encodings)
    return rows, backend.prepare_batch(encodings)


def test_a_lane_process_computes_what_this_process_computes(lane, encodings):
    expected, batch = _reference(NUMPY_FP32, encodings)
    np.testing.assert_array_equal(lane.embed(batch, normalize=True), expected)  # same kernels, one thread each
    pooled, _ = _reference(NUMPY_FP32, encodings, normalize=False)
    np.testing.assert_array_equal(lane.embed(batch, normalize=False), pooled)


def test_a_torch_lane_process_computes_what_this_process_computes(encodings):
    pytest.importorskip("torch")
    from vecsift.hardware import has_fast_bf16

    spec = LaneSpec(MODEL, "torch", "bf16" if has_fast_bf16() else "fp32")
    with started(spec, "test-torch-lane") as child:
        expected, batch = _reference(spec, encodings)
        np.testing.assert_allclose(child.embed(batch, normalize=True), expected, atol=1e-6)


def test_an_error_in_the_child_comes_back_typed_and_the_lane_goes_on(lane, encodings):
    ids = np.array([101, 10**7, 102], dtype=np.int64)  # past the vocabulary: the forward pass fails
    bad = TokenBatch(ids, np.arange(3, dtype=np.int64), np.zeros(3, dtype=np.int64), np.array([0, 3]))
    with pytest.raises(BackendError, match="forward pass failed"):
        lane.embed(bad, normalize=True)
    assert lane.alive
    expected, batch = _reference(NUMPY_FP32, encodings)
    np.testing.assert_array_equal(lane.embed(batch, normalize=True), expected)


def test_a_model_the_child_cannot_load_is_a_typed_error_at_start(tmp_path):
    child = LaneProcess(LaneSpec(str(tmp_path / "no-such-model"), "numpy", "fp32"), "test-bad-lane")
    try:
        with pytest.raises(VecsiftError, match="no-such-model"):
            child.wait_ready()
        child.process.join(30)
        assert not child.alive
    finally:
        child.close()


def test_a_killed_child_is_a_backend_error_not_a_hang(encodings):
    with started(NUMPY_FP32, "test-killed-lane") as child:
        _, batch = _reference(NUMPY_FP32, encodings)
        os.kill(child.process.pid, signal.SIGKILL)
        with pytest.raises(BackendError, match="test-killed-lane"):
            child.embed(batch, normalize=True)
        assert not child.alive


def test_the_child_ignores_ctrl_c_and_ends_when_its_lane_closes(encodings):
    """A Ctrl-C in a terminal reaches the whole process group; the server's graceful stop needs its lanes."""
    with started(NUMPY_FP32, "test-sigint-lane") as child:
        os.kill(child.process.pid, signal.SIGINT)
        os.kill(child.process.pid, signal.SIGTERM)
        expected, batch = _reference(NUMPY_FP32, encodings)
        np.testing.assert_array_equal(child.embed(batch, normalize=True), expected)
    assert child.exitcode == 0 and not child.alive


def test_a_ctrl_c_while_the_child_starts_does_not_kill_it():
    child = LaneProcess(NUMPY_FP32, "test-early-sigint-lane")
    try:
        for _ in range(20):  # through its interpreter's start and its imports
            os.kill(child.process.pid, signal.SIGINT)
            time.sleep(0.01)
        child.wait_ready()
        assert child.alive
    finally:
        child.close()


def test_a_server_whose_lanes_cannot_start_fails_before_it_listens(monkeypatch, tmp_path):
    """`vecsift serve` starts its lanes before it serves: a lane that cannot load the model is the command's
    typed error (one line), not a traceback from the app's startup."""
    pytest.importorskip("uvicorn")
    from vecsift.embedder import Embedder
    from vecsift.server import app

    monkeypatch.setattr(app._Server, "_lane_spec", lambda server: LaneSpec(str(tmp_path / "gone"), "numpy", "fp32"))
    with pytest.raises(VecsiftError, match="gone"):
        app.create_app(Embedder(MODEL, driver="numpy"), app.ServerSettings(model_id=MODEL, workers=2), start_now=True)
    assert not [t for t in threading.enumerate() if t.name.startswith("vecsift-tokenize") and t.is_alive()]


def test_a_batcher_whose_lane_process_dies_reports_it_and_strands_nothing(monkeypatch, encodings):
    batcher = _two_lanes()
    try:
        assert batcher.lanes == 2 and batcher.healthy()
        polls = []
        alive = LaneProcess.alive
        monkeypatch.setattr(LaneProcess, "alive", property(lambda lane: polls.append(lane) or alive.fget(lane)))
        assert all(batcher.healthy() for _ in range(1000))  # asked per request: not a waitpid each time
        assert len(polls) <= 2 * 2
        monkeypatch.undo()
        answers: list[tuple] = []
        answered = threading.Event()

        def deliver(rows, error, queue_seconds, inference_seconds) -> None:
            answers.append((rows, error))
            answered.set()

        batcher.submit(Job(list(encodings), True, deliver))
        assert answered.wait(60)
        expected, _ = _reference(NUMPY_FP32, encodings)
        np.testing.assert_array_equal(answers[0][0], expected)

        os.kill(batcher._processes[0].process.pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while batcher.healthy() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not batcher.healthy()
        for _ in range(4):  # whichever lane takes them, every request is answered: rows, or the lane's error
            answered.clear()
            batcher.submit(Job(list(encodings), True, deliver))
            assert answered.wait(60)
        assert all(rows is not None or isinstance(error, BackendError) for rows, error in answers)
    finally:
        batcher.stop(timeout=30)
    assert not any(p.alive for p in batcher._processes)


@pytest.mark.parametrize("in_processes", [True, False])
def test_a_free_lane_process_takes_what_is_queued_and_a_thread_lane_waits_for_its_share(monkeypatch, encodings,
                                                                                         in_processes):
    """With a few inputs outstanding elsewhere, a free lane on a thread waits (up to ``COALESCE_SECONDS``, here
    10 minutes) for its share of them before it computes; a lane process computes what is queued at once."""
    monkeypatch.setattr(batcher_module, "COALESCE_SECONDS", 600.0)
    monkeypatch.setattr(batcher_module, "MIN_BATCH_SECONDS", 600.0)
    batcher = _two_lanes(in_processes)
    answered = threading.Event()
    try:
        with batcher._wake:  # inputs outstanding elsewhere, fewer than a minimum batch: each lane's share is 7
            batcher._arrived += batcher_module.MIN_BATCH_INPUTS - 2
        batcher.submit(Job(list(encodings[:1]), True, lambda *answer: answered.set()))
        assert answered.wait(60 if in_processes else 2) == in_processes
    finally:
        batcher.stop(timeout=30)  # a waiting lane stops waiting and computes what is queued
    assert answered.is_set()


def test_a_free_lane_process_waits_for_a_minimum_batch_while_another_lane_computes_one(monkeypatch, encodings):
    """Under load (another lane computing at least ``MIN_BATCH_INPUTS``) a free lane process that finds fewer
    queued waits, here for up to 10 minutes, and computes as soon as that many are queued."""
    monkeypatch.setattr(batcher_module, "MIN_BATCH_SECONDS", 600.0)
    batcher = _two_lanes()
    sizes: list[int] = []
    batcher.on_batch = lambda stats: sizes.append(stats.inputs)
    first, rest = threading.Event(), threading.Event()
    try:
        with batcher._wake:  # what another lane computes
            batcher._arrived += batcher_module.MIN_BATCH_INPUTS
        batcher.submit(Job(list(encodings[:1]), True, lambda *answer: first.set()))
        assert not first.wait(2)
        more = (encodings * batcher_module.MIN_BATCH_INPUTS)[: batcher_module.MIN_BATCH_INPUTS - 1]
        batcher.submit(Job(more, True, lambda *answer: rest.set()))
        assert first.wait(60)
        assert sizes[0] > 1  # the lone input waited for the others (two idle lanes split them)
        with batcher._wake:  # the other lane is done: what is left is computed at once
            batcher._arrived -= batcher_module.MIN_BATCH_INPUTS
            batcher._wake.notify_all()
        assert rest.wait(60) and sum(sizes) == batcher_module.MIN_BATCH_INPUTS
    finally:
        batcher.stop(timeout=30)
