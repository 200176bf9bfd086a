"""``python -m cdg.masks``: the overlay PNG of a run, its size and pixels, and one-line errors."""
import shutil
from pathlib import Path

import pytest
import torch
from torchvision.io import read_image

from cdg.config import load_config, to_yaml
from cdg.masks import ON, TINT, main, tint
from hwsim.trace.layout import CONFIG_FILE, TRACE_DIR

from tests.cdg.helpers import run_cli

TRACE = Path(__file__).resolve().parents[1] / "data" / "cdg_digits_trace"


@pytest.fixture
def run_dir(tmp_path):
    """A digits run directory (16 px, the committed trace) without a checkpoint: the tool needs none."""
    d = tmp_path / "runs" / "digits_cdg"
    d.mkdir(parents=True)
    cfg = load_config(None, ["data.image_size=16", "model.width=0.25", "gate.method=cdg", "gate.target_reduction=2"])
    (d / CONFIG_FILE).write_text(to_yaml(cfg))
    shutil.copytree(TRACE, d / TRACE_DIR)
    return d


def test_png_has_a_row_per_image_and_a_column_per_stage(run_dir, tmp_path):
    out = tmp_path / "pictures"
    (path,) = main(["--run", str(run_dir), "--images", "3", "--out", str(out)])
    assert path == out / "digits_cdg.png"
    png = read_image(str(path))
    tile = 64  # 16 px upscaled x4 to reach TILE_MIN
    assert tuple(png.shape) == (3, 3 * (tile + 2) + 2, 5 * (tile + 2) + 2)  # 3 images; input + 4 stages
    first = png[:, 2:2 + tile, 2:2 + tile].float() / 255  # image 0, the input column
    assert first.std() > 0.05  # a digit, not a blank tile


def test_tint_is_the_documented_blend():
    images = torch.full((1, 3, 4, 4), 0.5)
    maps = torch.ones(1, 2, 2)
    expected = (1 - TINT) * 0.5 + TINT * torch.tensor(ON)
    assert torch.allclose(tint(images, maps)[0, :, 3, 3], expected)


def test_too_many_images_is_one_line_exit_2(run_dir, tmp_path):
    proc = run_cli("-m", "cdg.masks", "--run", str(run_dir), "--images", "65", "--out", str(tmp_path / "p"))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "stores masks of 64 images" in proc.stderr


def test_two_runs_of_one_name_are_refused(run_dir, tmp_path):
    other = tmp_path / "elsewhere" / run_dir.name
    shutil.copytree(run_dir, other)
    with pytest.raises(SystemExit) as exc:
        main(["--run", str(run_dir), "--run", str(other), "--out", str(tmp_path / "p")])
    assert exc.value.code == 2 and not (tmp_path / "p").exists()
