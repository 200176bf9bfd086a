"""The printed table: no ``-0.0%`` from rounding residues, ``-`` for undefined ratios, real negatives kept."""
import math

from hwsim.report import _cell


def test_rounding_residue_prints_as_zero():
    assert _cell("{:>7.1%}", 7, -1e-17) == "   0.0%"
    assert _cell("{:>8.3f}", 8, -4e-5) == "   0.000"


def test_undefined_and_real_negative_values():
    assert _cell("{:>8.1%}", 8, math.nan) == "       -"
    assert _cell("{:>7.1%}", 7, -0.05) == "  -5.0%"
