"""embed_distributed: order, determinism across worker counts, failures, progress, bad arguments."""

from __future__ import annotations

import random
import sys
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fakes import FakeBackend, encodings_of_lengths
from vecsift import embed_distributed
from vecsift.errors import BackendError, EncodingError, UsageError


def unscheduled(backend, encodings):
    return np.concatenate([backend.embed_batch([e]) for e in encodings])


@settings(max_examples=40, deadline=None)
@given(lengths=st.lists(st.integers(1, 40), min_size=1, max_size=60), batch_size=st.integers(1, 9),
       workers=st.integers(1, 4))
def test_rows_come_back_in_input_order(lengths, batch_size, workers):
    backend = FakeBackend()
    encodings = encodings_of_lengths(lengths)
    out = embed_distributed(encodings, [backend], batch_size=batch_size, workers=workers)
    np.testing.assert_array_equal(out, unscheduled(FakeBackend(), encodings))


def test_one_and_many_workers_give_identical_real_vectors(backend, tokenizer):
    rng = random.Random(4)
    texts = [" ".join(["token"] * rng.randint(1, 120)) + f" {i}" for i in range(70)]
    encodings = tokenizer.encode(texts)
    one = embed_distributed(encodings, [backend], batch_size=8, workers=1)
    many = embed_distributed(encodings, [backend], batch_size=8, workers=3)
    np.testing.assert_array_equal(one, many)
    np.testing.assert_allclose(one, unscheduled(backend, encodings), atol=1e-6)


def test_batches_are_length_sorted_and_spread_over_clones():
    backend = FakeBackend(delay=0.01)
    encodings = encodings_of_lengths([random.Random(1).randint(1, 50) for _ in range(64)])
    embed_distributed(encodings, [backend], batch_size=4, workers=4)
    assert backend.clones == 3
    assert len({thread for thread, _ in backend.calls}) > 1
    assert sum(size for _, size in backend.calls) == 64


def test_no_more_cpu_workers_than_batches():
    """A query's one batch runs on the calling thread: no clone made, no thread started for it."""
    backend = FakeBackend()
    before = threading.active_count()
    embed_distributed(encodings_of_lengths([5, 3]), [backend], batch_size=32, workers=4)
    assert backend.clones == 0 and {thread for thread, _ in backend.calls} == {threading.get_ident()}
    assert threading.active_count() == before
    embed_distributed(encodings_of_lengths([5] * 3), [backend], batch_size=1, workers=4)
    assert backend.clones == 2  # three batches: three workers


def test_a_non_cloneable_backend_runs_on_the_calling_thread():
    gpu = FakeBackend(gpu=True)
    embed_distributed(encodings_of_lengths([3] * 10), [gpu], batch_size=2, workers=4)
    assert {thread for thread, _ in gpu.calls} == {threading.get_ident()}


def test_several_backends_share_the_work_and_keep_order():
    fast, slow, gpu = FakeBackend(delay=0.005), FakeBackend(delay=0.02), FakeBackend(gpu=True, delay=0.001)
    encodings = encodings_of_lengths(list(range(1, 81)))
    out = embed_distributed(encodings, [fast, slow, gpu], batch_size=4, workers=2)
    np.testing.assert_array_equal(out, unscheduled(FakeBackend(), encodings))
    assert fast.calls and gpu.calls


@pytest.mark.parametrize("workers", [1, 3])
def test_a_failing_batch_stops_the_run_with_its_cause(workers):
    backend = FakeBackend(delay=0.005, fail_on_id=1000 + 37)
    encodings = encodings_of_lengths([5] * 200)
    threads_before = set(threading.enumerate())
    with pytest.raises(BackendError, match="worker .* failed: injected failure") as info:
        embed_distributed(encodings, [backend], batch_size=4, workers=workers)
    assert isinstance(info.value.__cause__, BackendError) and str(info.value.__cause__) == "injected failure"
    assert sum(size for _, size in backend.calls) < 200  # the others stopped early
    assert not [t for t in threading.enumerate() if t not in threads_before and t.is_alive()]


def test_foreign_errors_are_wrapped_and_typed_errors_keep_their_type():
    with pytest.raises(BackendError, match="ZeroDivisionError|division") as info:
        embed_distributed(encodings_of_lengths([2] * 8),
                          [FakeBackend(fail_on_id=1003, error=ZeroDivisionError("division by zero"))], workers=2)
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    with pytest.raises(EncodingError) as info:
        embed_distributed(encodings_of_lengths([2] * 8), [FakeBackend(fail_on_id=1003, error=EncodingError("bad id"))])
    assert isinstance(info.value.__cause__, EncodingError)


def test_a_wrong_row_count_is_an_error():
    class Short(FakeBackend):
        def embed_batch(self, encodings):
            return super().embed_batch(encodings)[:-1]

    with pytest.raises(BackendError, match=r"returned \(1, 8\) for 2 inputs"):
        embed_distributed(encodings_of_lengths([2, 3]), [Short()], batch_size=2, workers=1)


def test_progress_callback_counts_every_input():
    seen: list[int] = []
    embed_distributed(encodings_of_lengths([4] * 23), [FakeBackend()], batch_size=5, workers=2, progress=seen.append)
    assert sum(seen) == 23


def test_progress_bar_counts_texts_on_a_terminal_and_stays_quiet_elsewhere(capsys, monkeypatch):
    embed_distributed(encodings_of_lengths([4] * 9), [FakeBackend()], batch_size=2, progress=True)
    assert capsys.readouterr().err == ""  # not a terminal: no bar (tqdm's disable=None)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    embed_distributed(encodings_of_lengths([4] * 9), [FakeBackend()], batch_size=2, progress=True)
    bar = capsys.readouterr().err
    assert "9/9" in bar and "text" in bar and "tokens=" in bar


def test_empty_input_gives_the_model_dimension(backend):
    assert embed_distributed([], [backend]).shape == (0, 384)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"batch_size": 2.5}, "batch_size must be a positive integer"),
        ({"workers": 0}, "workers must be a positive integer"),
        ({"backends": []}, "non-empty list of EmbedBackend"),
        ({"backends": ["cpu"]}, "non-empty list of EmbedBackend"),
    ],
)
def test_bad_arguments(kwargs, message):
    arguments = {"encodings": encodings_of_lengths([2]), "backends": [FakeBackend()], **kwargs}
    with pytest.raises(UsageError, match=message):
        embed_distributed(**arguments)


def test_non_encodings_are_rejected(backend):
    with pytest.raises(EncodingError, match="not an Encoding"):
        embed_distributed([[1, 2, 3]], [backend])
