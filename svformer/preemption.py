"""Stopping cleanly when a cluster asks: SIGTERM or SIGINT to every process of a job, once or more.

Slurm (scancel, a time limit, preemption), Kubernetes and a terminal's Ctrl-C signal every process of
a job at once: the ranks, the deepspeed launcher, the DataLoader workers, prep's ffmpeg children.
Under the deepspeed launcher a rank is signalled again by the launcher itself, which terminates the
process tree of each rank it started (and once more when the launcher is signalled twice). So:

- A training rank records the first signal; the loop finishes its step, every rank agrees through
  the step's all-reduce, saves one checkpoint and exits with EXIT_STOPPED. Repeated signals change
  nothing: a duplicate delivery must not break the clean stop, and whoever wants the process gone
  at once has SIGKILL (Slurm sends it after KillWait anyway, the deepspeed launcher 30 s after it
  forwarded the signal).
- DataLoader workers ignore both signals (`ignore_stop_signals`, their `worker_init_fn`): their
  parent shuts them down when it exits, and a worker dying of the signal would otherwise turn the
  stop into a "DataLoader worker (pid ...) is killed by signal" crash before anything is saved.
- prep stops at once (`StopRequest(interrupt=...)` raises `Stopped` in the main thread): the shard
  being written is left as a temporary file, which the rerun deletes; a video whose ffmpeg the same
  signal stopped (`ffmpeg_stopped`) is not a failed video, so the manifest stays clean.
"""

from __future__ import annotations

import re
import signal
import threading
from types import FrameType

EXIT_STOPPED = 75
"""Exit code of a process stopped by SIGTERM/SIGINT after it left its outputs resumable: rerun the
same command to resume (75 is EX_TEMPFAIL, "try again later")."""
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stopped(Exception):
    """A run stopped by SIGTERM/SIGINT with its outputs resumable; the CLI prints it and exits EXIT_STOPPED."""


def signal_name(signum: int) -> str:
    """'SIGTERM' for 15."""
    return signal.Signals(signum).name


class StopRequest:
    """Records the first SIGTERM/SIGINT while active (`with StopRequest() as stop:` or `.restore()`).

    Args:
        interrupt: None to only record (the training loop reads `signal` once per step); a message
            to raise `Stopped(message.format(signal=NAME))` in the main thread at the first signal.

    Later signals are ignored. Handlers can only be installed from the main thread; elsewhere
    (a library caller's thread) nothing is installed and the caller's own handling stays.
    """

    def __init__(self, interrupt: str | None = None) -> None:
        self.signal: int | None = None
        self.interrupt = interrupt
        self.previous: dict[int, object] = {}
        if threading.current_thread() is not threading.main_thread():
            return
        self.previous = {sig: signal.signal(sig, self._handle) for sig in STOP_SIGNALS}
        # A file-size limit (ulimit -f) then fails a checkpoint or shard write with EFBIG, which is
        # reported in one line, instead of killing the process mid-write.
        self.previous[signal.SIGXFSZ] = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    @property
    def requested(self) -> bool:
        """Whether a stop signal arrived."""
        return self.signal is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is not None:  # a duplicate (the launcher's forward, a second scancel): same stop
            return
        self.signal = signum
        if self.interrupt is not None:
            raise Stopped(self.interrupt.format(signal=signal_name(signum)))

    def restore(self, stopping: bool = False) -> None:
        """Put back the handlers that were there before; when stopping (a signal arrived), ignore the stop
        signals instead: the process is on its way out, and a late duplicate must not turn its exit code
        into death by SIGTERM."""
        stopping = stopping or self.signal is not None
        for sig, handler in self.previous.items():
            signal.signal(sig, signal.SIG_IGN if stopping and sig in STOP_SIGNALS else handler)
        self.previous = {}

    def __enter__(self) -> StopRequest:
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> None:
        self.restore(stopping=isinstance(exc, Stopped))  # also a Stopped raised elsewhere (ffmpeg signalled)


def ignore_stop_signals(worker_id: int = 0) -> None:
    """DataLoader `worker_init_fn`: the worker ignores SIGTERM/SIGINT; its parent rank stops it."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


# ffmpeg catches SIGTERM/SIGINT, writes this and exits 255 (or hard-exits after more than three).
_FFMPEG_SIGNALLED = re.compile(r"Exiting normally, received signal (\d+)|Received > 3 system signals")


def ffmpeg_stopped(returncode: int, stderr: str) -> bool:
    """Whether an ffmpeg run ended because it was sent SIGTERM/SIGINT (not because of its input)."""
    if returncode in (-signal.SIGTERM, -signal.SIGINT):
        return True
    match = _FFMPEG_SIGNALLED.search(stderr)
    return returncode != 0 and match is not None and (match.group(1) is None or int(match.group(1)) in STOP_SIGNALS)
