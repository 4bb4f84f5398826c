"""Errors a user can fix. The CLI turns any of these into one line and exit code 2."""
from __future__ import annotations


class UserError(ValueError):
    """Bad input: the message says what is wrong and what to do."""


class ModelNotFoundError(UserError):
    pass


def user_error_types() -> tuple[type[BaseException], ...]:
    """Every exception type that means 'bad input', wherever it is defined."""
    from .corpus import CorpusError, UnknownLanguageError
    from .models.adapters import UnsupportedArchitectureError

    return (UserError, CorpusError, UnknownLanguageError, UnsupportedArchitectureError)
