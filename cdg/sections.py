"""The base of every config section (torch-free): unknown keys and wrong types are errors.

It sits below ``cdg.config`` so that a package can declare its own section (``cdg.data``'s
``aug``) without importing the config that assembles them.
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from hwsim.trace.strict import scalar_problem


class Section(BaseModel):
    """Strict section: unknown keys and wrong types are errors, never ignored; no boolean for a
    number, no integer beyond 64 bits, no infinite or NaN float (``hwsim.trace.strict``)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _strict_scalars(cls, value: Any, info: ValidationInfo) -> Any:
        problem = scalar_problem(cls.model_fields[info.field_name].annotation, value)
        if problem is not None:
            raise PydanticCustomError("strict_scalar", problem)  # no 'Value error, ' prefix
        return value
