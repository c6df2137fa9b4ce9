"""Run logs a user can read: a user error (``TagtreeError``) is one line in the run's logs (the
UI's Logs tab, the console), not a traceback repeated by every engine that sees it fail."""

from __future__ import annotations

import logging

from tagtree.errors import TagtreeError

# Loggers every flow and task run logs through (get_run_logger and Prefect's engines).
RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")


def user_error(exc: BaseException | None) -> TagtreeError | None:
    """The TagtreeError that ``exc`` is or wraps (Prefect re-raises a task's exception in the
    flow; a flow may wrap it), or None for anything else."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, TagtreeError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


class OneLineUserErrors(logging.Filter):
    """Drop the traceback of a record whose exception is a user error; the message names it
    with its text (``TagtreeError: no such file: x.jsonl``) instead of its repr."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        err = user_error(exc)
        if err is not None:
            message = record.getMessage().replace(repr(exc), f"{type(err).__name__}: {err}")
            if str(err) not in message:
                message += f": {err}"
            record.msg, record.args = message, ()
            record.exc_info, record.exc_text = None, None
        return True


def install() -> None:
    """Add the filter once to the run loggers (kept across Prefect's logging setup, which
    replaces handlers but not logger filters)."""
    for name in RUN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, OneLineUserErrors) for f in logger.filters):
            logger.addFilter(OneLineUserErrors())
