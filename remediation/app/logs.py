"""Log lines hold no control characters from the input: one record is one line, and nothing in it can move a
terminal's cursor or forge a line of its own.

`install()` wraps the process's log record factory once, so every record of the app's loggers (`remediator`,
`remediation` and their children, whichever module logs) has its message formatted and its C0 and C1 control
characters (and the Unicode line and paragraph separators) escaped as `\\n`, `\\r`, `\\t` or `\\xNN` before any
handler sees it, whether the text came in the message or its arguments. A filter on a logger would see only that
logger's own records, not its children's; a handler's filter, only that handler's. Tracebacks (`exc_info`) are
left as Python formats them.
"""

from __future__ import annotations

import logging
import re

from remediation.telemetry import LOGGER_NAMES  # function_app's logger, and every remediation module's

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_controls(text: str) -> str:
    """`text` with each control character written out, e.g. ESC as `\\x1b` and a newline as `\\n`."""
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                                             else f"\\u{ord(m.group()):04x}"), text)


def install(names: tuple[str, ...] = LOGGER_NAMES) -> None:
    """Escape control characters in every record of the loggers `names` (and their children). Idempotent."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "escapes_controls", False):
        return

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if record.name.split(".", 1)[0] in names:
            _escape(record)
        return record

    factory.escapes_controls = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def _escape(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a bad format string: logging reports it when the record is emitted
        return
    if _CONTROL.search(message):
        record.msg, record.args = escape_controls(message), None

