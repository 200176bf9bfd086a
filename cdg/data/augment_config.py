"""The ``aug`` config section: user overrides of the SSL methods' augmentation presets.

Declared here, beside the augmentation it configures, and assembled into the config by
``cdg.config``; torch-free, so loading a config does not import torch or kornia.
"""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from cdg.sections import Section


class AugmentConfig(Section):
    crop_min_scale: Optional[float] = Field(None, gt=0, le=1, description="RandomResizedCrop min area; null = method preset")
    hflip: bool = Field(True, description="random horizontal flip")
    jitter_strength: float = Field(1.0, ge=0, description="multiplies the colour-jitter magnitudes")
    jitter_prob: float = Field(0.8, ge=0, le=1)
    grayscale_prob: float = Field(0.2, ge=0, le=1)
    blur: Literal["auto", "on", "off"] = Field("auto", description="Gaussian blur; auto = on for images >= 64 px")
    solarize: Literal["auto", "off"] = Field("auto", description="solarize where the method uses it (BYOL)")
