"""scripts/mask_sensitivity.py: the iid masks keep each image's density; the table has every gated layer."""
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO / "scripts"))
import mask_sensitivity  # noqa: E402


def test_iid_masks_keep_each_images_density_and_lose_the_layout():
    rng = np.random.default_rng(0)
    blocks = np.zeros((3, 8, 32, 32), bool)
    blocks[0, :, :16] = True                      # image 0: top half on (density 0.5), image 1: off
    blocks[2] = True                              # image 2: all on
    iid = mask_sensitivity.iid_like(blocks, rng)
    assert iid.shape == blocks.shape
    assert abs(iid[0].mean() - 0.5) < 0.03 and not iid[1].any() and iid[2].all()
    assert abs(iid[0, :, 16:].mean() - 0.5) < 0.05  # the on half is no longer where it was


def test_table_lists_every_gated_layer_of_the_committed_trace(capsys):
    trace = str(REPO / "tests" / "data" / "cdg_digits_trace")
    assert mask_sensitivity.main(["--trace", trace, "--accel", str(REPO / "accel_configs" / "systolic_32x32_os.yaml")]) == 0
    out = capsys.readouterr().out
    assert out.count("| layer | decision density") == 1 and "| **network** |" in out
    assert sum(line.startswith("| layer") and "conv" in line for line in out.splitlines()) == 16
