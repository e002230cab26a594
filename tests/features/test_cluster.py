"""A real Dask cluster on loopback (``dask scheduler`` + ``dask worker`` processes started here).

Workers are killed with SIGKILL mid-run and the scheduler goes away mid-run; "mid-run" is
synchronised on the run's own progress by a worker preload hook (it kills when a given task
starts), never on the clock. Timeouts below only guard against hangs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from radsurv.data.case import Case

ROOT = Path(__file__).resolve().parents[2]
GUARD = 180  # seconds: failure guard only


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # the worktree's radsurv in every process (in CI it is installed in the venv as well)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _wait_for(check, what: str, timeout: float = GUARD) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class LoopbackCluster:
    """``dask scheduler`` and ``dask worker`` subprocesses on 127.0.0.1 (free ports)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.procs: list[subprocess.Popen] = []
        self.scheduler_file = folder / "scheduler.json"

    def _start(self, module: str, *args: str, log: str) -> subprocess.Popen:
        cmd = [sys.executable, "-m", f"distributed.cli.{module}", *args]
        with open(self.folder / log, "ab") as out:
            proc = subprocess.Popen(
                cmd, env=_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.procs.append(proc)
        return proc

    def start_scheduler(self) -> str:
        self.scheduler = self._start(
            "dask_scheduler",
            "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
            "--scheduler-file", str(self.scheduler_file),
            log="scheduler.log",
        )  # fmt: skip
        _wait_for(self.scheduler_file.is_file, "the scheduler file")
        (self.folder / "scheduler.pid").write_text(str(self.scheduler.pid))
        self.address = json.loads(self.scheduler_file.read_text())["address"]
        return self.address

    def start_workers(self, n: int, *extra: str, separate: bool = False) -> None:
        """``n`` single-threaded workers: one ``dask worker --nworkers n`` (under nannies that
        restart a killed worker), or ``separate`` processes (``--no-nanny`` needs those)."""
        for per in [1] * n if separate else [n]:
            self._start(
                "dask_worker",
                "--scheduler-file", str(self.scheduler_file),
                "--host", "127.0.0.1", "--nworkers", str(per), "--nthreads", "1",
                "--no-dashboard", "--local-directory", str(self.folder / "workers"), *extra,
                log="workers.log",
            )  # fmt: skip
        from distributed import Client

        with Client(self.address, timeout="60s") as client:
            client.wait_for_workers(n, timeout=GUARD)

    def close(self) -> None:
        for proc in reversed(self.procs):  # whole sessions: nannies and their workers
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.folder.glob("*.log"))


@pytest.fixture
def cluster(tmp_path: Path):
    folder = tmp_path / "cluster"
    folder.mkdir()
    c = LoopbackCluster(folder)
    try:
        yield c
    finally:
        c.close()


# A worker preload: SIGKILLs its own process (once per cluster, a marker file) when a task with
# the given prefix starts executing on a worker that holds the case's prepared data; or, with
# TARGET "scheduler", SIGKILLs the scheduler when the task starts.
HOOK = """
import os, signal
from distributed import WorkerPlugin

MARK, PREFIX, TARGET = {mark!r}, {prefix!r}, {target!r}


class Hook(WorkerPlugin):
    def setup(self, worker):
        self.worker = worker

    def transition(self, key, start, finish, **kwargs):
        key = str(key)
        if finish != "executing" or not key.startswith(PREFIX):
            return
        cid = key.split("-")[1]
        if TARGET == "worker" and not any(
            str(k).startswith("prepare-" + cid + "-") for k in self.worker.data
        ):
            return
        try:
            fd = os.open(MARK, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, (cid + " " + self.worker.address).encode())
        os.close(fd)
        if TARGET == "worker":
            os.kill(os.getpid(), signal.SIGKILL)
        else:
            pid = int(open({pidfile!r}).read())
            os.kill(pid, signal.SIGKILL)


async def dask_setup(worker):
    await worker.plugin_add(Hook(), name="test-hook")
"""


