"""The real ``killkrill`` command in a subprocess, for tests of the CLI against real services.

``tests/integration/conftest.py`` puts this folder on ``sys.path``: ``from killkrill_command
import killkrill``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

__all__ = ["REPO", "killkrill"]

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
