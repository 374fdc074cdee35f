"""`evaluate(cfg)`: load a checkpoint, run a protocol over an evaluation set, print, save and log the results.

Called by ``python -m romp_hydra.evaluate`` (conf/evaluate.yaml). Steps:

1. Read the checkpoint's metadata. A romp_hydra training checkpoint carries its training config; unless
   ``use_ckpt_arch=false``, its network (``backbone``, ``model``), input size and body model replace the
   composed ones, except the groups / keys given on the command line. ROMP's checkpoints carry no config:
   choose ``backbone=hrnet32|resnet50`` yourself.
2. Build the network and body model, load the weights (``ckpt_strict``: every weight must load), set eval mode
   (or ``bn_mode=train``: BatchNorm with batch statistics, which ROMP's author used for the ResNet-50 paper
   numbers; results then depend on the batch size).
3. Run the protocol (`runner.evaluate_batches` for 3D people, `crowdpose.evaluate_keypoint_ap` for keypoint
   AP).
4. Print the overall numbers and the per-group table, write ``results_<dataset>.json`` and ``.csv`` into the
   run directory, and log them to MLflow: as a run of their own, or into an existing run with
   ``logger.run_id=<id>`` (``logger.run_id=checkpoint``: the run that trained the checkpoint).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import MissingMandatoryValue
from torch import nn

from romp_hydra.config.errors import ConfigError
from romp_hydra.config.runtime import run_directory, select_device
from romp_hydra.config.validate import PRECISIONS, validate_config
from romp_hydra.evaluation.protocols import Protocol, protocol_from_config

log = logging.getLogger(__name__)

BN_MODES = ("eval", "train")
_DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")
# Groups / keys a training checkpoint's config supplies unless given on the command line.
ARCH_KEYS = ("backbone", "model", "body_model", "data.input_size", "data.centermap_size")


@dataclass
class CheckpointInfo:
    """What a checkpoint says about itself besides its weights (all None for ROMP's files)."""

    step: int | None = None
    tracker_run_id: str | None = None
    config: dict | None = None


def read_checkpoint_info(path: str | Path) -> CheckpointInfo:
    """Step, MLflow run id and training config of a romp_hydra training checkpoint (memory-mapped, so the
    weights are not read twice); an empty `CheckpointInfo` for other files."""
    try:
        content = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    # torch raises many types here. A file without readable metadata simply has none: legacy (non-zip) files
    # such as ROMP's cannot be memory-mapped and hold none; unreadable files fail in the weight loader.
    except Exception:  # noqa: BLE001
        return CheckpointInfo()
    if not isinstance(content, Mapping):
        return CheckpointInfo()
    loop = content.get("loop") if isinstance(content.get("loop"), Mapping) else {}
    config = content.get("config") if isinstance(content.get("config"), Mapping) else None
    step = loop.get("step")
    return CheckpointInfo(
        step=int(step) if step is not None else None,
        tracker_run_id=loop.get("tracker_run_id"),
        config=dict(config) if config is not None else None,
    )


def command_line_overrides(cfg: DictConfig) -> list[str]:
    """The job's command-line overrides (``key=value`` strings), from the Hydra config."""
    from hydra.core.hydra_config import HydraConfig

    node = cfg.get("hydra") if "hydra" in cfg else None
    if node is None and HydraConfig.initialized():
        node = HydraConfig.get()
    overrides = OmegaConf.select(node, "overrides.task", default=None) if node is not None else None
    return [str(o) for o in overrides or []]


def adopt_checkpoint_architecture(cfg: DictConfig, ckpt_config: Mapping[str, Any]) -> list[str]:
    """Copy `ARCH_KEYS` from a training checkpoint's config into `cfg`, except those overridden on the command
    line. Returns the keys copied."""
    given = [re.split(r"[=@]", o.lstrip("+~"), maxsplit=1)[0] for o in command_line_overrides(cfg)]
    source = OmegaConf.create(dict(ckpt_config))
    adopted = []
    with open_dict(cfg):
        for key in ARCH_KEYS:
            if any(g == key or g.startswith(key + ".") or key.startswith(g + ".") for g in given):
                continue
            value = OmegaConf.select(source, key, default=None, throw_on_resolution_failure=False)
            if value is None:
                continue
            current = OmegaConf.select(cfg, key, default=None)
            # A typed node (model, body_model: config.schema) takes the values; an untyped one is replaced.
            typed = isinstance(current, DictConfig) and OmegaConf.get_type(current) not in (dict, None)
            OmegaConf.update(cfg, key, value, merge=typed)
            adopted.append(key)
    return adopted


def validate_evaluation_config(cfg: DictConfig) -> None:
    """Checks on the keys only conf/evaluate.yaml has; raises ConfigError. Reads, builds nothing heavy."""
    try:
        ckpt_path = cfg.ckpt_path
    except MissingMandatoryValue:
        raise ConfigError(
            "ckpt_path",
            "???",
            "no checkpoint given",
            "pass ckpt_path=<file>: a romp_hydra checkpoint (runs/<date>/checkpoints/best.pt) or "
            "a ROMP checkpoint (python -m romp_hydra.models.import_romp converts one)",
        ) from None
    if not ckpt_path or not Path(str(ckpt_path)).expanduser().is_file():
        raise ConfigError(
            "ckpt_path",
            ckpt_path,
            "is not a file",
            "give the path of a checkpoint file (relative paths are taken from the current folder)",
        )
    if not _DEVICE_PATTERN.match(str(cfg.device)):
        raise ConfigError("device", cfg.device, "unknown device", "use auto, cpu, cuda or cuda:N")
    if cfg.precision not in PRECISIONS:
        raise ConfigError(
            "precision", cfg.precision, f"must be one of {', '.join(PRECISIONS)}", "use precision=fp32"
        )
    if cfg.bn_mode not in BN_MODES:
        raise ConfigError(
            "bn_mode",
            cfg.bn_mode,
            f"must be one of {', '.join(BN_MODES)}",
            "use bn_mode=eval (running statistics) or bn_mode=train (batch statistics)",
        )
    if cfg.max_batches is not None and int(cfg.max_batches) < 1:
        raise ConfigError(
            "max_batches", cfg.max_batches, "must be >= 1 or null", "use max_batches=null for all"
        )
    protocol = protocol_from_config(cfg.protocol)
    members = list(cfg.dataset.members)
    if protocol.kind == "keypoint_ap" and len(members) != 1:
        raise ConfigError(
            "dataset",
            cfg.dataset.get("name"),
            f"keypoint AP scores one data set, got members {', '.join(members)}",
            "use dataset=crowdpose_val or dataset=crowdpose_test",
        )
    run_id = OmegaConf.select(cfg, "logger.run_id", default=None)
    if run_id is not None and cfg.logger.kind != "mlflow":
        raise ConfigError(
            "logger.run_id",
            run_id,
            "results go into an MLflow run only with logger=mlflow",
            "add logger=mlflow, or drop logger.run_id",
        )


def set_batchnorm_mode(net: nn.Module, mode: str) -> None:
    """Eval mode everywhere; with ``mode='train'`` the BatchNorm layers use the batch's statistics."""
    net.eval()
    if mode == "train":
        for module in net.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.train()


def prepare_evaluation_config(cfg: DictConfig) -> CheckpointInfo:
    """Check the evaluation keys, resolve ``ckpt_path`` and take the checkpoint's architecture (backbone, model,
    body model, sizes) into ``cfg``, so that the preflight checks the files this checkpoint really needs."""
    validate_evaluation_config(cfg)
    with open_dict(cfg):
        cfg.ckpt_path = str(Path(str(cfg.ckpt_path)).expanduser().resolve())  # logged: say which file exactly
    info = read_checkpoint_info(cfg.ckpt_path)
    if cfg.use_ckpt_arch and info.config is not None:
        adopted = adopt_checkpoint_architecture(cfg, info.config)
        if adopted:
            log.info("from the checkpoint's training config: %s", ", ".join(adopted))
            validate_config(cfg)
    return info


def evaluate(cfg: DictConfig, info: CheckpointInfo | None = None) -> dict[str, float]:
    """Evaluate ``cfg.ckpt_path`` on ``cfg.dataset`` with ``cfg.protocol``; returns the overall metrics.

    ``info`` is what `prepare_evaluation_config` returned, if it was called already. See the module docstring
    for the steps and conf/evaluate.yaml for the options.
    """
    if info is None:
        info = prepare_evaluation_config(cfg)
    protocol = protocol_from_config(cfg.protocol)
    target_run = target_run_id(cfg, info)  # checked before the evaluation, not after it
    device = select_device(str(cfg.device))
    run_dir = run_directory(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)

    net, predictor, report = build_model(cfg, device)
    metrics, details, rows = run_protocol(cfg, net, predictor, protocol, device)
    members = list(cfg.dataset.members)
    dataset_name = str(cfg.dataset.get("name") or "_".join(members))
    summary = {
        "checkpoint": str(cfg.ckpt_path),
        "checkpoint_step": info.step,
        "dataset": dataset_name,
        "members": members,
        "protocol": protocol.describe(),
        "bn_mode": str(cfg.bn_mode),
        "weights": report.summary(),
        **details,
    }
    print(format_report(summary, metrics, protocol, rows))
    files = write_results(run_dir, dataset_name, summary, rows)
    log_to_tracker(cfg, run_dir, dataset_name, protocol, metrics, rows, files, info.step or 0, target_run)
    return metrics


def build_model(cfg: DictConfig, device: torch.device) -> tuple[nn.Module, Any, Any]:
    """The network with the checkpoint's weights (eval / `bn_mode`), the predictor, the loading report."""
    from romp_hydra.models.checkpoint import load_network_weights
    from romp_hydra.models.model import build_model as build_model_path

    with open_dict(cfg):
        cfg.backbone.pretrained = None  # the checkpoint holds the whole network
    net, predictor, _ = build_model_path(cfg, device)
    report = load_network_weights(net, cfg.ckpt_path, strict=bool(cfg.ckpt_strict))
    log.info("weights: %s", report.summary())
    set_batchnorm_mode(net, str(cfg.bn_mode))
    return net, predictor, report


def run_protocol(
    cfg: DictConfig, net: nn.Module, predictor: Any, protocol: Protocol, device: torch.device
) -> tuple[dict[str, float], dict[str, Any], list[dict[str, Any]]]:
    """The protocol over every member of ``cfg.dataset``: (overall metrics, JSON details, group rows)."""
    from romp_hydra.data.loader import build_eval_loader

    loaders = [build_eval_loader(cfg, key) for key in cfg.dataset.members]
    max_batches = int(cfg.max_batches) if cfg.max_batches is not None else None
    if protocol.kind == "keypoint_ap":
        from romp_hydra.evaluation.crowdpose import KeypointAPEvaluator, evaluate_keypoint_ap

        evaluator = KeypointAPEvaluator.from_json(
            keypoint_gt_file(loaders[0].dataset.sources[0]), max_detections=protocol.max_detections
        )
        metrics = evaluate_keypoint_ap(
            net, predictor, loaders[0], protocol, evaluator, device, str(cfg.precision), max_batches
        )
        return metrics, {"metrics": metrics}, []

    from romp_hydra.evaluation.runner import ChainedLoaders, evaluate_batches

    result = evaluate_batches(
        net, predictor, ChainedLoaders(loaders), protocol, device, str(cfg.precision), max_batches
    )
    return result.metrics(), result.as_dict(), result.table()


def keypoint_gt_file(source: Any) -> Path:
    """The official COCO-format json of a keypoint-AP source (CrowdPose: json/crowdpose_<split>.json)."""
    official = getattr(source, "official_file", None)
    path = official() if callable(official) else None
    if path is None or not Path(path).is_file():
        raise ConfigError(
            "dataset",
            getattr(source, "key", "?"),
            f"keypoint AP needs the official GT json ({path or 'the source has none'})",
            "download CrowdPose's json/crowdpose_<split>.json "
            "next to images/ (ROMP's annots_*.npz lack the boxes and crowd flags the AP needs)",
        )
    return Path(path)


# -- reporting -----------------------------------------------------------------------------------------------
def _format_value(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.2f}" if abs(value) >= 10 else f"{value:.4f}"
    return str(value)


def format_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A plain fixed-width text table."""
    cells = [columns] + [[_format_value(row.get(column, float("nan"))) for column in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = [
        "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(line, widths))
        )
        for line in cells
    ]
    return "\n".join(lines)


def format_report(
    summary: Mapping[str, Any], metrics: Mapping[str, float], protocol: Protocol, rows: list[dict[str, Any]]
) -> str:
    """The text printed at the end of an evaluation."""
    step = f", step {summary['checkpoint_step']}" if summary.get("checkpoint_step") is not None else ""
    lines = [
        f"Evaluation of {summary['checkpoint']}{step} on {summary['dataset']} (protocol {protocol.name})"
    ]
    if protocol.kind == "keypoint_ap":
        names = ["AP", "AP50", "AP75", "AR", "AP_easy", "AP_medium", "AP_hard"]
        lines.append(format_table([metrics], names))
        lines.append(
            f"images: {int(metrics['num_images'])} in the GT json, "
            f"{int(metrics['num_images_with_detections'])} with detections; GT people "
            f"{int(metrics['num_gt'])}, detections scored {int(metrics['num_detections'])}"
        )
        return "\n".join(lines)
    names = [n for n in metrics if n in protocol.metric_names() or n.endswith(("_all", "_mean_of_groups"))]
    lines.append(format_table([metrics], names) if names else "no person could be scored")
    lines.append("(errors in mm, PCK / AUC as fractions)")
    lines.append(
        f"people: {metrics['num_evaluated']:.0f} evaluated, {metrics['num_missed']:.0f} missed of "
        f"{metrics['num_gt']:.0f} GT ({metrics['num_images']:.0f} images)"
    )
    lines.append(
        f"detection: precision {_format_value(metrics['det_precision'])} (fully labelled images only), "
        f"recall {_format_value(metrics['det_recall'])}"
    )
    if rows:
        columns = ["group", "people", "missed"] + [
            n for n in protocol.metric_names() if any(n in r for r in rows)
        ]
        lines.append(f"per {protocol.group_by}:")
        lines.append(format_table(rows, columns))
    return "\n".join(lines)


def write_results(
    run_dir: Path, dataset_name: str, summary: Mapping[str, Any], rows: list[dict[str, Any]]
) -> list[Path]:
    """``results_<dataset>.json`` (everything) and ``.csv`` (the overall row and one row per group)."""
    json_path = run_dir / f"results_{dataset_name}.json"
    json_path.write_text(json.dumps(_json_ready(summary), indent=2, default=str, allow_nan=False))
    csv_path = run_dir / f"results_{dataset_name}.csv"
    overall = {"group": "overall", **{k: v for k, v in summary["metrics"].items()}}
    table = [overall, *rows]
    columns = list(dict.fromkeys(key for row in table for key in row))
    with open(csv_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in table:
            writer.writerow(
                {k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
            )
    log.info("results written to %s and %s", json_path, csv_path)
    return [json_path, csv_path]


def _json_ready(value: Any) -> Any:
    """NaN / inf (a metric nobody could be scored on) become null: JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value


def _finite(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {
        k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(float(v))
    }


def tracked_metrics(
    dataset_name: str, metrics: Mapping[str, Any], rows: list[dict[str, Any]]
) -> dict[str, float]:
    """MLflow metric names: ``eval/<dataset>/<metric>`` and ``eval/<dataset>/<group>/<metric>``."""
    out = {f"eval/{dataset_name}/{k}": v for k, v in _finite(metrics).items()}
    for row in rows:
        group = str(row["group"])
        out.update({f"eval/{dataset_name}/{group}/{k}": v for k, v in _finite(row).items()})
    return out


def tracked_params(dataset_name: str, protocol: Protocol, ckpt_path: str) -> dict[str, str]:
    params = {f"eval.{dataset_name}.protocol.{k}": v for k, v in protocol.describe().items()}
    params[f"eval.{dataset_name}.ckpt_path"] = ckpt_path
    return params


def target_run_id(cfg: DictConfig, info: CheckpointInfo) -> str | None:
    """The existing MLflow run to log into (``logger.run_id``; ``checkpoint``: the checkpoint's training run),
    or None for a run of its own. Raises ConfigError when that run cannot be found."""
    run_id = OmegaConf.select(cfg, "logger.run_id", default=None)
    if run_id is None or cfg.logger.kind != "mlflow":
        return None
    if run_id == "checkpoint":
        if info.tracker_run_id is None:
            raise ConfigError(
                "logger.run_id",
                run_id,
                f"{cfg.ckpt_path} does not name the MLflow run it was trained in",
                "pass the run id (logger.run_id=<id>), or drop logger.run_id",
            )
        run_id = info.tracker_run_id
    from mlflow.exceptions import MlflowException

    from romp_hydra.tracking.store import run_status

    try:
        run_status(str(cfg.logger.tracking_uri), str(run_id))
    except MlflowException as err:
        raise ConfigError(
            "logger.run_id",
            run_id,
            f"no such run in {cfg.logger.tracking_uri} ({err.error_code})",
            "copy the run id from the MLflow UI, and set logger.tracking_uri to the store that holds it",
        ) from err
    return str(run_id)


def log_to_tracker(
    cfg: DictConfig,
    run_dir: Path,
    dataset_name: str,
    protocol: Protocol,
    metrics: Mapping[str, Any],
    rows: list[dict[str, Any]],
    files: list[Path],
    step: int,
    target_run: str | None = None,
) -> str | None:
    """Log the protocol (params), the metrics and the result files at `step`, into `target_run` or a new run
    of their own; returns the MLflow run id (None: untracked)."""
    if cfg.logger.kind != "mlflow":
        return None
    params = tracked_params(dataset_name, protocol, str(cfg.ckpt_path))
    values = tracked_metrics(dataset_name, metrics, rows)

    from romp_hydra.tracking import build_tracker

    tracker = build_tracker(cfg)
    with tracker:
        # Into an existing run (its status untouched; a param it holds with another value becomes the tag
        # param_changed.<key>), or a run of its own.
        run_id = tracker.attach(target_run, run_dir) if target_run is not None else tracker.start(cfg, run_dir)
        tracker.log_params(params)
        tracker.log_metrics(values, step=step)
        for path in files:
            tracker.log_artifact(path, f"eval/{dataset_name}")
        tracker.flush()
    return run_id
