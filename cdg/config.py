"""Training configuration: a validated tree of sections, loaded from YAML plus ``key=value`` overrides.

The field defaults *are* the embedded default run (SimCLR, ResNet-18 at width 1/4 on
scikit-learn's ``digits``, a few minutes on 2 CPU cores), so ``python -m cdg.train`` with
no arguments works offline. ``configs/*.yaml`` hold the paper-scale settings. Fields left
``null`` are filled by ``resolve()`` from the data set and the SSL method (published
recipes); the run directory stores the fully resolved config so a run is reproducible
from its own ``config.yaml``.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from cdg.data.augment_config import AugmentConfig
from cdg.data.catalog import DATASETS, DEFAULT_IMAGE_SIZE, NEEDS_DATA_DIR
from cdg.methods.registry import METHOD_SPECS
from cdg.gating import registry as gate_methods
from cdg.sections import Section
from hwsim.trace.errors import UserError
from hwsim.trace.fileio import load_yaml

# the largest crop a config may ask for: 4x ImageNet's 224 and then some; beyond it a typo
# (data.image_size=100000) would only fail later as an out-of-memory crash
MAX_IMAGE_SIZE = 2048

DatasetName = Literal[DATASETS]


class DataConfig(Section):
    dataset: DatasetName = Field("digits", description="digits (bundled, offline) | cifar10 | cifar100 | imagenet100 | fashion_mnist | fashion_mnist_cluttered")
    data_dir: Optional[str] = Field(None, description="root folder of the data set (not needed for digits; fashion_mnist*: null = Debian's /usr/share/datasets/fashion-mnist)")
    image_size: Optional[int] = Field(None, gt=0, le=MAX_IMAGE_SIZE, description="training crop size; null = 16 digits, 32 CIFAR and fashion_mnist, 48 fashion_mnist_cluttered, 224 ImageNet-100")
    download: bool = Field(False, description="let torchvision download CIFAR or Fashion-MNIST into data.data_dir when online")
    num_workers: int = Field(0, ge=0, description="DataLoader workers for image-folder data (ImageNet-100)")

    @model_validator(mode="after")
    def _data_dir_not_blank(self) -> "DataConfig":
        if self.data_dir is not None and not self.data_dir.strip():  # '' would mean the current directory
            raise ValueError("data.data_dir: empty path (null means the default)")
        return self


class ModelConfig(Section):
    arch: Literal["resnet18", "resnet34", "resnet50"] = "resnet18"
    stem: Optional[Literal["cifar", "imagenet"]] = Field(None, description="null = cifar (3x3, no max-pool) below 64 px, else imagenet")
    width: float = Field(0.25, gt=0, le=8, description="channel width multiplier (1.0 = standard ResNet)")
    zero_init_residual: bool = Field(False, description="zero-init the last BN of each residual block")


class MethodConfig(Section):
    name: str = "simclr"
    proj_hidden_dim: Optional[int] = Field(None, gt=0, description="projector hidden width; null = method preset")
    proj_dim: Optional[int] = Field(None, gt=0, description="projector output width; null = method preset")
    pred_hidden_dim: Optional[int] = Field(None, gt=0, description="predictor hidden width (BYOL, SimSiam)")
    temperature: Optional[float] = Field(None, gt=0, description="softmax temperature (SimCLR, MoCo)")
    queue_size: Optional[int] = Field(None, gt=0, description="MoCo negative queue length")
    momentum: Optional[float] = Field(None, ge=0, le=1, description="EMA momentum of the target encoder (MoCo, BYOL)")
    momentum_final: Optional[float] = Field(None, ge=0, le=1, description="BYOL: EMA momentum at the end (cosine schedule)")

    @field_validator("name", mode="before")
    @classmethod
    def _registered(cls, value: Any) -> Any:
        """A name of ``cdg.methods.registry.METHOD_SPECS`` (checked at validation time, so a method
        registered after import is accepted; the error reads as a ``Literal``'s would)."""
        if isinstance(value, str) and value in METHOD_SPECS:
            return value
        names = [repr(name) for name in METHOD_SPECS]
        expected = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
        raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": expected})


class OptimConfig(Section):
    name: Literal["sgd", "lars"] = "sgd"
    lr: Optional[float] = Field(None, gt=0, description="base learning rate per 256 images (scaled by batch/256); null = preset")
    lr_scaling: Literal["linear", "none"] = Field("linear", description="linear: lr = base lr x global batch / 256")
    weight_decay: Optional[float] = Field(None, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    lars_eta: float = Field(0.02, gt=0, description="LARS trust coefficient")
    exclude_bias_bn: bool = Field(True, description="no weight decay / LARS adaptation on biases and BN")
    warmup_epochs: float = Field(2, ge=0)
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="cosine schedule floor as a fraction of the peak lr")


class TrainConfig(Section):
    epochs: int = Field(40, gt=0)
    batch_size: int = Field(256, gt=1, description="global batch (split evenly over DDP ranks)")
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: Optional[int] = Field(None, gt=0, description="CPU threads for torch; null = torch default")
    amp: bool = Field(True, description="bfloat16 autocast on CUDA (ignored on CPU)")
    channels_last: bool = Field(True, description="channels_last memory format on CUDA (ignored on CPU)")
    compile: bool = Field(False, description="torch.compile the model")
    sync_bn: bool = Field(True, description="SyncBatchNorm when training on several CUDA devices")
    grad_clip: Optional[float] = Field(None, gt=0)
    log_every_steps: int = Field(10, gt=0)
    progress: bool = Field(True, description="progress bars (rank 0 only)")
    tensorboard: bool = Field(False, description="also write TensorBoard event files to <run>/tensorboard (needs the tensorboard extra)")


class EvalConfig(Section):
    knn_every_epochs: int = Field(5, ge=0, description="kNN monitor period in epochs; 0 = off (always run at the end)")
    knn_k: int = Field(20, gt=0)
    knn_temperature: float = Field(0.1, gt=0)
    batch_size: int = Field(256, gt=0, description="feature-extraction batch")
    linear_epochs: int = Field(100, ge=0, description="linear probe epochs on frozen features; 0 = skip")
    linear_lr: float = Field(0.1, gt=0)
    linear_weight_decay: float = Field(1e-4, ge=0)
    linear_batch_size: int = Field(256, gt=0)


class StageGateConfig(Section):
    """Per-stage overrides of the gate structure (null = the gate section's value)."""

    groups: Optional[int] = Field(None, ge=1)
    channel_block: Optional[Union[int, Literal["all"]]] = None
    spatial_block: Optional[int] = Field(None, ge=1)


class GateConfig(Section):
    method: Literal[("none", *gate_methods.names())] = Field(
        "none", description=f"dynamic pruning: none (dense) | {' | '.join(gate_methods.names())}"
    )
    layers: Union[Literal["3x3"], list[str]] = Field(
        "3x3", description="which convs are gated: 3x3 = every 3x3 conv after the stem, or name patterns (fnmatch)"
    )
    groups: int = Field(4, ge=1, description="G: the base path reads the first 1/G of the input channels (cdg, cgnet)")
    channel_block: Union[int, Literal["all"]] = Field(
        1, description="S: output channels per gate decision; 1 = unstructured, all = one decision per pixel (cdg)"
    )
    spatial_block: int = Field(1, ge=1, description="b: b x b output pixels share one decision (cdg, dgnet)")
    stages: dict[Literal["layer1", "layer2", "layer3", "layer4"], StageGateConfig] = Field(
        default_factory=dict, description="per-stage overrides of groups / channel_block / spatial_block"
    )
    target_reduction: Optional[float] = Field(None, gt=1, description="requested dense/effective MAC ratio of the backbone")
    target_density: Optional[float] = Field(None, gt=0, le=1, description="or: requested effective/dense MAC ratio")
    warmup_epochs: float = Field(2, ge=0, description="dense epochs (all gates on) before sparsification starts")
    ramp_epochs: float = Field(10, ge=0, description="epochs over which the target falls linearly from dense to final")
    reg_weight: float = Field(5.0, ge=0, description="weight of the sparsity regulariser (quadratic penalty)")
    controller_lr: float = Field(1.0, ge=0, description="gain of the integral target controller (gate shift per unit ratio error)")
    branches: Literal["both", "one"] = Field("both", description="gate both contrastive branches, or only one (ablation)")
    align_weight: float = Field(0.0, ge=0, description="cross-branch saliency alignment: penalise per-layer density gaps")
    cross_branch: Literal["none", "overlap_consistency"] = Field(
        "none", description="cdg: cross-branch saliency term; overlap_consistency = the two views' gates agree where their crops overlap"
    )
    cross_branch_weight: float = Field(1.0, ge=0, description="weight of the gate.cross_branch term")
    saliency_norm: Literal["none", "channel"] = Field(
        "none", description="cdg: channel = standardise each channel's base partial sum per image before pooling"
    )
    sharpness: float = Field(4.0, gt=0, description="alpha of the straight-through sigmoid (cdg, cgnet; dgnet uses 1/tau)")
    keep_ratio: Optional[float] = Field(None, gt=0, le=1, description="FBS channels kept; null = derived from the target")
    control: Literal["shared", "published"] = Field(
        "shared", description="sparsity control: shared = the integral target controller and calibration for every method; published = each method's own (cgnet fixed target threshold, fbs fixed k-winner-take-all, dgnet FLOPs and bounding loss)"
    )
    target_threshold: Optional[float] = Field(
        None, description="cgnet under control=published: the fixed target threshold T of its penalty; null = the normal quantile that meets the target"
    )
    grouping: Literal["shuffle", "first"] = Field(
        "shuffle", description="cgnet base path: shuffle = channel grouping with shuffle as published (G must divide C_in, C_out); first = the first 1/G input channels"
    )
    bound_weight: float = Field(1.0, ge=0, description="dgnet: weight gamma of its bounding loss on each block's spatial and channel density")
    bound_decay: float = Field(0.05, ge=0, description="dgnet: the bound relaxes as p = exp(-bound_decay x epochs since the warm-up)")
    tau: float = Field(2 / 3, gt=0, description="dgnet: temperature of its Gumbel-sigmoid gates (noise in training only)")
    accounting: Literal["full", "output"] = Field(
        "full", description="MAC convention of target control and calibration: full = skipped outputs and structurally zero inputs, output = skipped outputs only"
    )
    calibrate: bool = Field(True, description="after training, shift all thresholds so the target is met on held-out train images")
    trace_images: int = Field(64, ge=0, description="images whose full-resolution gate masks go into the trace")
    trace_act_images: int = Field(64, ge=0, description="of those, images whose input-activation masks are stored too")
    hw_aware: Optional[str] = Field(
        None, description="accelerator YAML: price each layer's gated MACs by the cycles they save on it (cdg, dgnet)"
    )
    hw_aware_prices: Literal["iid", "real"] = Field(
        "iid", description="masks the gate.hw_aware prices are fitted on: iid = independent decisions at the target density; real = the model's own masks on training images, each layer shifted to that density"
    )
    static_off: list[str] = Field(
        default_factory=list, description="cdg: gated convs (names or stage prefixes, e.g. layer4) whose conditional path is statically removed: gate always off, base path only"
    )

    @model_validator(mode="after")
    def _one_target(self) -> "GateConfig":
        if self.target_reduction is not None and self.target_density is not None:
            raise ValueError("set gate.target_reduction or gate.target_density, not both")
        if isinstance(self.channel_block, int) and self.channel_block < 1:
            raise ValueError(f"gate.channel_block must be >= 1 or 'all', got {self.channel_block}")
        for key in ("cross_branch", "saliency_norm"):
            if getattr(self, key) != "none" and self.method != "cdg":
                raise ValueError(f"gate.{key}={getattr(self, key)} needs gate.method cdg, got {self.method}")
        if self.static_off and self.method != "cdg":
            raise ValueError(f"gate.static_off needs gate.method cdg, got {self.method}")
        if any(not isinstance(name, str) or not name.strip() for name in self.static_off):
            raise ValueError(f"gate.static_off: layer names must be non-empty, got {self.static_off!r}")
        priced = gate_methods.names(hw_aware=True)
        if self.hw_aware is not None and self.method not in priced:
            raise ValueError(f"gate.hw_aware needs gate.method {' or '.join(priced)} (a ratio regulariser), got {self.method}")
        return self

    @property
    def target_ratio(self) -> Optional[float]:
        """Requested effective/dense MAC ratio (None: no target)."""
        if self.target_reduction is not None:
            return 1.0 / self.target_reduction
        return self.target_density


class RunConfig(Section):
    dir: str = Field("runs", description="parent folder of run directories")
    name: Optional[str] = Field(None, description="run directory name; null = <dataset>_<arch>_<method>")
    checkpoint_every_steps: int = Field(0, ge=0, description="extra mid-epoch checkpoints; 0 = at epoch ends only")
    stop_after_epoch: Optional[int] = Field(None, gt=0, description="stop cleanly after this epoch (resume later with --resume)")

    @model_validator(mode="after")
    def _name_is_a_folder_name(self) -> "RunConfig":
        if not self.dir.strip():  # Path('') would silently be the current directory
            raise ValueError("run.dir: empty path")
        if self.name is not None and (not self.name.strip() or "/" in self.name or self.name in (".", "..")):
            raise ValueError(f"run.name must be a plain folder name, got {self.name!r}")
        return self


class Config(Section):
    data: DataConfig = Field(default_factory=DataConfig)
    aug: AugmentConfig = Field(default_factory=AugmentConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    method: MethodConfig = Field(default_factory=MethodConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    run: RunConfig = Field(default_factory=RunConfig)

    @property
    def run_dir(self) -> Path:
        name = self.run.name or f"{self.data.dataset}_{self.model.arch}_{self.method.name}"
        return Path(self.run.dir) / name


def resolve(cfg: Config) -> Config:
    """Fill null fields from the data set and method presets; validate cross-field rules."""
    cfg = cfg.model_copy(deep=True)
    if cfg.data.image_size is None:
        cfg.data.image_size = DEFAULT_IMAGE_SIZE[cfg.data.dataset]
    if cfg.model.stem is None:
        cfg.model.stem = "cifar" if cfg.data.image_size < 64 else "imagenet"
    spec = METHOD_SPECS[cfg.method.name]  # the published recipes, for fields left null
    for key, value in spec.presets.items():
        if getattr(cfg.method, key) is None:
            setattr(cfg.method, key, value)
    lr, wd = spec.optim[cfg.optim.name]
    if cfg.optim.lr is None:
        cfg.optim.lr = lr
    if cfg.optim.weight_decay is None:
        cfg.optim.weight_decay = wd
    if cfg.data.dataset in NEEDS_DATA_DIR and not cfg.data.data_dir:
        raise UserError(f"data.data_dir is required for data.dataset={cfg.data.dataset}")
    if cfg.optim.warmup_epochs >= cfg.train.epochs and cfg.optim.warmup_epochs > 0:
        raise UserError(
            f"optim.warmup_epochs={cfg.optim.warmup_epochs} must be smaller than train.epochs={cfg.train.epochs}"
        )
    if cfg.gate.method in gate_methods.names(needs_target=True) and cfg.gate.target_ratio is None:
        raise UserError(f"gate.method={cfg.gate.method} needs gate.target_reduction or gate.target_density")
    if cfg.gate.method != "none" and cfg.gate.warmup_epochs + cfg.gate.ramp_epochs >= cfg.train.epochs:
        raise UserError(
            f"gate.warmup_epochs + gate.ramp_epochs = {cfg.gate.warmup_epochs + cfg.gate.ramp_epochs} "
            f"must be below train.epochs={cfg.train.epochs}"
        )
    if cfg.run.stop_after_epoch is not None and cfg.run.stop_after_epoch > cfg.train.epochs:
        raise UserError(f"run.stop_after_epoch={cfg.run.stop_after_epoch} is beyond train.epochs={cfg.train.epochs}")
    return cfg


def _format_validation_error(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "(top level)"
    if first["type"] == "extra_forbidden":
        return f"{source}: unknown config key '{where}'"
    given = first.get("input")
    shown = "" if isinstance(given, dict) else f" (got {given!r})"
    return f"{source}: {where}: {first['msg']}{shown}"


_SCIENTIFIC = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``optim.lr=0.1`` -> (["optim", "lr"], 0.1); values are parsed as YAML scalars/lists."""
    if "=" not in text:
        raise UserError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    path = key.strip().split(".")
    if len(path) < 2 or not all(path):
        raise UserError(f"override key {key!r} must look like section.key (e.g. train.epochs=10)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        raise UserError(f"override {key}: cannot parse value {raw!r}") from None
    if isinstance(value, str) and _SCIENTIFIC.match(value):  # YAML 1.1 reads "1e-3" as a string
        value = float(value)
    return path, value


def _apply_override(tree: dict, path: list[str], value: Any) -> None:
    node = tree
    schema: type[BaseModel] = Config
    for depth, part in enumerate(path[:-1]):
        if part not in schema.model_fields:
            raise UserError(f"unknown config key '{'.'.join(path[: depth + 1])}'")
        annotation = schema.model_fields[part].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            raise UserError(f"config key '{'.'.join(path[: depth + 1])}' is a value, not a section")
        schema = annotation
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise UserError(f"config key '{'.'.join(path[: depth + 1])}' must be a section")
    if path[-1] not in schema.model_fields:
        valid = ", ".join(schema.model_fields)
        raise UserError(f"unknown config key '{'.'.join(path)}' (valid keys here: {valid})")
    node[path[-1]] = value


def read_yaml(path: str | Path) -> dict:
    """A config file's mapping of sections (an empty file is an empty mapping)."""
    data = load_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: the top level must be a mapping of sections (data, model, ...)")
    return data


def build_config(tree: dict, source: str = "config") -> Config:
    try:
        return Config.model_validate(tree)
    except ValidationError as err:
        raise UserError(_format_validation_error(err, source)) from None


def set_value(tree: dict, dotted_key: str, value: Any) -> dict:
    """Return a copy of a config tree with one already-parsed value set (the key is checked)."""
    tree = copy.deepcopy(tree)
    _apply_override(tree, dotted_key.split("."), value)
    return tree


def apply_overrides(tree: dict, overrides: list[str]) -> dict:
    """Return a copy of a config tree with ``section.key=value`` overrides applied (keys checked)."""
    tree = copy.deepcopy(tree)
    for text in overrides:
        key_path, value = parse_override(text)
        _apply_override(tree, key_path, value)
    return tree


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults <- YAML file <- overrides, validated and resolved."""
    tree = apply_overrides(read_yaml(path) if path is not None else {}, overrides or [])
    return resolve(build_config(tree, str(path) if path is not None else "config"))


def to_yaml(cfg: Config) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def to_commented_yaml(cfg: Config) -> str:
    """The config as YAML with each field's description as a trailing comment (``--print-config``)."""
    lines = []
    for section_name, section_field in Config.model_fields.items():
        lines.append(f"{section_name}:")
        section = getattr(cfg, section_name)
        for name, field in type(section).model_fields.items():
            value = yaml.safe_dump(getattr(section, name), default_flow_style=True).strip()
            value = value.removesuffix("\n...").removesuffix("...").strip()
            comment = f"  # {field.description}" if field.description else ""
            lines.append(f"  {name}: {value}{comment}")
    return "\n".join(lines) + "\n"


def config_diff(a: Config, b: Config) -> list[str]:
    """Dotted keys whose values differ (for resume checks)."""
    flat_a, flat_b = _flatten(a.model_dump(mode="json")), _flatten(b.model_dump(mode="json"))
    return sorted(key for key in flat_a.keys() | flat_b.keys() if flat_a.get(key) != flat_b.get(key))


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out
