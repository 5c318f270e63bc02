"""A real single-node SLURM cluster for the tests: Debian's munge and slurm-wlm daemons,
configured in a temporary folder, started as root, stopped and removed afterwards.

    with local_slurm(cpus=2) as cluster:
        job = cluster.sbatch(["experiments/slurm/fit_one_node.sbatch", ...], cwd=work)
        cluster.wait(job, {"COMPLETED"})
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "scancel", "sinfo")
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}

CONF = """\
ClusterName=fertest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={dir}/run/munge.sock
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool
SlurmctldPidFile={dir}/run/slurmctld.pid
SlurmdPidFile={dir}/run/slurmd.pid
SlurmctldLogFile={dir}/log/slurmctld.log
SlurmdLogFile={dir}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
ReturnToService=2
JobRequeue=1
MinJobAge=600
KillWait=10
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
"""


def missing() -> str | None:
    """Why a local cluster cannot start here, or None."""
    absent = [d for d in DAEMONS if shutil.which(d) is None]
    if absent:
        return f"not installed: {', '.join(absent)} (apt-get install slurm-wlm munge; `make slurm-deps`)"
    if os.geteuid() != 0:
        return "the local SLURM cluster runs its daemons as root"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill_pidfile(path: Path) -> None:
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


class Cluster:
    """Client side of the running cluster: submit, inspect, signal, release."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.env = dict(os.environ, SLURM_CONF=str(folder / "slurm.conf"))

    def run(self, *cmd: str, check: bool = True, timeout: float = 60, cwd: Path | None = None) -> str:
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout, cwd=cwd)
        if check and proc.returncode:
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc.stdout

    def sbatch(self, args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
        proc = subprocess.run(["sbatch", "--parsable", *args], env={**self.env, **(env or {})}, cwd=cwd,
                              capture_output=True, text=True, timeout=60)
        if proc.returncode:
            raise RuntimeError(f"sbatch failed: {proc.stderr.strip()}")
        return proc.stdout.strip().split(";")[0]

    def job(self, job_id: str) -> dict[str, str]:
        """``scontrol show job`` as a dict (JobState, Restarts, ExitCode, ...)."""
        text = self.run("scontrol", "show", "job", "-o", job_id)
        return dict(re.findall(r"(\w+)=(\S*)", text))

    def wait(self, job_id: str, states: set[str], timeout: float, poll: float = 1.0) -> dict:
        """Poll until the job is in one of ``states``; fail with its log if it ends otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.job(job_id)
            if info.get("JobState") in states:
                return info
            if info.get("JobState") in FINAL - states or time.monotonic() > deadline:
                out = Path(info.get("StdOut", "/nonexistent"))
                log = out.read_text()[-6000:] if out.is_file() else "(no job log)"
                raise AssertionError(f"job {job_id} is {info.get('JobState')}, waited for {states}; its log:\n{log}")
            time.sleep(poll)

    def release_now(self, job_id: str) -> None:
        """A requeued job waits SLURM's fixed 120 s before it may start again; start it now."""
        self.run("scontrol", "update", f"JobId={job_id}", "StartTime=now")

    def cancel_all(self) -> None:
        for job in self.run("squeue", "-h", "-o", "%i", check=False).split():
            self.run("scancel", job, check=False)


@contextmanager
def local_slurm(cpus: int | None = None, start_timeout: float = 60) -> Iterator[Cluster]:
    """Start munged, slurmctld and slurmd on this machine in a temporary folder; stop them and
    remove the folder afterwards, pass or fail."""
    # a short path: the munge socket's name must fit in 108 bytes
    folder = Path(tempfile.mkdtemp(prefix="fer-slurm-"))
    cluster = Cluster(folder)
    try:
        for sub in ("run", "state", "spool", "log"):
            (folder / sub).mkdir(mode=0o755)
        key = folder / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        subprocess.run(["munged", "--force", f"--socket={folder}/run/munge.sock", f"--key-file={key}",
                        f"--log-file={folder}/log/munged.log", f"--pid-file={folder}/run/munged.pid",
                        f"--seed-file={folder}/state/munged.seed"], check=True, timeout=30)
        host = subprocess.run(["hostname", "-s"], capture_output=True, text=True, check=True).stdout.strip()
        mem_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 // 2
        (folder / "slurm.conf").write_text(CONF.format(
            host=host, dir=folder, cpus=cpus or os.cpu_count() or 1, mem_mb=mem_mb,
            ctld_port=_free_port(), d_port=_free_port()))
        subprocess.run(["slurmctld", "-i", "-f", str(folder / "slurm.conf")], env=cluster.env, check=True, timeout=30)
        subprocess.run(["slurmd", "-f", str(folder / "slurm.conf")], env=cluster.env, check=True, timeout=30)
        deadline = time.monotonic() + start_timeout
        while "idle" not in cluster.run("sinfo", "-h", "-o", "%T", check=False):
            if time.monotonic() > deadline:
                logs = "\n".join(p.read_text()[-2000:] for p in (folder / "log").glob("*.log"))
                raise RuntimeError(f"the local SLURM node did not come up in {start_timeout:.0f} s:\n{logs}")
            time.sleep(0.5)
        yield cluster
    finally:
        try:
            cluster.cancel_all()
        except Exception:  # noqa: BLE001 - the daemons may already be gone; stopping them matters more
            pass
        for daemon in ("slurmd", "slurmctld", "munged"):
            _kill_pidfile(folder / "run" / f"{daemon}.pid")
        shutil.rmtree(folder, ignore_errors=True)