def _hook(folder: Path, prefix: str, target: str) -> tuple[Path, Path]:
    mark = folder / f"hook-{target}.done"
    path = folder / f"hook_{target}.py"
    pidfile = str(folder / "scheduler.pid")
    path.write_text(HOOK.format(mark=str(mark), prefix=prefix, target=target, pidfile=pidfile))
    return path, mark


def _cli(manifest: Path, out: Path, params: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-c", "from radsurv.cli import main; main()",
        "extract-features", "--manifest", str(manifest), "-o", str(out),
        "--params", str(params), "--regions", "ET,WT", "--modalities", "flair,t1gd",
        "--no-progress", *extra,
    ]  # fmt: skip


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=GUARD * 2)


@pytest.mark.slow
def test_worker_killed_mid_run_completes_with_the_local_table(
    tmp_path: Path, cluster: LoopbackCluster, manifest: Path, fast_params: Path
) -> None:
    ref = tmp_path / "ref.csv"
    local = _run(_cli(manifest, ref, fast_params, "--jobs", "2"))
    assert local.returncode == 0, local.stderr
    hook, mark = _hook(cluster.folder, "texture-", "worker")
    address = cluster.start_scheduler()
    cluster.start_workers(2, "--preload", str(hook))  # nannies restart a killed worker
    out = tmp_path / "run.csv"
    report = tmp_path / "dask-report.html"
    run = _run(_cli(manifest, out, fast_params, "--dask", address, "--dask-report", str(report)))
    assert mark.is_file(), "the hook never killed a worker:\n" + cluster.logs()
    assert run.returncode == 0, run.stderr + cluster.logs()
    assert "Traceback" not in run.stderr
    assert out.read_bytes() == ref.read_bytes()
    killed_case, killed_worker = mark.read_text().split()
    assert "lost scattered data" not in cluster.logs()
    status = pd.read_csv(tmp_path / "run.status.csv").set_index("case_id")
    assert (status["status"] == "ok").all()
    assert "recomputed after losing worker" in status.loc[killed_case, "notes"]
    assert killed_worker in status.loc[killed_case, "notes"]
    assert f"lost worker {killed_worker}" in run.stderr
    prov = json.loads((tmp_path / "run.provenance.json").read_text())
    assert prov["backend"] == "dask"
    # --dask-report: Dask's own performance report (bokeh is a dependency of radsurv)
    assert "Dask Performance Report" in report.read_text()


