"""One typed config object: dataclasses, loaded from YAML, overridden with `section.key=value`.

Every key a module reads is declared here with a one-line docstring; loading rejects unknown keys
and lists the valid ones (the reference code read SSL keys it never declared).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from svformer.errors import UserError
from svformer.files import write_atomic


@dataclass
class DataConfig:
    """Where the shards are and how clips are cut from them."""

    labeled: str = "shards/labeled"
    """Labeled training shards: a prep output directory, a brace pattern or a list of URLs."""
    unlabeled: str = "shards/unlabeled"
    """Unlabeled training shards (labels, if present, are used for monitoring only)."""
    val: str = "shards/val"
    """Validation/test shards used by quick validation and `eval`."""
    num_frames: int = 8
    """T: frames per clip."""
    sampling_rate: int = 8
    """Stride between sampled frames, in stored frames (dense sampling)."""
    img_size: int = 224
    """Side of the square training/test crop, in pixels."""
    short_side_range: list[int] = field(default_factory=lambda: [256, 320])
    """Training scale jitter: the short side is resized to a random value in [min, max]."""
    test_short_side: int = 224
    """Short side the clip is resized to before the 3 test crops."""
    hflip: bool = True
    """Random horizontal flip in the training views (the paper's weak view)."""
    mean: list[float] = field(default_factory=lambda: [0.45, 0.45, 0.45])
    """Per-channel normalisation mean on [0, 1] pixels."""
    std: list[float] = field(default_factory=lambda: [0.225, 0.225, 0.225])
    """Per-channel normalisation std on [0, 1] pixels."""
    batch_size: int = 1
    """Labeled clips per process per micro-step (B_l)."""
    unlabeled_ratio: int = 5
    """mu: unlabeled clips per labeled clip (B_u = mu * B_l)."""
    workers: int = 4
    """Loader worker processes per stream and process."""
    shuffle_buffer: int = 256
    """Samples held in the shuffle buffer of each training stream."""
    prefetch_shards: int = 2
    """Remote (s3://, http(s)://) shards downloaded ahead, per worker and stream: disk use under $TMPDIR
    is (this + 1) x shard size each."""

    def __post_init__(self) -> None:
        _check(
            len(self.short_side_range) == 2 and self.short_side_range[0] <= self.short_side_range[1],
            "data.short_side_range must be [min, max] with min <= max",
        )
        _check(self.num_frames >= 1 and self.sampling_rate >= 1, "data.num_frames and data.sampling_rate must be >= 1")
        _check(self.batch_size >= 1 and self.unlabeled_ratio >= 0, "data.batch_size >= 1 and data.unlabeled_ratio >= 0")
        _check(self.prefetch_shards >= 1, "data.prefetch_shards must be >= 1")
        _check(len(self.mean) == 3 and len(self.std) == 3, "data.mean and data.std need 3 values")


@dataclass
class ModelConfig:
    """The TimeSformer backbone and where its weights come from."""

    variant: str = "base"
    """tiny (ViT-Ti/16), small (ViT-S/16) or base (ViT-B/16)."""
    num_classes: int = 400
    """Number of action classes; must match the shards' labels."""
    patch_size: int = 0
    """Patch side in pixels; 0 keeps the variant's (16)."""
    embed_dim: int = 0
    """Token width; 0 keeps the variant's."""
    depth: int = 0
    """Number of blocks; 0 keeps the variant's."""
    num_heads: int = 0
    """Attention heads; 0 keeps the variant's."""
    drop_path: float = 0.1
    """Stochastic depth rate of the last block (rises linearly from 0)."""
    grad_checkpointing: bool = False
    """Recompute block activations in backward to save memory."""
    time_embed_std: float = 0.0
    """Std of a random time-embedding init. 0 (official) starts it at zero, which makes the model
    blind to frame order until training breaks the symmetry: fine from ImageNet weights on real
    data, a trap from scratch on classes that only time order tells apart
    (configs/demo.yaml uses 1.0)."""
    imagenet_init: str = ""
    """Local timm-format ImageNet ViT weights (.pth/.safetensors/.npz) to initialise from, or empty."""
    official_init: str = ""
    """Local official TimeSformer/SVFormer checkpoint to initialise from, or empty."""
    pretrain_init: str = ""
    """Encoder from masked-video pretraining (`cli.py pretrain`): its run directory, one of its checkpoint
    directories or an exported file; loaded strictly, decoder dropped, a new head. Empty: none."""
    hf_init: str = ""
    """Local Hugging Face transformers TimeSformer directory (config.json + model.safetensors or
    pytorch_model.bin; TimesformerModel or TimesformerForVideoClassification) to initialise from: the
    backbone exactly, its head when the class count matches, else a new one. Empty: none."""

    def overrides(self) -> dict:
        """The non-default architecture fields as keyword arguments for `build_model`."""
        keys = ("patch_size", "embed_dim", "depth", "num_heads")
        out = {k: getattr(self, k) for k in keys if getattr(self, k)}
        out["drop_path_rate"] = self.drop_path
        out["time_embed_std"] = self.time_embed_std
        return out

    def __post_init__(self) -> None:
        _check(
            self.variant in ("tiny", "small", "base"),
            f"model.variant must be tiny, small or base, not {self.variant!r}",
        )
        _check(self.num_classes >= 2, "model.num_classes must be >= 2")
        _check(self.time_embed_std >= 0, "model.time_embed_std must be >= 0")
        inits = [k for k in ("imagenet_init", "official_init", "pretrain_init", "hf_init") if getattr(self, k)]
        if len(inits) > 1:
            raise UserError(f"model.{inits[0]} and model.{inits[1]} are both set; set one initialisation")


@dataclass
class SSLConfig:
    """The semi-supervised methods' settings (train.method svformer: EMA teacher, pseudo-labels, Tube TokenMix,
    TWAug; fixmatch reads threshold, lambda_unlabeled and the strong view's)."""

    threshold: float = 0.3
    """delta: pseudo-labels whose teacher confidence is below this are masked out."""
    ema_decay: float = 0.99
    """m in teacher = m * teacher + (1 - m) * student."""
    ema_warmup_steps: int = 0
    """Ramp the EMA decay from 0 to ema_decay over this many SSL steps (0: constant)."""
    lambda_unlabeled: float = 2.0
    """gamma1: weight of the unlabeled pseudo-label loss."""
    lambda_mix: float = 2.0
    """gamma2: weight of the Tube TokenMix loss."""
    mix: bool = True
    """Use the Tube TokenMix branch."""
    mix_alpha: float = 10.0
    """alpha of the Beta(alpha, alpha) distribution of the mix ratio lambda."""
    mask_shape: str = "tube"
    """tube (same tokens every frame), token (random tokens) or frame (whole frames)."""
    mask_per_sample: bool = True
    """One mask and lambda per clip (True) or one per batch as in the released code (False)."""
    mix_loss: str = "mse"
    """mse: squared error of raw logits vs mixed targets (the released code); soft_ce: soft cross-entropy."""
    temporal_warp: bool = True
    """Apply temporal warping (TWAug) to the strong view."""
    strong_ops: str = "dropout"
    """Strong-view ops: dropout (channel dropout, the code), randaugment (the paper), both, or none."""
    channel_dropout: float = 0.2
    """Probability of zeroing a colour channel of a strong clip."""
    randaugment_n: int = 2
    """RandAugment: number of ops per clip (same ops for every frame)."""
    randaugment_m: float = 9.0
    """RandAugment: magnitude on the 0-10 scale."""
    randaugment_mstd: float = 0.5
    """RandAugment: std of the per-clip magnitude noise."""

    def __post_init__(self) -> None:
        _check(0.0 <= self.threshold <= 1.0, "ssl.threshold must be in [0, 1]")
        _check(0.0 <= self.ema_decay <= 1.0, "ssl.ema_decay must be in [0, 1]")
        _check(self.mask_shape in ("tube", "token", "frame"), "ssl.mask_shape must be tube, token or frame")
        _check(self.mix_loss in ("mse", "soft_ce"), "ssl.mix_loss must be mse or soft_ce")
        _check(
            self.strong_ops in ("dropout", "randaugment", "both", "none"),
            "ssl.strong_ops must be dropout, randaugment, both or none",
        )
        _check(self.mix_alpha > 0, "ssl.mix_alpha must be > 0")


@dataclass
class PretrainConfig:
    """Masked-video pretraining (`cli.py pretrain`, VideoMAE-style): masks, decoder, data."""

    mask_ratio: float = 0.9
    """Share of each frame's patches hidden; tube masking hides the same positions in every frame."""
    decoder_dim: int = 384
    """Token width of the light decoder."""
    decoder_depth: int = 4
    """Transformer blocks of the decoder (joint space-time attention over all tokens)."""
    decoder_heads: int = 6
    """Attention heads of the decoder; decoder_dim must be divisible by it."""
    norm_pix_loss: bool = True
    """Reconstruct each patch's pixels normalised to zero mean, unit std per channel (VideoMAE); false:
    the normalised input pixels."""
    data: list[str] = field(default_factory=list)
    """In-domain shard specs to pretrain on, mixed by shard count (labels unused); empty: data.unlabeled
    and data.labeled."""
    synthetic: str = ""
    """Shards of a synthetic pretraining set (`cli.py synth --kind pretrain`, then `prep`), or empty."""
    synthetic_weight: float = 0.0
    """Share of optimizer steps fed from `synthetic` (interleaved evenly); 1 pretrains on it alone."""
    recon_every: int = 500
    """Write recon.png (frames, mask, reconstruction) into the run directory every N steps (0: never)."""

    def __post_init__(self) -> None:
        _check(0.0 <= self.mask_ratio < 1.0, "pretrain.mask_ratio must be in [0, 1)")
        _check(
            self.decoder_dim >= 1 and self.decoder_depth >= 1 and self.decoder_heads >= 1,
            "pretrain.decoder_dim, decoder_depth and decoder_heads must be >= 1",
        )
        _check(
            self.decoder_dim % self.decoder_heads == 0,
            f"pretrain.decoder_dim {self.decoder_dim} is not divisible by pretrain.decoder_heads {self.decoder_heads}",
        )
        _check(0.0 <= self.synthetic_weight <= 1.0, "pretrain.synthetic_weight must be in [0, 1]")
        _check(
            not (self.synthetic and self.synthetic_weight == 0),
            "pretrain.synthetic is set but pretrain.synthetic_weight is 0: set the share of steps it feeds",
        )
        _check(
            not (self.synthetic_weight > 0 and not self.synthetic),
            "pretrain.synthetic_weight > 0 needs pretrain.synthetic (the synthetic shards)",
        )
        _check(self.recon_every >= 0, "pretrain.recon_every must be >= 0")


@dataclass
class OptimConfig:
    """Optimizer and learning-rate schedule (the engine's precision/ZeRO/clipping live in ds_config.json)."""

    name: str = "sgd"
    """sgd (momentum, Nesterov; the paper) or adamw."""
    lr: float = 0.005
    """Base learning rate for the global batch."""
    momentum: float = 0.9
    """SGD momentum."""
    nesterov: bool = True
    """SGD Nesterov momentum."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    """AdamW betas."""
    weight_decay: float = 1e-4
    """Weight decay; not applied to biases, norms, position/time embeddings and the class token."""
    schedule: str = "step"
    """step (multiply by decay_factor at decay_steps) or cosine (to 0 at max_steps)."""
    decay_steps: list[int] = field(default_factory=list)
    """Steps at which the step schedule multiplies the LR by decay_factor."""
    decay_factor: float = 0.1
    """Factor of each step-schedule decay."""
    lr_warmup_steps: int = 0
    """Linear LR warm-up from 0, in optimizer steps."""

    def __post_init__(self) -> None:
        _check(self.name in ("sgd", "adamw"), "optim.name must be sgd or adamw")
        _check(self.schedule in ("step", "cosine"), "optim.schedule must be step or cosine")
        _check(self.lr > 0, "optim.lr must be > 0")


@dataclass
class TrainConfig:
    """The run: length, checkpoints, logs."""

    method: str = "svformer"
    """The training method (`svformer.methods`): svformer, supervised (labeled clips only, the baseline),
    fixmatch, or masked_video (what `cli.py pretrain` runs)."""
    output_dir: str = ""
    """Where checkpoints, logs and the resolved config go; empty means runs/<config name>."""
    max_steps: int = 1000
    """Total optimizer steps."""
    warmup_steps: int = 100
    """svformer and fixmatch: supervised-only optimizer steps before the SSL stage starts (the paper's
    warm-up epochs); the other methods ignore it."""
    grad_accum: int = 1
    """Micro-steps accumulated per optimizer step."""
    checkpoint_every: int = 500
    """Save a checkpoint every N optimizer steps (and always at the end)."""
    keep_checkpoints: int = 2
    """How many of the newest checkpoints to keep."""
    val_every: int = 0
    """Quick single-view validation every N steps (0: never)."""
    val_max_videos: int = 256
    """Videos used by the quick validation."""
    log_every: int = 10
    """Write scalars every N optimizer steps."""
    seed: int = 0
    """Seed of model init, augmentations and data order."""
    ds_config: str = "ds_config.json"
    """DeepSpeed engine settings file (precision, ZeRO stage, clipping)."""
    precision: str = ""
    """Override the ds_config precision: bf16, fp16 or fp32 (empty: keep the file's)."""
    max_bad_steps: int = 20
    """Stop the run after this many consecutive non-finite losses."""
    compile: bool = False
    """Compile the student (and so its EMA copy) in place with `torch.compile` before the engine wraps it."""

    def __post_init__(self) -> None:
        _check(self.max_steps >= 1, "train.max_steps must be >= 1")
        _check(0 <= self.warmup_steps <= self.max_steps, "train.warmup_steps must be in [0, max_steps]")
        _check(
            self.grad_accum >= 1 and self.checkpoint_every >= 1,
            "train.grad_accum and train.checkpoint_every must be >= 1",
        )
        _check(self.precision in ("", "bf16", "fp16", "fp32"), "train.precision must be bf16, fp16, fp32 or empty")


@dataclass
class EvalConfig:
    """Multi-view testing."""

    views: str = "5x3"
    """Temporal clips x spatial crops per video."""
    batch_size: int = 8
    """Videos per forward pass (each carries all its views)."""
    combine: str = "sum"
    """How views are combined: sum of logits (the paper) or mean of softmax."""
    model: str = "teacher"
    """Which weights to score: teacher, student or both."""

    def __post_init__(self) -> None:
        _check(self.combine in ("sum", "softmax"), "eval.combine must be sum or softmax")
        _check(self.model in ("teacher", "student", "both"), "eval.model must be teacher, student or both")
        parse_views(self.views)


@dataclass
class Config:
    """Everything a run needs; `name` is the config file's stem."""

    name: str = "default"
    """Run name; the default output directory is runs/<name>."""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    ssl: SSLConfig = field(default_factory=SSLConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    @property
    def output_dir(self) -> Path:
        return Path(self.train.output_dir or f"runs/{self.name}")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise UserError(message)


def parse_views(views: str) -> tuple[int, int]:
    """'5x3' -> (5 temporal clips, 3 spatial crops)."""
    try:
        clips, crops = (int(v) for v in views.lower().split("x"))
    except ValueError:
        raise UserError(f"views must look like 5x3 (clips x crops), not {views!r}") from None
    if clips < 1 or crops not in (1, 3):
        raise UserError(f"views {views!r}: need >= 1 clip and 1 or 3 crops")
    return clips, crops


def _field_types(cls) -> dict[str, typing.Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(value, hint, where: str):
    """Check/convert one YAML or command-line value to the declared type."""
    origin = typing.get_origin(hint)
    if origin is list:
        (item,) = typing.get_args(hint)
        if isinstance(value, str):
            value = yaml.safe_load(value) if value.strip().startswith("[") else [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, item, where) for v in value]
    if hint is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        if isinstance(value, bool):
            return value
        raise UserError(f"{where}: expected true/false, got {value!r}")
    if hint in (int, float):
        if isinstance(value, bool):
            raise UserError(f"{where}: expected a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise UserError(f"{where}: expected {hint.__name__}, got {value!r}") from None
        if hint is int and not number.is_integer():
            raise UserError(f"{where}: expected an integer, got {value!r}")
        return int(number) if hint is int else number
    if hint is str:
        return "" if value is None else str(value)
    return value


def _build(cls, raw: dict, where: str, source: str):
    if not isinstance(raw, dict):
        raise UserError(f"{source}: section {where or 'top level'} must be a mapping")
    types = _field_types(cls)
    unknown = sorted(set(raw) - set(types))
    if unknown:
        prefix = f"{where}." if where else ""
        raise UserError(
            f"{source}: unknown key {prefix}{unknown[0]}; valid keys: {', '.join(prefix + k for k in types)}"
        )
    kwargs = {}
    for key, value in raw.items():
        hint = types[key]
        path = f"{where}.{key}" if where else key
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value or {}, path, source)
        else:
            kwargs[key] = _coerce(value, hint, f"{source}: {path}")
    return cls(**kwargs)


def _set(raw: dict, dotted: str, value: str, source: str) -> None:
    """Apply one `section.key=value` override to the raw nested dict (types are checked in _build)."""
    parts = dotted.split(".")
    node, cls = raw, Config
    for i, part in enumerate(parts):
        types = _field_types(cls)
        if part not in types:
            prefix = ".".join(parts[:i])
            valid = ", ".join((prefix + "." if prefix else "") + k for k in types)
            raise UserError(f"{source}: unknown key {dotted}; valid keys: {valid}")
        hint = types[part]
        if i == len(parts) - 1:
            if dataclasses.is_dataclass(hint):
                raise UserError(f"{source}: {dotted} is a section; set one of its keys")
            node[part] = value
        else:
            if not dataclasses.is_dataclass(hint):
                raise UserError(f"{source}: {'.'.join(parts[: i + 1])} is not a section")
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
            cls = hint


def load_config(path: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> Config:
    """Load a YAML config and apply `section.key=value` overrides.

    Args:
        path: a YAML file (its stem becomes `name` unless it sets one), or None for the defaults.
        overrides: strings like `train.max_steps=100`; values are parsed to the declared type.
    Raises:
        UserError: unreadable file, unknown key (the message lists the valid ones), bad value.
    """
    raw: dict = {}
    source = "--set"
    if path is not None:
        path = Path(path)
        source = str(path)
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise UserError(f"config {path} does not exist") from None
        except yaml.YAMLError as err:
            raise UserError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
        if not isinstance(raw, dict):
            raise UserError(f"{path}: the top level must be a mapping of sections")
        raw.setdefault("name", path.stem)
    for item in overrides:
        if "=" not in item:
            raise UserError(f"--set {item!r}: expected section.key=value")
        key, value = item.split("=", 1)
        _set(raw, key.strip(), value, "--set")
    return _build(Config, raw, "", source)


def to_dict(cfg: Config) -> dict:
    """The resolved config as plain data (what is saved beside every run)."""
    return dataclasses.asdict(cfg)


def from_dict(data: dict) -> Config:
    """Rebuild a Config saved by `to_dict` (e.g. from a checkpoint or an exported model)."""
    return _build(Config, data, "", "saved config")


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically: temp file then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
