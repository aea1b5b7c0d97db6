"""Suite-wide check: no secret of the test run ever reaches a log line or a process's output.

The fixtures log in to the services with secrets made for the run (a Redis ACL user's
password, a PostgreSQL role's password, Elasticsearch basic-auth passwords and API keys:
see ``tests/integration/conftest.py``), each made by :meth:`LeakGuard.secret`, so the suite
knows every one. This plugin then fails the run when one shows up in:

* a captured stdout/stderr/log section of any test report (setup, call or teardown): that
  phase's report turns failed, naming the test, the section and the line (the secret is
  masked there, and in every other section, so the report does not leak it again);
* a file under pytest's basetemp (worker logs, a proxy's logs...): a test's own
  ``tmp_path`` is read when the test ends (its teardown fails, naming file and line), and
  the whole basetemp once more at the end of the session (for session fixtures' files),
  which then fails the run.

Loaded by ``tests/conftest.py``; with ``-p leak_guard`` (this folder on ``sys.path``) it
works in any pytest run. Tests ask for a secret through the ``leak_guard`` fixture.
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["Finding", "LeakGuard"]

_MIN_LENGTH = 12
"""Shorter values would match by chance."""
_MAX_FILE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Finding:
    """One line that holds a secret: where, which secret (by label), the line masked."""

    where: str
    line: int
    label: str
    text: str

    def __str__(self) -> str:
        return f"{self.where}:{self.line}: holds the {self.label}: {self.text}"


class LeakGuard:
    """The run's secrets and the search for them (pure: text in, findings out)."""

    def __init__(self) -> None:
        self._labels: dict[str, str] = {}
        self._secret_files: set[Path] = set()

    def secret(self, label: str) -> str:
        """A new random secret (hex, so every encoding of it in a URL is the same text),
        registered under ``label`` (e.g. ``"Redis ACL password"``)."""
        value = f"kk{secrets.token_hex(16)}"
        self.register(value, label)
        return value

    def register(self, value: str, label: str) -> None:
        """Watch for ``value`` (say what it is in ``label``; the value is never printed)."""
        if len(value) < _MIN_LENGTH:
            raise ValueError(f"{label}: a secret to watch needs {_MIN_LENGTH}+ characters")
        self._labels[value] = label

    def register_basic_auth(self, username: str, password: str, label: str) -> None:
        """Also watch for the ``Authorization: Basic`` form of ``username:password``."""
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        self.register(token, f"{label} (as a basic-auth header)")

    def secret_file(self, path: Path, value: str) -> Path:
        """Write ``value`` to ``path`` (mode 0600), a file that holds a secret on purpose
        (like a mounted Secret): the file scan leaves it alone. Returns ``path``."""
        path.write_text(value + "\n", encoding="utf-8")
        path.chmod(0o600)
        self._secret_files.add(path.resolve())
        return path

    def watches(self, value: str) -> bool:
        """Whether ``value`` is one of the secrets searched for."""
        return value in self._labels

    @property
    def labels(self) -> list[str]:
        return sorted(set(self._labels.values()))

    def mask(self, text: str) -> str:
        """``text`` with every secret replaced by ``<secret: label>``."""
        for value, label in self._labels.items():
            text = text.replace(value, f"<secret: {label}>")
        return text

    def findings(self, text: str, where: str) -> list[Finding]:
        """The lines of ``text`` holding a secret (1-based line numbers)."""
        if not self._labels or not any(value in text for value in self._labels):
            return []
        found = []
        for number, line in enumerate(text.splitlines(), 1):
            for value, label in self._labels.items():
                if value in line:
                    found.append(Finding(where, number, label, self.mask(line)[:300]))
        return found

    def scan_files(self, root: Path, *, skip: set[Path] | None = None) -> list[Finding]:
        """:meth:`findings` of every regular file under ``root`` (paths shown relative to
        ``root``'s parent, so they start with the test's own directory)."""
        found: list[Finding] = []
        for path in sorted(_files(root)):
            if path.resolve() in self._secret_files:
                continue
            if skip is not None:
                if path in skip:
                    continue
                skip.add(path)
            try:
                data = path.read_bytes()[:_MAX_FILE_BYTES]
            except OSError:
                continue  # a socket, or gone meanwhile
            text = data.decode("utf-8", errors="replace")
            found.extend(self.findings(text, str(path.relative_to(root.parent))))
        return found


def _files(root: Path) -> Iterable[Path]:
    """Regular files under ``root``, each once (symlinks, like pytest's ``*current``
    directories, are not followed)."""
    for folder, _dirs, names in os.walk(root):
        for name in names:
            path = Path(folder, name)
            if path.is_file() and not path.is_symlink():
                yield path


_GUARD = pytest.StashKey[LeakGuard]()
_SCANNED = pytest.StashKey[set[Path]]()
_SESSION_FINDINGS = pytest.StashKey[list[Finding]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_GUARD] = LeakGuard()
    config.stash[_SCANNED] = set()
    config.stash[_SESSION_FINDINGS] = []


@pytest.fixture(scope="session")
def leak_guard(pytestconfig: pytest.Config) -> LeakGuard:
    """The run's :class:`LeakGuard`: ``leak_guard.secret(label)`` makes a watched secret."""
    return pytestconfig.stash[_GUARD]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    guard = item.config.stash[_GUARD]
    found: list[Finding] = []
    sections = []
    for name, content in report.sections:
        if name.endswith(f" {call.when}"):  # a report holds the sections of earlier phases
            found.extend(guard.findings(content, f"{item.nodeid} [{name}]"))
        sections.append((name, guard.mask(content)))
    report.sections = sections
    if call.when == "teardown":
        tmp = _tmp_path_of(item)
        if tmp is not None:
            found.extend(guard.scan_files(tmp, skip=item.config.stash[_SCANNED]))
    if found:
        lines = "\n".join(f"  {finding}" for finding in found)
        earlier = f"\n(the test itself: {report.outcome})" if report.outcome != "passed" else ""
        report.outcome = "failed"
        report.longrepr = (
            f"a secret of the test run leaked into output or a log line of {item.nodeid}:\n"
            f"{lines}{earlier}\nShow credentials redacted (killkrill.config.redact_url)."
        )
    elif report.longrepr is not None and guard.findings(str(report.longrepr), item.nodeid):
        report.longrepr = guard.mask(str(report.longrepr))  # a failure message, not a log
    return report


def _tmp_path_of(item: pytest.Item) -> Path | None:
    """The test's ``tmp_path`` when it (or one of its fixtures) used one."""
    tmp = (getattr(item, "funcargs", None) or {}).get("tmp_path")
    return tmp if isinstance(tmp, Path) else None


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    factory = getattr(config, "_tmp_path_factory", None)
    if factory is None:
        return
    try:
        basetemp = factory.getbasetemp()
    except OSError:
        return
    found = config.stash[_GUARD].scan_files(basetemp, skip=config.stash[_SCANNED])
    if found:
        config.stash[_SESSION_FINDINGS].extend(found)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    found = terminalreporter.config.stash.get(_SESSION_FINDINGS, [])
    if found:
        terminalreporter.section("secrets leaked into files under basetemp", red=True)
        for finding in found:
            terminalreporter.line(str(finding))