@pytest.mark.slow
def test_worker_killed_from_outside_after_first_case(
    tmp_path: Path, cluster: LoopbackCluster, manifest: Path, fast_params: Path
) -> None:
    """kill -9 from outside at a moment set by the run's progress: a saved case and a worker
    holding a prepared case. Whatever the run was doing then, it completes with the table."""
    from distributed import Client

    ref = tmp_path / "ref.csv"
    assert _run(_cli(manifest, ref, fast_params, "--jobs", "1")).returncode == 0
    address = cluster.start_scheduler()
    cluster.start_workers(2, "--no-nanny", separate=True)  # no replacement: one finishes alone
    out = tmp_path / "run.csv"
    parts = out.with_name(out.name + ".parts")
    proc = subprocess.Popen(
        _cli(manifest, out, fast_params, "--dask", address),
        env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        with Client(address, timeout="60s") as client:
            pids = client.run(os.getpid)  # worker address -> process id

            def holder() -> int | None:
                if proc.poll() is not None or not list(parts.glob("*.json")):
                    return None
                for worker, keys in client.has_what().items():
                    if any(str(k).startswith("prepare-") for k in keys) and worker in pids:
                        return int(pids[worker])
                return None

            victim: list[int] = []

            def found() -> bool:
                pid = holder()
                if pid is not None:
                    victim.append(pid)
                return bool(victim) or proc.poll() is not None

            _wait_for(found, "a saved case and a worker holding a prepared case")
            if victim:
                os.kill(victim[0], signal.SIGKILL)
        stderr = proc.communicate(timeout=GUARD * 2)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert victim, "the run ended before a worker could be killed"
    assert proc.returncode == 0, stderr + cluster.logs()
    assert out.read_bytes() == ref.read_bytes()
    assert "Traceback" not in stderr


@pytest.mark.slow
def test_scheduler_killed_mid_run_saves_cases_and_rerun_resumes(
    tmp_path: Path, cluster: LoopbackCluster, manifest: Path, fast_params: Path
) -> None:
    ref = tmp_path / "ref.csv"
    local = _run(_cli(manifest, ref, fast_params, "--jobs", "1"))
    assert local.returncode == 0, local.stderr
    # at most workers + 1 = 3 cases are in flight, so case 5 starts after 2 cases are saved
    hook, mark = _hook(cluster.folder, "prepare-BraTS20_Training_005-", "scheduler")
    address = cluster.start_scheduler()
    cluster.start_workers(2, "--preload", str(hook))
    out = tmp_path / "run.csv"
    cmd = _cli(manifest, out, fast_params, "--dask", address)
    run = _run(cmd)
    assert mark.is_file(), "the hook never killed the scheduler:\n" + cluster.logs()
    assert run.returncode == 3, run.stderr
    assert "Traceback" not in run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and address in last, run.stderr
    saved = sorted(out.with_name(out.name + ".parts").glob("*.json"))
    assert 2 <= len(saved) < 6
    assert f"{len(saved)}/6 cases saved" in last and "rerun the same command" in last
    assert not out.exists()
    again = _run(cmd[: cmd.index("--dask")] + cmd[cmd.index("--dask") + 2 :] + ["--jobs", "1"])
    assert again.returncode == 0, again.stderr
    assert out.read_bytes() == ref.read_bytes()
    status = pd.read_csv(tmp_path / "run.status.csv")
    assert status["resumed"].sum() == len(saved)


@pytest.mark.slow
def test_case_over_the_worker_memory_limit_fails_alone(
    tmp_path: Path, cluster: LoopbackCluster, phantoms: list[Case], fast_params: Path
) -> None:
    from radsurv.data.manifest import build_manifest, write_manifest
    from radsurv.data.nifti import write_nifti_case

    small = phantoms[0]
    pad = ((0, 176), (0, 232), (0, 232))  # 200x280x280, 2 modalities: ~370 MiB to prepare
    big = Case(
        "BraTS20_Training_099",
        {m: np.pad(a, pad) for m, a in small.images.items()},
        np.pad(small.labels, pad),
    )
    for case in (small, big):
        write_nifti_case(case, tmp_path / "data")
    table = build_manifest(tmp_path / "data", relative_to=tmp_path, checksum=False)
    manifest = write_manifest(table, tmp_path / "data_manifest.csv")
    address = cluster.start_scheduler()
    cluster.start_workers(1, "--memory-limit", "640MiB")
    out = tmp_path / "run.csv"
    run = _run(_cli(manifest, out, fast_params, "--dask", address))
    assert run.returncode == 1, run.stderr  # one case failed, the run went on
    status = pd.read_csv(tmp_path / "run.status.csv").set_index("case_id")
    assert status.loc[small.case_id, "status"] == "ok"
    error = status.loc[big.case_id, "error"]
    assert status.loc[big.case_id, "status"] == "failed"
    assert big.case_id in error and "memory limit of 640 MiB" in error
    assert "--memory-limit" in error
    prov = json.loads((tmp_path / "run.provenance.json").read_text())
    peaks = prov["memory"]["peak_rss_mib"]
    assert peaks["prepare"]["max"] > 0 and peaks["texture"]["max"] > 0
    assert prov["memory"]["worker_memory_limit_mib"] == 640


@pytest.mark.slow
def test_unreachable_scheduler_is_one_error_line(
    tmp_path: Path, manifest: Path, fast_params: Path
) -> None:
    import socket

    with socket.socket() as sock:  # a free port on loopback, nothing listens on it
        sock.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{sock.getsockname()[1]}"
    out = tmp_path / "run.csv"
    run = _run(_cli(manifest, out, fast_params, "--dask", address))
    assert run.returncode == 3, run.stderr
    assert "Traceback" not in run.stderr
    lines = run.stderr.strip().splitlines()
    assert lines[-1].startswith(f"error: Dask scheduler {address}: unreachable"), run.stderr
    assert "0/6 cases saved" in lines[-1]
