"""The shared kernel: what every package may import without importing the application.

Errors meant for the user (:mod:`deflect.core.errors`), the data home's layout
(:mod:`deflect.core.datahome`) and durable atomic writes (:mod:`deflect.core.atomic`).
Nothing here imports another part of deflect.
"""
