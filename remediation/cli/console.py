"""What the operator commands write to stderr besides their one-line errors: logs at the level `--verbose`,
`--debug` or `--only-show-errors` chose (as az's flags do), and a progress bar while long work runs.

Logs: WARNING and above by default; `--verbose` adds INFO, `--debug` DEBUG and the Azure SDK's and urllib3's own
logs (HTTP calls: method, URL, status; azure-core redacts headers it does not know, and the CLI's pipeline logs no
header at all). `--only-show-errors`: ERROR and above. Every line passes a filter that replaces the function key,
the client secret and any token the command holds, and anything shaped like a JWT, with `<redacted>`, whichever
logger wrote it: the second line of defence, as nothing is meant to log them.

Progress: a spinner, a pulsing (or filling) bar, what is awaited and the time spent, on stderr, only when stderr is
a terminal; it disappears when the work ends. Piped or redirected, nothing is drawn.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

# The app's loggers (remediation.*), and with --debug the SDK's and the HTTP client's.
APP_LOGGERS = ("remediation", "remediator")
DEBUG_LOGGERS = ("azure", "urllib3")
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
REDACTED = "<redacted>"

logger = logging.getLogger(__name__)


class _Redact(logging.Filter):
    def __init__(self, secrets: Callable[[], Iterable[str]]) -> None:
        super().__init__()
        self._secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        message = redact(record.getMessage(), self._secrets())
        record.msg, record.args = message, None
        if record.exc_info:  # a traceback could quote a value: shown only as its exception's redacted line
            record.msg = f"{message} ({redact(repr(record.exc_info[1]), self._secrets())})"
            record.exc_info, record.exc_text = None, None
        return True


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return _JWT.sub(REDACTED, text)


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler writing to whatever sys.stderr is when a record is emitted (tests redirect it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        pass


def level_of(args: Any) -> int:
    if getattr(args, "debug", False):
        return logging.DEBUG
    if getattr(args, "verbose", False):
        return logging.INFO
    if getattr(args, "only_show_errors", False):
        return logging.ERROR
    return logging.WARNING


@contextmanager
def logs(args: Any, secrets: Callable[[], Iterable[str]] = tuple) -> Iterator[None]:
    """Logs to stderr at the level the flags chose, redacted, while the command runs; as before afterwards."""
    level = level_of(args)
    handler = _Stderr()
    handler.setLevel(level)
    handler.addFilter(_Redact(secrets))
    debug = level == logging.DEBUG
    handler.setFormatter(logging.Formatter("%(levelname)s: %(name)s: %(message)s" if debug
                                           else "%(levelname)s: %(message)s"))
    names = APP_LOGGERS + (DEBUG_LOGGERS if debug else ())
    saved = {}
    for name in names:
        target = logging.getLogger(name)
        saved[name] = target.level
        target.setLevel(level)
        target.addHandler(handler)
    try:
        warning = getattr(args, "deprecated", None)
        if warning:
            logger.warning("%s", warning)
        yield
    finally:
        for name in names:
            target = logging.getLogger(name)
            target.removeHandler(handler)
            target.setLevel(saved[name])


class Progress:
    """What `progress` yields: `update(text)` says what is awaited now; `advance(done)` fills the bar (of `total`)."""

    def __init__(self, bar: Any = None, task: Any = None) -> None:
        self._bar, self._task = bar, task

    def update(self, text: str, done: float | None = None) -> None:
        if self._bar is not None:
            self._bar.update(self._task, description=text, **({} if done is None else {"completed": done}))


@contextmanager
def progress(text: str, total: float | None = None) -> Iterator[Progress]:
    """A transient progress bar on stderr while the block runs, if stderr is a terminal; else nothing at all.
    `total`: the bar fills as `update(..., done)` says; None: it pulses (work of unknown length)."""
    try:
        if not _isatty(sys.stderr):
            raise ImportError("not a terminal")
        from rich.console import Console
        from rich.progress import BarColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bar
    except ImportError:  # piped, or without the CLI's packages (a deployer's requirements.txt venv): no bar
        yield Progress()
        return

    console = Console(file=sys.stderr, markup=False, highlight=False, emoji=False)
    bar = Bar(SpinnerColumn(), TextColumn("{task.description}", markup=False), BarColumn(), TimeElapsedColumn(),
              console=console, transient=True, redirect_stdout=False, redirect_stderr=False)
    with bar:
        yield Progress(bar, bar.add_task(text, total=total))


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
