"""Loading and exporting models without changing anyone's logging.

The libraries deflect loads models with are chatty (transformers' verbosity and progress
bars; onnxruntime's quantizer logs hints on the root logger). These context managers quiet
them for the duration of one call and restore every setting afterwards, so a library call
never changes the process's logging (a warning logged later, or ``--verbose``, still shows).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers' verbosity at "error" and its progress bars off, restored on exit."""
    import transformers.utils.logging as tlog

    verbosity = tlog.get_verbosity()
    bars = tlog.is_progress_bar_enabled()
    tlog.set_verbosity_error()
    tlog.disable_progress_bar()
    try:
        yield
    finally:
        tlog.set_verbosity(verbosity)
        if bars:
            tlog.enable_progress_bar()


class _BelowError(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


@contextmanager
def quiet_root_logger() -> Iterator[None]:
    """Drop records below ERROR logged directly on the root logger (``logging.warning(...)``
    in a library), for the duration of the block.

    Records of named loggers (``deflect.*``) pass untouched: a logger's filter applies only to
    records created on that logger. Module-level ``logging.warning`` also configures the root
    logger when it has no handler; any handler added during the block is removed again."""
    root = logging.getLogger()
    handlers = list(root.handlers)
    flt = _BelowError()
    root.addFilter(flt)
    try:
        yield
    finally:
        root.removeFilter(flt)
        for h in list(root.handlers):
            if h not in handlers:
                root.removeHandler(h)
