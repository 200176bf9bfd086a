"""Fashion-MNIST through torchvision's real ``FashionMNIST`` reader, from IDX files the tests write
(never the system's copy: Debian's location is pointed at a temporary folder)."""
from __future__ import annotations

import json
import urllib.error

import numpy as np
import pytest
import torch
import torchvision.datasets.mnist as tv_mnist

from cdg.data import fashion_mnist
from cdg.data.datasets import load_source
from cdg.train import main
from hwsim.trace.errors import UserError
from tests.cdg.data.fashion_files import write_fashion, write_idx
from tests.cdg.helpers import tiny


@pytest.fixture(autouse=True)
def no_system_copy(tmp_path, monkeypatch):
    """Debian's location, for these tests, is an empty folder unless a test fills it."""
    debian = tmp_path / "usr-share-datasets-fashion-mnist"
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", debian)
    return debian


@pytest.fixture
def reader_calls(monkeypatch):
    """Count the files torchvision's reader opens (its own module functions, as FashionMNIST calls them)."""
    calls = []
    real = tv_mnist.read_image_file

    def spy(path):
        calls.append(path)
        return real(path)

    monkeypatch.setattr(tv_mnist, "read_image_file", spy)
    return calls


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    "gz, torchvision_layout", [(True, False), (False, False), (False, True), (True, True)], ids=["gz", "plain", "tv", "tv-gz"]
)
def test_reads_the_written_idx_files_through_torchvision(tmp_path, reader_calls, gz, torchvision_layout):
    written = write_fashion(tmp_path / "fm", gz=gz, torchvision_layout=torchvision_layout)
    for split in ("train", "test"):
        source = load_source("fashion_mnist", split, tmp_path / "fm")
        images, labels = written[split]
        assert len(source) == len(labels) and source.labels.tolist() == labels.tolist()
        assert source.num_classes == 10 and source.classes[0] == "T-shirt/top"
        assert source.stored_size == 32 and source.images.shape == (len(labels), 3, 32, 32)
        # the 28 px item padded by 2 px of background, the gray channel replicated to RGB
        x = source.images.numpy()
        assert np.array_equal(x[:, 0, 2:30, 2:30], images)
        assert not x[:, :, :2].any() and not x[:, :, 30:].any() and not x[:, :, :, :2].any() and not x[:, :, :, 30:].any()
        assert np.array_equal(x[:, 0], x[:, 2])
        (batch, got), = list(source.iter_batches([[len(labels) - 1, 0]]))
        assert batch.is_contiguous() and torch.equal(batch, source.images[[len(labels) - 1, 0]])
        assert got.tolist() == [labels[-1], labels[0]]
    assert any(str(p).endswith("train-images-idx3-ubyte") for p in reader_calls)
    assert any(str(p).endswith("t10k-images-idx3-ubyte") for p in reader_calls)


def test_normalisation_is_the_training_set_statistics(tmp_path):
    written = write_fashion(tmp_path)
    train, test = load_source("fashion_mnist", "train", tmp_path), load_source("fashion_mnist", "test", tmp_path)
    padded = np.pad(written["train"][0], ((0, 0), (2, 2), (2, 2))).astype(np.float64) / 255
    assert train.mean == test.mean and train.std == test.std
    assert train.mean[0] == pytest.approx(padded.mean(), rel=1e-12)
    assert train.std[0] == pytest.approx(padded.std(), rel=1e-12)


def test_other_image_sizes_resize_the_32px_frame(tmp_path):
    write_fashion(tmp_path)
    source = load_source("fashion_mnist", "test", tmp_path, image_size=16)
    assert source.stored_size == 16 and source.images.shape[1:] == (3, 16, 16)


def test_debian_location_is_the_default(no_system_copy, reader_calls):
    written = write_fashion(no_system_copy, gz=True)
    source = load_source("fashion_mnist", "test", None)
    assert source.labels.tolist() == written["test"][1].tolist()
    assert reader_calls


def test_missing_data_names_both_ways(tmp_path):
    for data_dir in (None, tmp_path / "empty"):
        with pytest.raises(UserError) as exc:
            load_source("fashion_mnist", "train", data_dir)
        message = _one_line(exc)
        assert "apt-get install dataset-fashion-mnist" in message
        assert "data.data_dir" in message and "data.download=true" in message
    with pytest.raises(UserError) as exc:
        load_source("fashion_mnist_cluttered", "train", None, download=True)
    assert "needs data.data_dir" in _one_line(exc)


def test_download_offline_is_one_line(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tv_mnist, "download_and_extract_archive", offline)
    with pytest.raises(UserError) as exc:
        load_source("fashion_mnist", "train", tmp_path, download=True)
    message = _one_line(exc)
    assert "download" in message and "failed" in message and str(tmp_path) in message


def test_corrupt_files_are_a_user_error(tmp_path):
    write_fashion(tmp_path, gz=False)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x09garbage")
    with pytest.raises(UserError, match="cannot read the IDX files"):
        load_source("fashion_mnist", "test", tmp_path)
    write_fashion(tmp_path / "other", gz=False)
    write_idx(tmp_path / "other" / "train-images-idx3-ubyte", np.zeros((30, 20, 20)), gz=False)
    with pytest.raises(UserError, match="expected N x 28 x 28"):
        load_source("fashion_mnist", "train", tmp_path / "other")


@pytest.mark.parametrize("dataset", ["fashion_mnist", "fashion_mnist_cluttered"])
def test_train_runs_end_to_end(tmp_path, dataset):
    write_fashion(tmp_path / "data", n_train=300, n_test=100)
    summary = main(tiny(tmp_path, "run", f"data.dataset={dataset}", f"data.data_dir={tmp_path / 'data'}"))
    run_dir = tmp_path / "run"
    assert json.loads((run_dir / "summary.json").read_text()) == summary
    assert f"dataset: {dataset}" in (run_dir / "config.yaml").read_text()
