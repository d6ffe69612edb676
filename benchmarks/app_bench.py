"""Server-side speed of the app: many sessions opening at once, the first page load, and switching pages/runs.

Run: .venv/bin/python benchmarks/app_bench.py   (prints figures with their budgets; never fails on a number)

- Sessions at once: a real `streamlit run` server on localhost (as `make run` starts it, with the project's
  app/.streamlit/config.toml) and SESSIONS clients that each fetch the page's HTML and open the app's websocket at the
  same moment, as browsers do; a session is served when its script run on the Runs page has finished. Loopback only,
  SESSIONS clients, each given at most SESSION_TIMEOUT_S.
- The other figures are AppTest script runs: what the server spends per browser interaction.
The store holds sample runs (tests/app/sample_runs.py), so no training happens here.
"""
from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.budget_rows import budget_row  # noqa: E402

MAIN = str(ROOT / "app" / "main.py")
FIRST_LOAD_BUDGET_S = 5.0
SESSIONS = 20
SESSION_BUDGET_S = 5.0  # issue 7: each of 20 sessions opening the Runs page at once is served within 5 s
SESSION_TIMEOUT_S = 60.0
STORE_RUNS = 20
SWITCH_BUDGET_S = 0.3
REPEATS = 7
RESULT_PAGES = ("views/forgetting.py", "views/drift.py", "views/runs.py", "views/learn.py", "views/launch.py")

# Runs in a fresh interpreter: the clock starts before streamlit or the app is imported.
FIRST_LOAD = """
import json, os, sys, time
started = time.perf_counter()
from streamlit.testing.v1 import AppTest
app = AppTest.from_file(sys.argv[1], default_timeout=120)
app.run()
ready = loaded = time.perf_counter()
if len(sys.argv) > 2:
    app.switch_page(sys.argv[2])
    app.run()
    loaded = time.perf_counter()
print(json.dumps({"first_page_s": ready - started, "next_page_s": loaded - ready,
                  "errors": [str(e.value) for e in app.exception]}), flush=True)
os._exit(0)  # the worker's warm-up thread may still be compiling; do not wait for it
"""

def fill_store(root: Path) -> list[str]:
    """STORE_RUNS runs as after a few sweeps: CE, LDIFS and L2-SP over λ and seeds, plus a failed one."""
    from ldifs_core.store import RunStore
    from tests.app.sample_runs import add_ended_run, add_finished_run

    store = RunStore(root)
    settings = [dict(objective="ce", seed=seed) for seed in range(3)]
    settings += [dict(objective="ldifs", lam=lam, seed=seed) for lam in (0.1, 1.0, 10.0, 100.0) for seed in range(3)]
    settings += [dict(objective="l2sp", lam=1.0, seed=seed) for seed in range(STORE_RUNS - 1 - len(settings))]
    runs = [add_finished_run(store, **kwargs) for kwargs in settings]
    add_ended_run(store, "failed", "The loss became nan at step 3: lower the learning rate.")
    return runs


