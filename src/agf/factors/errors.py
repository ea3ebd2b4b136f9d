"""The typed error of the factors stage."""

from __future__ import annotations


class FactorError(RuntimeError):
    """Artist group factors cannot be built or loaded; the message names the file or setting and the fix."""
