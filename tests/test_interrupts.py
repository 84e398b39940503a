"""Signals held back while native extensions import: nothing raised inside, the same signal delivered after."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from vecsift.interrupts import interrupts_held


def _wait_for(condition, guard: float = 10.0) -> None:
    deadline = time.monotonic() + guard  # a hang guard, not a timing assertion
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_ctrl_c_inside_is_raised_on_leaving():
    reached_the_end = False
    with pytest.raises(KeyboardInterrupt), interrupts_held():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # a signal not held would interrupt here
        reached_the_end = True
    assert reached_the_end
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_signal_that_lands_on_another_thread_is_held_too():
    """The case blocking the main thread alone missed: the kernel hands the signal to another thread
    (OpenBLAS's, tokenizers'), whose C handler still trips the main thread's Python code."""
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        reached_the_end = False
        with pytest.raises(KeyboardInterrupt), interrupts_held():
            signal.pthread_kill(other.ident, signal.SIGINT)
            for _ in range(100):  # Python code runs meanwhile: where a tripped handler would raise
                time.sleep(0.001)
            reached_the_end = True
        assert reached_the_end
    finally:
        stop.set()
        other.join()


def test_sigterm_goes_to_its_own_handler_once_and_the_handlers_come_back():
    calls = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: calls.append(signum))
    try:
        with interrupts_held():
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)
            _wait_for(lambda: False, guard=0.05)
            assert calls == []
        assert calls == [signal.SIGTERM]
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler) and handler is not signal.default_int_handler
        with interrupts_held():
            pass
        assert signal.getsignal(signal.SIGTERM) is handler
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_an_ignored_signal_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with interrupts_held():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_sigterm_with_the_default_action_still_ends_the_process():
    script = ("import os, signal, time\n"
              "from vecsift.interrupts import interrupts_held\n"
              "with interrupts_held():\n"
              "    os.kill(os.getpid(), signal.SIGTERM)\n"
              "    time.sleep(0.05)\n"
              "    print('held', flush=True)\n"
              "print('not reached', flush=True)\n")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert run.returncode == -signal.SIGTERM and run.stdout == "held\n"


def test_outside_the_main_thread_the_body_just_runs():
    seen = []

    def body() -> None:
        with interrupts_held():
            seen.append(signal.pthread_sigmask(signal.SIG_BLOCK, []))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen and signal.SIGINT not in seen[0]
