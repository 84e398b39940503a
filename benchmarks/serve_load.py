"""Load on `vecsift serve` against the servers a user would otherwise run, on loopback, bounded in time.

Servers, one at a time, each on 127.0.0.1: vecsift serve (its default precision here, and fp32), the
hand-written anchor (sentence-transformers behind FastAPI, ``benchmarks/anchors/st_fastapi.py``), and with
``--infinity PATH`` the infinity-emb server (``infinity_emb v2``, torch engine, the same local model
directory, offline) from its own environment: its pins (numpy < 2, sentence-transformers < 4) exclude this
project's, so ``make bench-serve`` makes ``.venv-infinity`` for it. All are asked the same OpenAI-shaped
requests (``POST /v1/embeddings``). The ceiling is ``Embedder.embed`` on the same texts in this process,
with no server, measured before the servers and after them. The ratio the target is judged on (64
single-text clients against the ceiling) is measured again apart, in ``ROUNDS`` alternating rounds of the
ceiling and vecsift serve, so that this VM's drift over the minutes between them does not decide it.

Load: wrk (C, one thread, a Lua script cycling through the texts) at 1, 8 and 64 connections, with
single-text and 32-text requests, for ``--seconds`` each; p50 / p95 / p99 latency from wrk's
histogram; non-2xx answers and socket errors counted. wrk's own CPU time is reported so it can be
seen not to be the bottleneck.

    python -m benchmarks.serve_load [--write] [--seconds 10] [--infinity .venv-infinity/bin/infinity_emb]
    (needs `apt-get install wrk`)
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.shared import RESULTS, describe_machine, markdown_table, write_section
from vecsift import Embedder
from vecsift.backend.loader import auto_precision
from vecsift.models import bundled_model_dir

CONCURRENCY = (1, 8, 64)
BATCH = 32
_LUA = """
local bodies = {%s}
local i = 0
request = function()
  i = i + 1
  return wrk.format("POST", "/v1/embeddings", {["Content-Type"] = "application/json"}, bodies[(i %% #bodies) + 1])
end
done = function(summary, latency, requests)
  io.write(string.format('RESULT {"requests": %%d, "duration_us": %%d, "status_errors": %%d, "socket_errors": %%d, ' ..
    '"p50": %%d, "p95": %%d, "p99": %%d}\\n', summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
"""


def texts(count: int) -> list[str]:
    """Short real texts: non-blank lines of stdlib source, 20 to 200 characters."""
    out = []
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            line = line.strip()
            if 20 <= len(line) <= 200:
                out.append(line)
                if len(out) == count:
                    return out
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(command: list[str], url: str | None = None) -> tuple[subprocess.Popen, str]:
    """Start a server and wait until its /health answers; ``url``: where it listens, else read from its
    "serving on URL" line (vecsift and the hand-written anchor print one)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0", "DO_NOT_TRACK": "1"}
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stderr], daemon=True).start()
    deadline = time.monotonic() + 180
    while url is None and time.monotonic() < deadline:
        try:
            match = re.search(r"serving on (http://\S+)", lines.get(timeout=1))
        except queue.Empty:
            if process.poll() is not None:
                raise SystemExit(f"{command} exited before serving") from None
            continue
        url = match.group(1) if match else None
    while url is not None and time.monotonic() < deadline:
        if subprocess.run(["curl", "-sf", f"{url}/health"], capture_output=True).returncode == 0:
            return process, url
        if process.poll() is not None:
            raise SystemExit(f"{command} exited before serving")
        time.sleep(0.2)
    process.kill()
    raise SystemExit(f"{command} did not start")


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()


def load(url: str, bodies: list[str], connections: int, seconds: int, work: Path) -> dict:
    script = work / "load.lua"
    script.write_text(_LUA % ", ".join(f"[==[{b}]==]" for b in bodies))
    started = time.perf_counter()
    usage_before = os.times()
    done = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "60s", "-s", str(script),
                           url], capture_output=True, text=True)
    usage_after = os.times()
    wall = time.perf_counter() - started
    result = json.loads(done.stdout.split("RESULT ", 1)[1].splitlines()[0])
    result["wrk_cpu"] = ((usage_after.children_user - usage_before.children_user)
                         + (usage_after.children_system - usage_before.children_system)) / wall
    return result


def answered_per_second(result: dict) -> float:
    """Requests answered without an error per second of a :func:`load` result."""
    return (result["requests"] - result["status_errors"] - result["socket_errors"]) / (result["duration_us"] / 1e6)


def measure_ceiling(embedder: Embedder, corpus: list[str]) -> tuple[float, float]:
    """Texts/s of ``Embedder.embed`` on ``corpus`` in one call (median of 3), and its p50 ms on one text."""
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        embedder.embed(corpus)
        runs.append(time.perf_counter() - started)
    one = []
    for text in corpus[:200]:
        started = time.perf_counter()
        embedder.embed([text])
        one.append(time.perf_counter() - started)
    return len(corpus) / statistics.median(runs), statistics.median(one) * 1000


ROUNDS = 3  # alternating rounds of the ceiling and vecsift serve at 64 single-text clients


def alternating_ratios(embedder: Embedder, corpus: list[str], command: list[str], singles: list[str],
                       seconds: int, work: Path) -> list[tuple[float, float, float]]:
    """(ceiling before, server, ceiling after) texts/s for each round: the ceiling, then vecsift serve under 64
    single-text clients, then the ceiling again (the next round's "before"). One server process throughout,
    first as warm as the ceiling's engine (a process warms up over its first few thousand texts); while the
    ceiling runs, the server idles."""
    rounds = []
    process, url = start(command)
    try:
        load(url, singles[:64], 8, 3, work)
        load(url, singles, 64, seconds, work)  # warm-up, as long as a measured run
        before = measure_ceiling(embedder, corpus)[0]
        for _ in range(ROUNDS):
            r = load(url, singles, 64, seconds, work)
            served = answered_per_second(r)
            after = measure_ceiling(embedder, corpus)[0]
            rounds.append((before, served, after))
            print(f"alternating: ceiling {before:.1f}, vecsift serve {served:.1f}, ceiling {after:.1f} texts/s",
                  flush=True)
            before = after
    finally:
        stop(process)
    return rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--write", action="store_true", help=f"write the section of {RESULTS.name}")
    parser.add_argument("--infinity", help="the infinity_emb command of an environment that has it "
                                           "(make bench-serve makes .venv-infinity)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("the load generator wrk is not installed: apt-get install wrk")
    model_dir = bundled_model_dir()
    corpus = texts(2048)
    singles = [json.dumps({"input": t, "model": "all-MiniLM-L6-v2"}) for t in corpus]
    batches = [json.dumps({"input": corpus[i:i + BATCH], "model": "all-MiniLM-L6-v2"})
               for i in range(0, len(corpus), BATCH)]
    precision = auto_precision("cpu", "all-MiniLM-L6-v2").precision
    servers: dict[str, tuple[list[str], str | None]] = {
        f"vecsift serve ({precision})": ([sys.executable, "-m", "vecsift", "serve", "--port", "0", "--precision",
                                          precision, "--max-concurrent-requests", str(64 * BATCH)], None),
        "sentence-transformers + FastAPI (fp32)": ([sys.executable, "-m", "benchmarks.anchors.st_fastapi",
                                                    str(model_dir), str(free_port())], None),
    }
    if args.infinity:  # fp32, and bf16 beside vecsift's own reduced precision
        for label, dtype in (("fp32", "float32"), ("bf16", "bfloat16")):
            port = free_port()
            servers[f"infinity-emb (torch, {label})"] = (
                [args.infinity, "v2", "--model-id", str(model_dir), "--served-model-name", "all-MiniLM-L6-v2",
                 "--engine", "torch", "--device", "cpu", "--dtype", dtype, "--host", "127.0.0.1", "--port",
                 str(port), "--url-prefix", "/v1", "--no-model-warmup"],
                f"http://127.0.0.1:{port}")  # its /health stays at the root
    if precision != "fp32":
        servers["vecsift serve (fp32)"] = ([sys.executable, "-m", "vecsift", "serve", "--port", "0", "--precision",
                                            "fp32", "--max-concurrent-requests", str(64 * BATCH)], None)
    rows: list[tuple] = []
    single_rate: dict[str, float] = {}
    single_p50: dict[str, float] = {}
    work = Path(tempfile.mkdtemp(prefix="vecsift-load-"))
    # The ceiling, with no server running, before the servers and after them (this VM's speed drifts over
    # a run of several minutes): the same texts through the same engine in this process.
    embedder = Embedder("all-MiniLM-L6-v2", precision=precision)
    embedder.embed(corpus[:256])
    ceilings = [measure_ceiling(embedder, corpus)]
    try:
        for name, (command, known_url) in servers.items():
            process, url = start(command, known_url)
            try:
                load(url, singles[:64], 8, 3, work)  # warm-up
                for size, bodies in (("1 text", singles), (f"{BATCH} texts", batches)):
                    for connections in CONCURRENCY:
                        r = load(url, bodies, connections, args.seconds, work)
                        per_request = 1 if size == "1 text" else BATCH
                        rate = answered_per_second(r)
                        texts_per_s = rate * per_request
                        if size == "1 text":
                            single_rate[(name, connections)] = texts_per_s
                            if connections == 1:
                                single_p50[name] = r["p50"] / 1000
                        rows.append((name, size, connections, f"{texts_per_s:.1f}", f"{r['p50'] / 1000:.1f}",
                                     f"{r['p95'] / 1000:.1f}", f"{r['p99'] / 1000:.1f}", r["requests"],
                                     r["status_errors"] + r["socket_errors"], f"{r['wrk_cpu']:.0%}"))
                        print(*rows[-1], sep=" | ", flush=True)
            finally:
                stop(process)
        ceilings.append(measure_ceiling(embedder, corpus))
        ours = f"vecsift serve ({precision})"
        rounds = alternating_ratios(embedder, corpus, servers[ours][0], singles, args.seconds, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    ceiling = statistics.mean(rate for rate, _ in ceilings)
    one_p50 = statistics.mean(p50 for _, p50 in ceilings)
    at64 = single_rate[(ours, 64)]
    ratios = [served / statistics.mean((before, after)) for before, served, after in rounds]
    body = "\n".join([
        f"Machine: {describe_machine()}.", "",
        f"Texts: {len(corpus)} lines of stdlib source (20–200 characters); each server gets the same "
        f"OpenAI-shaped requests for {args.seconds} s per row, after a warm-up, from wrk on 127.0.0.1 (one thread; "
        "its share of a core is in the last column).", "",
        *markdown_table(["server", "request", "connections", "texts/s", "p50 ms", "p95 ms", "p99 ms", "requests",
                         "errors", "wrk CPU"], rows), "",
        f"Ceiling, `Embedder.embed` on the same {len(corpus)} texts in one call ({precision}, no server), measured "
        f"before the servers and after them: {ceilings[0][0]:.1f} and {ceilings[1][0]:.1f} texts/s (the ratios "
        f"below use their mean, {ceiling:.1f}). One text through `Embedder.embed`: p50 {ceilings[0][1]:.1f} and "
        f"{ceilings[1][1]:.1f} ms.", "",
        f"At 64 connections of single-text requests: vecsift serve {at64:.1f} texts/s = {at64 / ceiling:.2f}× the "
        f"ceiling; " + "; ".join(f"{at64 / single_rate[(name, 64)]:.2f}× {name}" for name in servers
                                 if not name.startswith("vecsift")) + ". One client, one short text: "
        f"p50 {single_p50[ours]:.1f} ms against {one_p50:.1f} ms for `Embedder.embed` "
        f"(+{single_p50[ours] - one_p50:.1f} ms).", "",
        f"The same ratio measured in {ROUNDS} alternating rounds (one server process, warmed up first; the "
        f"ceiling, vecsift serve at 64 single-text clients for {args.seconds} s, the ceiling again; each round's "
        "server texts/s over the mean of the two ceilings around it): " + "; ".join(
            f"{served:.1f} / {statistics.mean((before, after)):.1f} = {ratio:.2f}×"
            for (before, served, after), ratio in zip(rounds, ratios, strict=True))
        + f"; median **{statistics.median(ratios):.2f}×** the ceiling.",
    ])
    print(body)
    if args.write:
        write_section("## Serving under load", "python -m benchmarks.serve_load --write", body)


if __name__ == "__main__":
    main()
