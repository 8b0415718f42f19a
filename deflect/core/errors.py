"""Errors meant to be shown to the user.

The core raises these; the CLI turns them into an exit code and a message, the API into an
HTTP status. The core never imports the CLI or the web framework.
"""


class DeflectError(Exception):
    """Root of every error deflect raises on purpose. The message is for humans."""


class ConfigError(DeflectError):
    """A setting has an unsafe or impossible value."""


class InvalidInputError(DeflectError):
    """A request or a file is malformed. ``field`` names what is wrong, when known."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class NotReadyError(DeflectError):
    """Nothing to serve yet: no index has been built in this home."""


class BundleError(DeflectError):
    """A bundle is missing, corrupt, or was built with another embedder."""


class IngestError(DeflectError):
    """An ingest could not run at all (nothing usable in the source, for example)."""


class StoreError(DeflectError):
    """The event store cannot be opened, migrated, written or read."""
