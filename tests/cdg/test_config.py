import pytest

from cdg.config import Config, apply_overrides, config_diff, load_config, parse_override, to_yaml
from hwsim.trace.errors import UserError


def test_defaults_resolve_to_the_digits_run():
    cfg = load_config()
    assert cfg.data.dataset == "digits"
    assert cfg.data.image_size == 16
    assert cfg.model.stem == "cifar"
    assert cfg.method.temperature == 0.5  # SimCLR preset filled in
    assert cfg.optim.lr is not None and cfg.optim.weight_decay is not None


@pytest.mark.parametrize("dataset, size", [("fashion_mnist", 32), ("fashion_mnist_cluttered", 48)])
def test_fashion_mnist_needs_no_data_dir_and_gets_its_size(dataset, size):
    # data_dir null means Debian's dataset-fashion-mnist location; the loader says when it is missing
    cfg = load_config(None, [f"data.dataset={dataset}"])
    assert cfg.data.data_dir is None and cfg.data.image_size == size and cfg.model.stem == "cifar"


def test_overrides_parse_yaml_values():
    assert parse_override("train.epochs=3") == (["train", "epochs"], 3)
    assert parse_override("optim.lr=1e-3") == (["optim", "lr"], 1e-3)
    assert parse_override("data.data_dir=null") == (["data", "data_dir"], None)
    cfg = load_config(None, ["method.name=byol", "train.epochs=3"])
    assert cfg.method.name == "byol" and cfg.method.momentum == 0.996 and cfg.train.epochs == 3


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.lrr=1", "unknown config key 'optim.lrr'"),
        ("nosuch.key=1", "unknown config key 'nosuch'"),
        ("optim.lr=-1", "optim.lr"),
        ("train.epochs=many", "train.epochs"),
        ("data.dataset=mnist", "data.dataset"),
        ("method.name=swav", "method.name"),
        ("epochs=3", "section.key"),
        ("train.epochs", "section.key=value"),
        ("data.dataset=cifar10", "data.data_dir is required"),
        ("optim.warmup_epochs=100", "optim.warmup_epochs"),
        ("run.name=a/b", "run.name"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(UserError, match=message.replace(".", r"\.").replace("(", r"\(")):
        load_config(None, [override])


def test_yaml_file_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(bad)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("train:\n  epocs: 3\n")
    with pytest.raises(UserError, match=r"wrong.yaml: unknown config key 'train.epocs'"):
        load_config(wrong)


def test_yaml_roundtrip_and_diff(tmp_path):
    cfg = load_config(None, ["train.epochs=7"])
    path = tmp_path / "c.yaml"
    path.write_text(to_yaml(cfg))
    again = load_config(path)
    assert config_diff(cfg, again) == []
    assert config_diff(cfg, load_config(None, ["train.epochs=8"])) == ["train.epochs"]


def test_apply_overrides_does_not_mutate():
    tree = {"train": {"epochs": 1}}
    out = apply_overrides(tree, ["train.epochs=2"])
    assert tree["train"]["epochs"] == 1 and out["train"]["epochs"] == 2


def test_shipped_configs_are_valid():
    from pathlib import Path

    configs = sorted((Path(__file__).parent.parent.parent / "configs").glob("*.yaml"))
    assert configs, "configs/ must ship the paper-scale settings"
    for path in configs:
        cfg = load_config(path, ["data.data_dir=/tmp/data"])
        assert isinstance(cfg, Config)


def test_digits_config_file_documents_the_defaults():
    from pathlib import Path

    path = Path(__file__).parent.parent.parent / "configs" / "digits_simclr.yaml"
    assert config_diff(load_config(path), load_config()) == []
