"""The library's error for bad input: what a caller passed was wrong, not a bug in jaxnets.

``InputError`` is a ``ValueError`` (so ``except ValueError`` keeps working); ``InputTypeError``
is both an ``InputError`` and a ``TypeError`` (a wrong dtype). The ``jaxnets`` command reports
these as one line with exit status 2; any other exception is a bug (exit status 1, traceback
written to a file).
"""

from __future__ import annotations

__all__ = ["InputError", "InputTypeError"]


class InputError(ValueError):
    """Bad input: the message names the argument, what was expected and what arrived.

    >>> try:
    ...     raise InputError("batch_size must be a positive int, got 0")
    ... except ValueError as e:
    ...     print(e)
    batch_size must be a positive int, got 0
    """


class InputTypeError(InputError, TypeError):
    """Bad input of the wrong type or dtype (also a ``TypeError``)."""