# -- many sessions at once against a real server ---------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def start_server(store: Path, port: int, log_path: Path) -> subprocess.Popen:
    """The app as `make run` starts it (app/.streamlit/config.toml applies), on loopback only."""
    args = [sys.executable, "-m", "streamlit", "run", "app/main.py", "--server.port", str(port),
            "--server.address", "localhost", "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    with log_path.open("w") as log:
        server = subprocess.Popen(args, cwd=ROOT, env={**os.environ, "LDIFS_STORE": str(store)}, stdout=log,
                                  stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the app exited with code {server.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(f"http://localhost:{port}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return server
        except OSError:
            time.sleep(0.3)
    server.kill()
    raise TimeoutError("the app did not answer within 90 s")


def stop_server(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


async def open_session(port: int, page: str) -> dict:
    """What a browser does when it opens http://localhost:port/<page>: fetch the HTML, open the websocket and ask
    for a script run of that page. Served = the run finished; errors = exception elements the page showed."""
    from websockets.asyncio.client import connect
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    started = time.perf_counter()
    url = f"http://localhost:{port}/{page}"
    await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=SESSION_TIMEOUT_S).read())
    errors: list[str] = []
    async with connect(f"ws://localhost:{port}/_stcore/stream", subprotocols=["streamlit"],
                       max_size=None) as websocket:
        request = BackMsg()
        request.rerun_script.page_name = page
        await websocket.send(request.SerializeToString())
        async for frame in websocket:
            message = ForwardMsg()
            message.ParseFromString(frame)
            kind = message.WhichOneof("type")
            if kind == "delta" and message.delta.WhichOneof("type") == "new_element" \
                    and message.delta.new_element.WhichOneof("type") == "exception":
                errors.append(message.delta.new_element.exception.message)
            if kind == "page_not_found":
                errors.append(f"page not found: {page}")
            if kind == "script_finished":
                break
    return {"served_s": time.perf_counter() - started, "errors": errors}


async def sessions_at_once(port: int, page: str, count: int) -> list[dict]:
    async def bounded() -> dict:
        try:
            return await asyncio.wait_for(open_session(port, page), SESSION_TIMEOUT_S)
        except (asyncio.TimeoutError, OSError) as err:
            return {"served_s": float("inf"), "errors": [f"{type(err).__name__}: {err}"]}

    return list(await asyncio.gather(*(bounded() for _ in range(count))))


def concurrent_sessions(store: Path, page: str = "runs") -> dict[str, list[dict]]:
    """SESSIONS sessions opening `page` at once on a freshly started server (cold: the job worker's warm-up
    imports start with the first session), then once more on the same, now warm, server."""
    port = free_port()
    server = start_server(store, port, store.parent / "streamlit.log")
    try:
        cold = asyncio.run(sessions_at_once(port, page, SESSIONS))
        warm = asyncio.run(sessions_at_once(port, page, SESSIONS))
    finally:
        stop_server(server)
    return {"fresh server": cold, "warm server": warm}


def sessions_rows(name: str, sessions: list[dict]) -> list[str]:
    times = sorted(s["served_s"] for s in sessions)
    worst = times[-1]
    lines = [f"  {name}: each session served in (s, sorted) " + " ".join(f"{t:.2f}" for t in times),
             row(f"{name}: slowest of {len(times)}", worst, SESSION_BUDGET_S),
             row(f"{name}: median of {len(times)}", statistics.median(times), SESSION_BUDGET_S)]
    errors = sorted({e for s in sessions for e in s["errors"]})
    if errors:
        lines.append("  pages raised: " + "; ".join(errors))
    return lines


def fresh_process_load(store: Path, page: str | None = None) -> dict:
    args = [sys.executable, "-c", FIRST_LOAD, MAIN] + ([page] if page else [])
    env = {**os.environ, "LDIFS_STORE": str(store), "PYTHONPATH": str(ROOT)}
    out = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def timed_run(app) -> float:
    started = time.perf_counter()
    app.run()
    return time.perf_counter() - started


def switching_times(store: Path, run_ids: list[str]) -> dict[str, float]:
    """Median server time per page switch and per run switch, after each page has been visited once."""
    os.environ["LDIFS_STORE"] = str(store)
    from streamlit.testing.v1 import AppTest

    from app import jobs
    from ldifs_core.store import RunStore

    idle_runner = jobs.JobRunner(RunStore(store))  # steady state: no warm-up competing for the CPU
    jobs.job_runner = lambda: idle_runner
    app = AppTest.from_file(MAIN, default_timeout=120)
    app.run()
    for page in RESULT_PAGES:
        app.switch_page(page).run()
    figures = {}
    for page in RESULT_PAGES:
        samples = []
        for _ in range(REPEATS):
            app.switch_page(page)
            samples.append(timed_run(app))
        figures[f"switch to {Path(page).stem}"] = statistics.median(samples)
    for page in ("views/forgetting.py", "views/drift.py"):
        app.switch_page(page).run()
        samples = []
        for i in range(REPEATS):
            app.selectbox[0].set_value(run_ids[i % len(run_ids)])
            samples.append(timed_run(app))
        figures[f"switch run on {Path(page).stem}"] = statistics.median(samples)
    return figures


def row(name: str, seconds: float, budget_s: float | None) -> str:
    return budget_row(name, seconds, budget_s)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "runs"
        run_ids = fill_store(store)
        at_once = concurrent_sessions(store)
        landing = fresh_process_load(store)
        launch = fresh_process_load(store, "views/launch.py")
        switches = switching_times(store, run_ids)
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"App server timings ({os.cpu_count()} CPUs, load average {load}; sample store with {len(run_ids) + 1} runs)")
    print(f"{SESSIONS} sessions opening the Runs page at once (real server on localhost, websocket clients):")
    for name, sessions in at_once.items():
        print(*sessions_rows(name, sessions), sep="\n")
    print("AppTest script runs:")
    print("First page load, fresh process (imports included):")
    print(row("landing page (Learn)", landing["first_page_s"], FIRST_LOAD_BUDGET_S))
    print(row("then Launch (waits for open_clip's import)", launch["next_page_s"], None))
    print(f"Cached results, median of {REPEATS}:")
    for name, seconds in switches.items():
        print(row(name, seconds, SWITCH_BUDGET_S))
    errors = landing["errors"] + launch["errors"]
    if errors:
        print("Pages raised:", *errors, sep="\n  ")


if __name__ == "__main__":
    main()
