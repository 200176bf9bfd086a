"""The base of every config section (torch-free): unknown keys and wrong types are errors.

It sits below ``cdg.config`` so that a package can declare its own section (``cdg.data``'s
``aug``) without importing the config that assembles them.
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """Strict section: unknown keys and wrong types are errors, never ignored."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
