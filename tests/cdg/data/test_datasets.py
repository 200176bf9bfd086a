"""Data sources: digits in memory, CIFAR through torchvision's reader, ImageNet-100 via ImageFolder.

Every data set here is written by the test itself (tiny CIFAR pickles, a few JPEGs); nothing is
downloaded.
"""
from __future__ import annotations

import os
import pickle
import re
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from cdg.data.catalog import DATASETS
from cdg.data.datasets import default_image_size, load_source, stored_size_for
from cdg.data.imagenet import imagenet100_classes
from cdg.data.sources import as_index_list
from hwsim.trace.errors import UserError


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- registry


def test_names_and_default_sizes():
    assert DATASETS == ("digits", "cifar10", "cifar100", "imagenet100", "fashion_mnist", "fashion_mnist_cluttered")
    assert [default_image_size(n) for n in DATASETS] == [16, 32, 32, 224, 32, 48]
    assert stored_size_for("imagenet100", 224) == 256
    assert stored_size_for("cifar10", 64) == 32
    assert stored_size_for("digits", 24) == 24
    assert stored_size_for("fashion_mnist", 40) == 40


def test_unknown_name_lists_valid_names():
    with pytest.raises(UserError) as exc:
        load_source("mnist", "train", None)
    message = _one_line(exc)
    assert "mnist" in message
    for name in DATASETS:
        assert name in message
    with pytest.raises(UserError):
        default_image_size("svhn")


def test_bad_split_and_image_size():
    with pytest.raises(UserError, match="split"):
        load_source("digits", "validation", None)
    for bad in (0, -3, 2.5, True, "16"):
        with pytest.raises(UserError, match="data.image_size"):
            load_source("digits", "train", None, image_size=bad)
    with pytest.raises(UserError, match="imagenet100 only"):
        load_source("digits", "train", None, classes=["n01749939"])


# --------------------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits_train():
    return load_source("digits", "train", None)


@pytest.fixture(scope="module")
def digits_test():
    return load_source("digits", "test", None)


def test_digits_sizes_dtype_range(digits_train, digits_test):
    assert len(digits_train) == 1347 and len(digits_test) == 450  # 1797 images, 25 % test
    for source in (digits_train, digits_test):
        assert source.num_classes == 10 and source.classes == [str(d) for d in range(10)]
        assert source.stored_size == 16
        assert source.images.shape == (len(source), 3, 16, 16)
        assert source.images.dtype == torch.uint8
        assert source.labels.dtype == torch.int64 and source.labels.shape == (len(source),)
        assert int(source.images.min()) == 0 and int(source.images.max()) >= 240
        # grayscale replicated to three identical channels
        assert torch.equal(source.images[:, 0], source.images[:, 1])
        assert torch.equal(source.images[:, 0], source.images[:, 2])
    # both splits normalise with the training statistics
    assert digits_train.mean == digits_test.mean and digits_train.std == digits_test.std
    m, s = digits_train.mean[0], digits_train.std[0]
    x = digits_train.images[:, 0].double() / 255
    assert m == pytest.approx(float(x.mean()), abs=1e-6) and s == pytest.approx(float(x.std()), abs=1e-6)
    assert 0.1 < m < 0.6 and 0.1 < s < 0.6


def test_digits_split_is_stratified_and_complete(digits_train, digits_test):
    from sklearn.datasets import load_digits

    all_counts = np.bincount(load_digits().target, minlength=10)
    train_counts = np.bincount(digits_train.labels.numpy(), minlength=10)
    test_counts = np.bincount(digits_test.labels.numpy(), minlength=10)
    assert np.array_equal(train_counts + test_counts, all_counts)
    # every class is split 75/25 up to rounding
    assert np.all(np.abs(test_counts - 0.25 * all_counts) <= 1.0)


def test_digits_native_size_matches_sklearn_and_is_fixed():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    _, test_idx = train_test_split(
        np.arange(len(bunch.target)), test_size=0.25, random_state=0, stratify=bunch.target
    )
    test_idx = np.sort(test_idx)
    source = load_source("digits", "test", None, image_size=8)
    expected = np.rint(bunch.images[test_idx] * 255 / 16).astype(np.uint8)
    assert np.array_equal(source.images[:, 0].numpy(), expected)
    assert np.array_equal(source.labels.numpy(), bunch.target[test_idx])
    again = load_source("digits", "test", None, image_size=8)
    assert torch.equal(source.images, again.images)


def test_digits_image_size():
    source = load_source("digits", "test", None, image_size=24)
    assert source.stored_size == 24 and source.images.shape[1:] == (3, 24, 24)


