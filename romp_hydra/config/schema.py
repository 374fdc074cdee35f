"""Structured-config schemas. Registered in Hydra's ConfigStore so that types are checked at compose time.

Group options (YAML files under conf/<group>/) merge into these dataclasses; a value of the wrong type or an
unknown key fails during composition with Hydra's message naming the key. Cross-field rules (mixture members vs
weights, sums, sizes) live in `validate.py`, which every entry point runs right after composition.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class PathsConfig:
    root_dir: str = "${project_root:}"
    # ROMP's dataset folder layout (h36m/, coco/, 3DPW/, ...) lives here.
    data_dir: str = "${oc.env:ROMP_DATA_DIR,${paths.root_dir}/dataset}"
    # SMPL_NEUTRAL.pkl, J_regressor_extra.npy, J_regressor_h36m.npy, gmm_08.pkl (licensed; the user provides them).
    smpl_dir: str = "${oc.env:ROMP_SMPL_DIR,${paths.root_dir}/model_data/smpl}"
    # Pre-trained backbones and released ROMP checkpoints.
    model_dir: str = "${paths.root_dir}/trained_models"
    cache_dir: str = "${paths.root_dir}/.cache/romp_hydra"
    log_dir: str = "${paths.root_dir}/logs"
    output_dir: str = "${hydra:runtime.output_dir}"


@dataclass
class AugmentConfig:
    enabled: bool = True
    flip_prob: float = 0.5
    rotate_prob: float = 0.2
    max_rotate_deg: float = 30.0
    crop_prob_2d: float = 0.1
    crop_prob_3d: float = 0.4
    color_jitter_prob: float = 0.2
    color_jitter_strength: float = 0.1
    occlusion_prob: float = 0.0


@dataclass
class DataConfig:
    input_size: int = 512
    centermap_size: int = 64
    max_person: int = 64
    batch_size: int = 32
    val_batch_size: int = 16
    num_workers: Any = "auto"  # auto | N (see romp_hydra/data/loader.py:resolve_num_workers)
    pin_memory: Any = "auto"  # auto (when training on CUDA) | true | false
    persistent_workers: bool = True
    prefetch_factor: int = 2
    multiprocessing_context: str = "auto"  # auto (fork on Linux) | fork | forkserver | spawn
    max_bad_fraction: float = 0.01
    collision_aware_centermap: bool = True
    collision_factor: float = 0.2
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class DatasetConfig:
    """A mixture: named members, each a source config with `_target_` (see conf/source/)."""

    name: str = MISSING
    members: dict[str, Any] = field(default_factory=dict)


@dataclass
class SamplingConfig:
    """Marginal probability of drawing each mixture member. Empty weights = uniform over the members."""

    name: str = "uniform"
    weights: dict[str, float] = field(default_factory=dict)
    normalize: bool = False
    # An epoch is a fixed number of samples, independent of the weights, so mixtures compare step for step.
    epoch_samples: int = 320_000


@dataclass
class BodyModelConfig:
    kind: str = "smpl"  # smpl | standin
    model_dir: str = "${paths.smpl_dir}"
    gender: str = "neutral"
    root_align: bool = True


# trainer.precision (and evaluate's precision). `mixed`: bf16 on GPUs that have it, else fp16 with a loss scaler;
# fp32 on the CPU (romp_hydra.models.model.resolve_precision).
PRECISIONS = ("fp32", "bf16", "fp16", "mixed")
# backbone.init: romp (N(0, 0.001) for every conv, as ROMP) | kaiming (He normal; romp_hydra.models.build)
BACKBONE_INITS = ("romp", "kaiming")


@dataclass
class TrainerConfig:
    """``cfg.trainer``, and the training loop's settings object (`training.loop.Trainer` takes this class).

    Types only: the values (the defaults a run gets) live in conf/trainer/default.yaml, once.
    """

    epochs: int = MISSING
    max_steps: int | None = MISSING
    device: str = MISSING  # auto | cpu | cuda | cuda:N
    precision: str = MISSING  # one of PRECISIONS
    channels_last: bool = MISSING
    compile: bool = MISSING
    grad_clip_norm: float | None = MISSING
    accumulate_steps: int = MISSING
    log_every_steps: int = MISSING
    vis_every_steps: int = MISSING
    val_every_steps: int = MISSING
    val_at_start: bool = MISSING
    ckpt_every_steps: int = MISSING
    max_consecutive_nan: int = MISSING
    data_wait_warn_share: float = MISSING
    sync_batchnorm: bool = MISSING  # DDP: BatchNorm statistics over the global batch (CUDA)
    dist_timeout_s: float = MISSING  # DDP: how long a collective waits for a missing rank


@dataclass
class ModelConfig:
    """``cfg.model``: ROMP's heads and how people are picked from its maps. Values: conf/model/romp.yaml."""

    head_channels: int = MISSING
    head_blocks: int = MISSING
    center_threshold: float = MISSING
    max_detections: int = MISSING
    matching: str = MISSING  # nearest_center | gt_center (romp_hydra.models.parser.MATCH_MODES)


@dataclass
class LoggerConfig:
    kind: str = "mlflow"  # mlflow | none
    tracking_uri: str = "sqlite:///${paths.root_dir}/mlflow.db"
    experiment_name: str = "romp_hydra"
    run_name: str | None = None


@dataclass
class TrainConfig:
    task_name: str = "train"
    seed: int = 0
    tags: list[str] = field(default_factory=list)
    # true: continue the latest run of this task; a path: continue that run directory or checkpoint.
    resume: Any = False
    # Model weights to start from (fine-tuning): ours, or a ROMP checkpoint (module.* keys).
    ckpt_path: str | None = None
    paths: PathsConfig = field(default_factory=PathsConfig)
    data: DataConfig = field(default_factory=DataConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    body_model: BodyModelConfig = field(default_factory=BodyModelConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    backbone: Any = MISSING
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: Any = MISSING
    optim: Any = MISSING
    val: Any = None


@dataclass
class EvaluateLoggerConfig(LoggerConfig):
    # null: a run of its own | <MLflow run id> | checkpoint: the run that trained the checkpoint
    run_id: str | None = MISSING


@dataclass
class EvaluateConfig:
    """conf/evaluate.yaml (``python -m romp_hydra.evaluate``); the values live in the YAML."""

    task_name: str = MISSING
    seed: int = MISSING
    tags: list[str] = MISSING
    ckpt_path: str = MISSING
    ckpt_strict: bool = MISSING
    use_ckpt_arch: bool = MISSING
    device: str = MISSING  # auto | cpu | cuda | cuda:N
    precision: str = MISSING  # one of PRECISIONS
    bn_mode: str = MISSING  # eval | train
    max_batches: int | None = MISSING
    paths: PathsConfig = field(default_factory=PathsConfig)
    data: DataConfig = field(default_factory=DataConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    body_model: BodyModelConfig = field(default_factory=BodyModelConfig)
    logger: EvaluateLoggerConfig = field(default_factory=EvaluateLoggerConfig)
    backbone: Any = MISSING
    model: ModelConfig = field(default_factory=ModelConfig)
    protocol: Any = MISSING


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(name="evaluate_schema", node=EvaluateConfig)


register_configs()
