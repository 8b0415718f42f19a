"""The control group: a stable, salted-hash assignment of sessions to ``treatment`` or ``control``.

A session in the control group is shown nothing (the server still records what it would
have shown); comparing its submit rate with the treatment group's measures how many
tickets the suggestions really avoid (docs/deflection.md).
"""

from __future__ import annotations

import hashlib

TREATMENT = "treatment"
CONTROL = "control"


def bucket(session_id: str, salt: str) -> float:
    """A number in [0, 1), uniform over sessions, fixed for a given session and salt."""
    digest = hashlib.sha256(f"{salt}\x00{session_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_variant(session_id: str | None, control_share: float, salt: str) -> str:
    """``control`` for a ``control_share`` of sessions, else ``treatment``.

    A request without a session id cannot be followed, so it is always ``treatment``.
    """
    if not session_id or control_share <= 0:
        return TREATMENT
    return CONTROL if bucket(session_id, salt) < control_share else TREATMENT