def test_digits_iter_batches_order(digits_train):
    batches = [[5, 0, 3], torch.tensor([10, 9]), np.array([1346]), []]
    out = list(digits_train.iter_batches(batches))
    assert len(out) == 4
    for (images, labels), idx in zip(out, batches):
        idx = torch.as_tensor(np.asarray(idx, dtype=np.int64))
        assert images.dtype == torch.uint8 and labels.dtype == torch.int64
        assert images.shape == (len(idx), 3, 16, 16)
        assert torch.equal(images, digits_train.images[idx])
        assert torch.equal(labels, digits_train.labels[idx])
    # a generator of batches is consumed lazily and in order
    perm = torch.randperm(len(digits_train), generator=torch.Generator().manual_seed(1))
    got = torch.cat([labels for _, labels in digits_train.iter_batches(b for b in perm.split(100))])
    assert torch.equal(got, digits_train.labels[perm])
    with pytest.raises(UserError, match="num_workers"):
        next(digits_train.iter_batches([[0]], num_workers=-1))


# --------------------------------------------------------------------------- CIFAR


def _pickle(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        pickle.dump(obj, handle)


def _cifar_images(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)


def _write_cifar10(root: Path) -> dict:
    """The real layout: cifar-10-batches-py/data_batch_1..5, test_batch, batches.meta (4 + 3 images)."""
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-py"
    train_x, train_y = [], []
    for b in range(1, 6):
        x, y = _cifar_images(rng, 4), [int(v) for v in rng.integers(0, 10, size=4)]
        _pickle(folder / f"data_batch_{b}", {"batch_label": f"batch {b}", "labels": y, "data": x})
        train_x.append(x)
        train_y += y
    test_x, test_y = _cifar_images(rng, 3), [1, 2, 3]
    _pickle(folder / "test_batch", {"batch_label": "test", "labels": test_y, "data": test_x})
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    _pickle(folder / "batches.meta", {"label_names": names, "num_cases_per_batch": 4, "num_vis": 3072})
    return {
        "train": (np.concatenate(train_x).reshape(-1, 3, 32, 32), train_y),
        "test": (test_x.reshape(-1, 3, 32, 32), test_y),
        "names": names,
    }


def _write_cifar100(root: Path) -> dict:
    """The real layout: cifar-100-python/train, test, meta."""
    rng = np.random.default_rng(1)
    folder = root / "cifar-100-python"
    out = {}
    for split, n in (("train", 6), ("test", 2)):
        x, y = _cifar_images(rng, n), [int(v) for v in rng.integers(0, 100, size=n)]
        _pickle(folder / split, {"data": x, "fine_labels": y, "coarse_labels": [v // 5 for v in y]})
        out[split] = (x.reshape(-1, 3, 32, 32), y)
    names = [f"class_{i}" for i in range(100)]
    _pickle(folder / "meta", {"fine_label_names": names, "coarse_label_names": [f"super_{i}" for i in range(20)]})
    out["names"] = names
    return out


@pytest.fixture
def no_md5(monkeypatch):
    """The tiny files cannot match the release's md5 sums: check presence only (test-side patch)."""
    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setattr(tv_cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))


@pytest.fixture
def no_network(monkeypatch):
    """Make any download attempt fail as it would offline."""
    import torchvision.datasets.cifar as tv_cifar

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", offline)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_cifar_reads_the_pickle_layout(tmp_path, no_md5, no_network, name, split):
    written = (_write_cifar10 if name == "cifar10" else _write_cifar100)(tmp_path)
    source = load_source(name, split, str(tmp_path))
    images, labels = written[split]
    assert len(source) == len(labels)
    assert source.num_classes == (10 if name == "cifar10" else 100)
    assert source.classes == written["names"]
    assert source.stored_size == 32
    assert source.images.dtype == torch.uint8 and source.images.shape == (len(labels), 3, 32, 32)
    assert np.array_equal(source.images.numpy(), images)
    assert source.labels.tolist() == labels
    assert len(source.mean) == 3 and len(source.std) == 3
    assert all(0.4 < m < 0.52 for m in source.mean) and all(0.2 < s < 0.3 for s in source.std)
    order = [len(labels) - 1, 0]
    (got_images, got_labels), = list(source.iter_batches([order]))
    assert torch.equal(got_images, source.images[order])
    assert got_labels.tolist() == [labels[i] for i in order]


def test_cifar_image_size_does_not_change_storage(tmp_path, no_md5, no_network):
    _write_cifar10(tmp_path)
    assert load_source("cifar10", "test", tmp_path, image_size=64).stored_size == 32


def test_cifar_missing_files_offline(tmp_path, no_network):
    with pytest.raises(UserError) as exc:
        load_source("cifar10", "train", str(tmp_path))
    message = _one_line(exc)
    assert str(tmp_path) in message and "cifar-10-batches-py/" in message and "data.download" in message
    with pytest.raises(UserError) as exc:
        load_source("cifar100", "test", str(tmp_path / "nowhere"))
    assert "cifar-100-python/" in _one_line(exc)
    # download requested but the network is unreachable
    with pytest.raises(UserError) as exc:
        load_source("cifar10", "train", str(tmp_path), download=True)
    message = _one_line(exc)
    assert "download" in message and "failed" in message and str(tmp_path) in message


def test_cifar_corrupt_file_is_a_user_error(tmp_path, no_network):
    # with torchvision's real md5 check, the tiny files count as corrupted
    _write_cifar10(tmp_path)
    with pytest.raises(UserError, match="not found or corrupted"):
        load_source("cifar10", "test", tmp_path)


def test_cifar_needs_data_dir():
    with pytest.raises(UserError, match="data.data_dir"):
        load_source("cifar100", "train", None)


# --------------------------------------------------------------------------- ImageNet-100


def test_imagenet100_class_list():
    classes = imagenet100_classes()
    assert len(classes) == 100 and len(set(classes)) == 100
    assert all(re.fullmatch(r"n\d{8}", c) for c in classes)
    assert classes[:5] == ["n02869837", "n01749939", "n02488291", "n02107142", "n13037406"]


_COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]


@pytest.fixture
def tiny_imagenet(tmp_path):
    """Three classes of the list, 2 train and 1 val solid-colour 40x30 JPEGs each."""
    from PIL import Image

    wnids = imagenet100_classes()[:3]
    for wnid, colour in zip(wnids, _COLOURS):
        for folder, count in (("train", 2), ("val", 1)):
            (tmp_path / folder / wnid).mkdir(parents=True)
            for k in range(count):
                image = Image.new("RGB", (40, 30), colour)
                image.save(tmp_path / folder / wnid / f"{wnid}_{k}.JPEG", quality=95)
    return tmp_path, wnids


def test_imagenet_folder_decodes_batches(tiny_imagenet):
    root, wnids = tiny_imagenet
    source = load_source("imagenet100", "train", root, image_size=28, classes=wnids)
    assert source.classes == sorted(wnids) and source.num_classes == 3
    assert len(source) == 6 and source.stored_size == 32  # round(28 / 0.875)
    assert tuple(source.mean) == (0.485, 0.456, 0.406) and tuple(source.std) == (0.229, 0.224, 0.225)
    assert source.labels.tolist() == [0, 0, 1, 1, 2, 2]
    batches = [[5, 0, 3], torch.tensor([2])]
    out = list(source.iter_batches(batches))
    assert len(out) == 2
    colour_of = {sorted(wnids).index(w): c for w, c in zip(wnids, _COLOURS)}
    for (images, labels), idx in zip(out, batches):
        idx = [int(i) for i in idx]
        assert images.dtype == torch.uint8 and images.shape == (len(idx), 3, 32, 32)
        assert labels.dtype == torch.int64 and labels.tolist() == source.labels[idx].tolist()
        for image, label in zip(images, labels.tolist()):
            mean_rgb = image.float().mean(dim=(1, 2))
            assert torch.allclose(mean_rgb, torch.tensor(colour_of[label], dtype=torch.float32), atol=6)
    # the dataset travels to spawn/forkserver workers by pickle
    assert len(pickle.loads(pickle.dumps(source.dataset))) == 6
    # workers decode the same pixels, in the same order
    with_workers = list(source.iter_batches(batches, num_workers=1))
    for (a, la), (b, lb) in zip(out, with_workers):
        assert torch.equal(a, b) and torch.equal(la, lb)


def test_imagenet_test_split_reads_val(tiny_imagenet):
    root, wnids = tiny_imagenet
    source = load_source("imagenet100", "test", root, classes=wnids)
    assert len(source) == 3 and source.stored_size == 256 and source.labels.tolist() == [0, 1, 2]
    (images, _), = list(source.iter_batches([[0, 1, 2]]))
    assert images.shape == (3, 3, 256, 256)


def test_imagenet_missing_paths(tiny_imagenet, tmp_path_factory):
    root, wnids = tiny_imagenet
    with pytest.raises(UserError, match="data.data_dir"):
        load_source("imagenet100", "train", None)
    missing = tmp_path_factory.mktemp("empty") / "imagenet"
    with pytest.raises(UserError) as exc:
        load_source("imagenet100", "train", missing)
    assert str(missing) in _one_line(exc)
    # the standard list: the first class folder of the list that is absent is named
    with pytest.raises(UserError) as exc:
        load_source("imagenet100", "train", root)
    message = _one_line(exc)
    assert str(root / "train" / imagenet100_classes()[3]) in message and "97 of the 100" in message
    # no val/ folder
    for path in sorted((root / "val").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (root / "val").rmdir()
    with pytest.raises(UserError) as exc:
        load_source("imagenet100", "test", root, classes=wnids)
    assert str(root / "val") in _one_line(exc)


def test_imagenet_empty_class_folder(tiny_imagenet):
    root, wnids = tiny_imagenet
    for path in (root / "train" / wnids[1]).iterdir():
        path.unlink()
    with pytest.raises(UserError) as exc:
        load_source("imagenet100", "train", root, classes=wnids)
    assert str(root / "train" / wnids[1]) in _one_line(exc)


def test_imagenet_bad_class_lists(tiny_imagenet):
    root, wnids = tiny_imagenet
    with pytest.raises(UserError, match="empty"):
        load_source("imagenet100", "train", root, classes=[])
    with pytest.raises(UserError, match="repeats"):
        load_source("imagenet100", "train", root, classes=[wnids[0], wnids[0]])


def test_index_batches_accept_tensors_and_lists():
    assert as_index_list(torch.tensor([[3, 1]])) == [3, 1]
    assert as_index_list((4, 2)) == [4, 2]
