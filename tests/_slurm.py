"""Test helper: a real one-node Slurm cluster on 127.0.0.1 (munged, slurmctld, slurmd from Debian's
slurm-wlm), configured in a temp dir, for the job scripts under configs/slurm/.

Everything a test needs runs without systemd or cgroups: proctrack/linuxproc follows a job's
processes by parent pid, task/none binds nothing, and the daemons run in the foreground in their
own process groups. Jobs run as root (the daemons' user), with the submitter's environment.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

PACKAGES = ("slurm-wlm", "munge")
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "scancel")


def exe(name: str) -> str:
    """The path of a Slurm or munge program (the daemons live in /usr/sbin, often not on PATH)."""
    return shutil.which(name) or str(Path("/usr/sbin", name))


def install() -> str | None:
    """Install slurm-wlm and munge with apt-get when they are missing; None, or why they cannot be."""
    if all(Path(exe(d)).exists() for d in DAEMONS):
        return None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "slurm-wlm and munge are not installed, and apt-get as root is not available to install them"
    quiet = {"DEBIAN_FRONTEND": "noninteractive", **os.environ}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *PACKAGES]):
        done = subprocess.run(cmd, env=quiet, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            return f"`{' '.join(cmd)}` failed: {last[0]}"
    missing = [d for d in DAEMONS if not Path(exe(d)).exists()]
    return f"installed {' and '.join(PACKAGES)}, but {missing} are still missing" if missing else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _node_line() -> str:
    """This machine's NodeName line from `slurmd -C` (real CPUs, sockets, cores, memory)."""
    out = subprocess.run([exe("slurmd"), "-C"], capture_output=True, text=True, timeout=60, check=True).stdout
    fields = dict(re.findall(r"(\w+)=(\S+)", out.splitlines()[0]))
    keep = ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore", "RealMemory")
    return " ".join(f"{k}={fields[k]}" for k in keep if k in fields)


class LocalSlurm:
    """munged + slurmctld + slurmd under `root`; `env` is what sbatch/scontrol/scancel need."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.host = socket.gethostname().split(".")[0]
        self.procs: dict[str, subprocess.Popen] = {}
        self.conf = root / "slurm.conf"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))

    def _write_config(self) -> None:
        r = self.root
        for sub in ("state", "spool"):
            (r / sub).mkdir(exist_ok=True)
        self.conf.write_text(
            f"""ClusterName=svtest
SlurmctldHost={self.host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={r}/munge.sock
CredType=cred/munge
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobRequeue=1
# seconds from SIGTERM to SIGKILL: a tiny model finishes its step and saves well within
KillWait=30
MinJobAge=600
ReturnToService=2
MailProg=/bin/true
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
SlurmctldDebug=info
SlurmdDebug=info
NodeName={self.host} NodeAddr=127.0.0.1 {_node_line()} State=UNKNOWN
PartitionName=debug Nodes={self.host} Default=YES MaxTime=INFINITE State=UP
"""
        )

    def _start(self, name: str, cmd: list[str]) -> None:
        log = open(self.root / f"{name}.log", "w")
        self.procs[name] = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=self.env
        )

    def start(self, timeout: float = 60) -> None:
        """Start the daemons and wait until the node is idle; raises RuntimeError with the logs if not."""
        r = self.root
        r.chmod(0o755)  # munged wants its socket's directory reachable by all
        key = r / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        self._write_config()
        self._start(
            "munged",
            [exe("munged"), "-F", f"--socket={r}/munge.sock", f"--key-file={key}", f"--pid-file={r}/munged.pid",
             f"--seed-file={r}/munged.seed", f"--log-file={r}/munged.file.log"],
        )  # fmt: skip
        self._wait(lambda: (r / "munge.sock").exists(), timeout, "munged did not create its socket")
        self._start("slurmctld", [exe("slurmctld"), "-D", "-f", str(self.conf)])
        self._wait(lambda: self.scontrol("ping").returncode == 0, timeout, "slurmctld does not answer")
        self._start("slurmd", [exe("slurmd"), "-D", "-f", str(self.conf)])
        self._wait(lambda: "idle" in self.node_state(), timeout, "the node did not become idle")

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.time() + timeout
        while not ready():
            dead = [n for n, p in self.procs.items() if p.poll() is not None]
            if dead or time.time() > deadline:
                raise RuntimeError(f"{what}; exited: {dead}\n{self.logs()}")
            time.sleep(0.5)

    def logs(self, tail: int = 30) -> str:
        """The last lines of every daemon's log."""
        parts = []
        for name in self.procs:
            lines = (self.root / f"{name}.log").read_text(errors="replace").splitlines()[-tail:]
            parts.append(f"--- {name}\n" + "\n".join(lines))
        return "\n".join(parts)

    def run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        """A Slurm client command against this cluster (exit code 124 when slurmctld does not answer in time)."""
        try:
            done = subprocess.run(list(cmd), env=self.env, capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired:  # a busy machine can stall slurmctld; pollers ask again
            done = subprocess.CompletedProcess(list(cmd), 124, "", "no answer in 120 s")
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.strip()}\n{self.logs()}")
        return done

    def scontrol(self, *args: str) -> subprocess.CompletedProcess:
        return self.run("scontrol", *args, check=False)

    def node_state(self) -> str:
        out = self.scontrol("show", "node", self.host).stdout
        match = re.search(r"State=(\S+)", out)
        return match.group(1).lower() if match else ""

    def sbatch(self, *args: str, env: dict | None = None, cwd: Path | None = None) -> str:
        """Submit a job; returns its id (array jobs: the array's id)."""
        done = subprocess.run(
            ["sbatch", "--parsable", *args],
            env={**self.env, **(env or {})},
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0:
            raise RuntimeError(f"sbatch {' '.join(args)}: {done.stderr.strip()}\n{self.logs()}")
        return done.stdout.strip().split(";")[0]

    def job(self, job_id: str) -> list[dict[str, str]]:
        """`scontrol show job` fields, one dict per job (an array job gives one per task)."""
        out = self.scontrol("show", "job", "--oneliner", job_id).stdout
        return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in out.splitlines() if line.strip()]

    def state(self, job_id: str) -> str:
        """The job's JobState (of its first record); "" when slurmctld did not answer."""
        records = self.job(job_id)
        return records[0]["JobState"] if records else ""

    def wait_for(self, job_id: str, done, timeout: float, what: str) -> list[dict[str, str]]:
        """Poll `scontrol show job` until `done(records)`; raises AssertionError with the logs on timeout."""
        deadline = time.time() + timeout
        while True:
            records = self.job(job_id)
            if records and done(records):
                return records
            if time.time() > deadline:
                raise AssertionError(f"job {job_id}: {what} not reached in {timeout:.0f} s: {records}\n{self.logs()}")
            time.sleep(1)

    def stop(self) -> None:
        """Cancel every job, then stop the daemons (their whole process groups)."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            self.run("scancel", "--full", "--user=root", check=False)
            deadline = time.time() + 60
            busy = re.compile(r"JobState=(RUNNING|COMPLETING|CONFIGURING)")
            while time.time() < deadline and busy.search(self.scontrol("show", "job").stdout):
                time.sleep(1)
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
