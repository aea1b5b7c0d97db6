"""The real ``killkrill`` command in a subprocess, for tests of the CLI against real services.

``killkrill`` runs a command to its end; :class:`KillkrillProcess` runs a long-running one
(receivers, workers) that a test stops. ``tests/integration/conftest.py`` puts this folder
on ``sys.path``: ``from killkrill_command import killkrill``.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["REPO", "KillkrillProcess", "killkrill"]

REPO = Path(__file__).resolve().parents[2]


def killkrill(redis_url: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``killkrill ARGS --redis-url REDIS_URL``; its exit code and output, as text. The
    output is also echoed to the test's own stdout/stderr, so the leak guard reads it."""
    done = subprocess.run(
        [sys.executable, "-m", "killkrill", *args, "--redis-url", redis_url],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
        check=False,
    )
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    return done


class KillkrillProcess:
    """A long-running ``killkrill ARGS`` (a receiver, a worker) in a subprocess, its output
    in ``log_path``. :meth:`wait` and :meth:`stop` check that it stopped cleanly: in time
    (else its task and thread stacks are dumped into the failure, see
    ``killkrill.stackdump``) and without its stop being cut off at ``stop_timeout``."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path | str) -> None:
        self.log_path = Path(log_path)
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "killkrill", *args],
            env=env,
            cwd=REPO,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def log_lines(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far (other lines skipped)."""
        lines = []
        for line in self.output().splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
        return lines

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float = 30) -> int:
        """Wait for the exit; its code. Fails (with the output and stacks) past ``timeout``
        or when the stop was cut off (``did not stop within``)."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            self.signal(signal.SIGUSR1)  # killkrill.stackdump: what it waits for
            time.sleep(1)
            raise AssertionError(
                f"killkrill {' '.join(self.proc.args[3:5])} did not exit in {timeout} s:\n"  # type: ignore[index]
                f"{self.output()[-12000:]}"
            ) from exc
        finally:
            self._log.close()
        out = self.output()
        if "did not stop within" in out:
            raise AssertionError(f"the stop was cut off at its stop_timeout:\n{out[-12000:]}")
        return code

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then :meth:`wait`."""
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def close(self, grace: float = 20) -> None:
        """Test teardown: SIGTERM if still running, SIGKILL after ``grace`` seconds; never
        fails (a test that cares about the exit calls :meth:`stop` itself)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
