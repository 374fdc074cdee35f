"""Check every input of a run before any heavy work, and report everything that is wrong in one message.

    python -m romp_hydra.preflight backbone=hrnet32 dataset=v1_mix            # the training config, checks only
    python -m romp_hydra.preflight --config-name evaluate ckpt_path=best.pt dataset=pw3d_test

Every entry point calls `check_inputs(cfg, task)` right after composition (train, evaluate, predict). A run on a
machine without data used to fail on the first missing thing after a traceback, then on the next one, run after
run. Here the checks do not stop at the first problem: the configuration's cross-field rules, the device and
precision, the optimiser and loss settings, the validation metric, the body-model files, the pretrained backbone,
every dataset folder with its expected layout, the validation images, and the checkpoint to fine-tune from or
resume (and whether its architecture matches this run). `PreflightError` carries the list; the entry points
print it without a traceback and exit with status 2, like a bad command-line argument.

Nothing is built here: sources are constructed (which only locates their files; synthetic data is generated
later, on first use), checkpoints are opened memory-mapped for their config only.
"""
from __future__ import annotations

import difflib
import math
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from romp_hydra.config import ConfigError, validate_config

TASKS = ("train", "evaluate", "predict")
# Bytes at the end of an image file that a complete file has (a copy cut short lacks them).
_IMAGE_TAILS = {".jpg": b"\xff\xd9", ".jpeg": b"\xff\xd9", ".png": b"IEND\xaeB`\x82"}


class PreflightError(ValueError):
    """One or more inputs of a run are missing or wrong. `problems` lists each, with its fix."""

    def __init__(self, task: str, problems: list[str]):
        self.task, self.problems = task, list(problems)
        lines = [f"{len(self.problems)} problem(s) found before {task} started (nothing was run):"]
        for number, problem in enumerate(self.problems, 1):
            first, *rest = problem.strip().splitlines()
            lines.append(f"{number}. {first}")
            lines.extend(f"   {line}" for line in rest)
        super().__init__("\n".join(lines))


def check_inputs(cfg: DictConfig, task: str = "train") -> None:
    """Raise PreflightError listing every problem of `cfg` for `task` (train | evaluate | predict)."""
    problems = find_problems(cfg, task)
    if problems:
        raise PreflightError(task, problems)


def exit_with_problems(err: PreflightError | ConfigError) -> None:
    """Print the message (no traceback) and exit with status 2."""
    print(err if isinstance(err, PreflightError) else f"Invalid configuration: {err}", file=sys.stderr)
    sys.exit(2)


def find_problems(cfg: DictConfig, task: str = "train") -> list[str]:
    """Every problem found, in the order a user would fix them (config, device, files, data, checkpoints)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    problems: list[str] = []
    checks = [_config, _device_and_precision, _optimizer, _loss, _val_metric, _body_model, _checkpoints]
    if task == "train":
        checks += [_pretrained_backbone, _train_datasets, _val_datasets]
    elif task == "evaluate":
        checks += [_eval_datasets]
    for check in checks:
        try:
            problems.extend(check(cfg, task))
        except ConfigError as err:
            problems.append(f"{err}")
    return problems


# -- configuration -------------------------------------------------------------------------------------------------
def _config(cfg: DictConfig, task: str) -> list[str]:
    try:
        validate_config(cfg)
    except ConfigError as err:
        return [_explain_member_without_target(cfg, err) or str(err)]
    return []


def _explain_member_without_target(cfg: DictConfig, err: ConfigError) -> str | None:
    """`experiment=quickstart dataset=coco`: the experiment's settings for its own members (synth_solo...) stay
    behind as members without a `_target_`. Say where they come from, and the fix that works."""
    if not (err.key.startswith("dataset.members.") and "_target_" in err.problem):
        return None
    members = cfg.dataset.get("members") or {}
    orphans = [key for key in members if not (isinstance(members[key], Mapping) and members[key].get("_target_"))]
    real = [key for key in members if key not in orphans]
    choices = _hydra_choices(cfg)
    experiment, dataset = choices.get("experiment"), choices.get("dataset") or cfg.dataset.get("name")
    origin = f"experiment={experiment}" if experiment else "an override"
    lines = [
        f"dataset.members.{', '.join(orphans)}: settings without a dataset: dataset={dataset} has no member "
        f"{' or '.join(orphans)} (its members: {', '.join(real) or 'none'}); the settings come from {origin}.",
    ]
    if experiment:
        lines.append(f"  fix: leave out experiment={experiment} to train on dataset={dataset} (the experiment is "
                     f"made for its own data), e.g. python -m romp_hydra.train dataset={dataset}; or keep the "
                     f"experiment and add its datasets: "
                     + " ".join(f"+source@dataset.members.{key}={key}" for key in orphans))
    else:
        lines.append("  fix: remove the dataset.members.<key>.* overrides, or add the member: "
                     + " ".join(f"+source@dataset.members.{key}={key}" for key in orphans))
    return "\n".join(lines)


def _hydra_choices(cfg: DictConfig) -> dict[str, Any]:
    choices = OmegaConf.select(cfg, "hydra.runtime.choices", default=None)
    if choices is None:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            choices = HydraConfig.get().runtime.choices
    return dict(choices) if choices is not None else {}


# -- device, precision, optimiser, loss, validation metric --------------------------------------------------------
def _device_and_precision(cfg: DictConfig, task: str) -> list[str]:
    node, prefix = (cfg.trainer, "trainer.") if "trainer" in cfg else (cfg, "")
    device = str(node.get("device", "auto"))
    precision = str(node.get("precision", "fp32"))
    import torch

    has_cuda = torch.cuda.is_available()
    problems = []
    if device.startswith("cuda") and not has_cuda:
        problems.append(f"{prefix}device={device}: CUDA is not available on this machine (no GPU visible to torch)\n"
                        f"  fix: {prefix}device=auto (CUDA when present, else CPU) or {prefix}device=cpu")
    elif device.startswith("cuda:") and int(device.split(":")[1]) >= torch.cuda.device_count():
        problems.append(f"{prefix}device={device}: only {torch.cuda.device_count()} GPU(s) are visible\n"
                        f"  fix: {prefix}device=cuda (the first GPU) or cuda:N with N < {torch.cuda.device_count()}")
    runs_on = "cuda" if has_cuda and (device.startswith("cuda") or device == "auto") else (
        "cpu" if device in ("auto", "cpu") or device.startswith("cuda") else device)
    if precision in ("bf16", "fp16") and runs_on != "cuda":
        problems.append(
            f"{prefix}precision={precision}: mixed precision needs CUDA, and this run would train on {runs_on} "
            f"({prefix}device={device}{'' if has_cuda else ', no GPU visible'}), i.e. in fp32 while saying "
            f"{precision}\n  fix: {prefix}precision=mixed (bf16/fp16 on CUDA, fp32 on the CPU) or "
            f"{prefix}precision=fp32")
    return problems


def _optimizer(cfg: DictConfig, task: str) -> list[str]:
    node = OmegaConf.select(cfg, "optim.optimizer", default=None)
    if task != "train" or node is None:
        return []
    problems = []
    lr = node.get("lr")
    if lr is not None and not (_finite(lr) and float(lr) > 0):
        problems.append(f"optim.optimizer.lr={lr}: the learning rate must be a positive number\n"
                        f"  fix: e.g. optim.optimizer.lr=5e-5 (ROMP v1, batch 32)")
    decay = node.get("weight_decay")
    if decay is not None and not (_finite(decay) and float(decay) >= 0):
        problems.append(f"optim.optimizer.weight_decay={decay}: must be >= 0\n  fix: optim.optimizer.weight_decay=0")
    betas = node.get("betas")
    if betas is not None and not all(_finite(b) and 0 <= float(b) < 1 for b in betas):
        problems.append(f"optim.optimizer.betas={list(betas)}: each must be in [0, 1)\n"
                        f"  fix: optim.optimizer.betas=[0.9,0.999] (Adam's defaults)")
    return problems


def _loss(cfg: DictConfig, task: str) -> list[str]:
    node = OmegaConf.select(cfg, "loss", default=None)
    if task != "train" or node is None:
        return []
    from romp_hydra.losses.criterion import LOSS_TERMS

    problems = []
    weights = node.get("weights") or {}
    unknown = sorted(set(weights) - set(LOSS_TERMS))
    if unknown:
        hint = " (ROMP's Cam term is always 0 in v1 and does not exist here)" if "cam" in unknown else ""
        problems.append(f"loss.weights: unknown term(s) {', '.join(unknown)}{hint}; the terms are "
                        f"{', '.join(LOSS_TERMS)}\n  fix: remove " + " ".join(f"~loss.weights.{k}" for k in unknown))
    for name in weights:
        value = weights[name]
        if not (_finite(value) and float(value) >= 0):
            problems.append(f"loss.weights.{name}={value}: a loss weight must be a finite number >= 0\n"
                            f"  fix: loss.weights.{name}=0 turns the term off")
    thresh = node.get("loss_thresh")
    if thresh is not None and not (_finite(thresh) and float(thresh) > 0):
        problems.append(f"loss.loss_thresh={thresh}: the cap of each weighted term must be > 0\n"
                        f"  fix: loss.loss_thresh=1000 (ROMP)")
    return problems


def validation_metric_names(protocol_node: Any) -> list[str]:
    """The metric names validation in training reports for a protocol config (`val/<name>`)."""
    from romp_hydra.evaluation.protocols import protocol_from_config
    from romp_hydra.evaluation.runner import EvaluationResult

    protocol = protocol_from_config(protocol_node, where="val.protocol")
    names = [f"val/{name}" for name in protocol.metric_names()]
    if protocol.report_group_mean:
        names += [f"{name}_mean_of_groups" for name in names]
    return names + list(EvaluationResult().metrics("val/"))


def _val_metric(cfg: DictConfig, task: str) -> list[str]:
    val = cfg.get("val") if task == "train" else None
    if not val or val.get("metric") is None:
        return []
    metric = str(val.metric)
    names = validation_metric_names(val.get("protocol"))
    if metric in names:
        return []
    close = difflib.get_close_matches(metric, names, n=1)
    return [f"val.metric={metric!r}: validation does not report this metric, so no checkpoint would be 'best' and "
            f"every sweep trial would score the failure value\n  it reports: {', '.join(names)}\n"
            f"  fix: val.metric={close[0] if close else names[0]}"
            + (f" val.mode={'max' if close[0].split('/')[-1].startswith(('pck', 'auc', 'det_')) else 'min'}"
               if close else "")]


# -- files ---------------------------------------------------------------------------------------------------------
def _body_model(cfg: DictConfig, task: str) -> list[str]:
    node = cfg.get("body_model")
    if node is None or node.get("kind") != "smpl":
        return []  # the stand-in is generated on first use
    from romp_hydra.body.files import BodyModelFilesMissing, check_body_model_files

    try:
        check_body_model_files(node.model_dir, genders=[node.get("gender", "neutral")])
    except BodyModelFilesMissing as err:
        return [str(err)]
    return []


def _pretrained_backbone(cfg: DictConfig, task: str) -> list[str]:
    pretrained = OmegaConf.select(cfg, "backbone.pretrained", default=None)
    if not pretrained or Path(str(pretrained)).expanduser().is_file():
        return []
    try:
        from romp_hydra.models.backbones.pretrained import missing_pretrained_message
    except ImportError:
        return [f"backbone.pretrained={str(pretrained)!r} does not exist\n  fix: put the backbone weights there "
                f"(ROMP release v1.1, trained_models.zip), or train from random init with backbone.pretrained=null"]
    return [missing_pretrained_message(pretrained)]


def _checkpoints(cfg: DictConfig, task: str) -> list[str]:
    problems = []
    resume = cfg.get("resume", False) if task == "train" else False
    resuming = resume not in (False, None, "false", "False")
    ckpt_path = OmegaConf.select(cfg, "ckpt_path", default=None, throw_on_missing=False)
    if ckpt_path and ckpt_path != "???" and not resuming and not Path(str(ckpt_path)).expanduser().is_file():
        what = "the weights to fine-tune from" if task == "train" else "the weights to evaluate"
        problems.append(f"ckpt_path={ckpt_path}: no such file ({what})\n  fix: give the path of a checkpoint "
                        f"file (training writes <run dir>/checkpoints/best.pt and last.pt)"
                        + (", or ckpt_path=null to start from the pretrained backbone" if task == "train" else ""))
    if resuming:
        from romp_hydra.training.checkpointing import find_resume_checkpoint

        try:
            path = find_resume_checkpoint(resume, Path(cfg.paths.log_dir) / cfg.task_name / "runs")
        except FileNotFoundError as err:
            problems.append(f"{err}\n  fix: resume=<run dir or checkpoint path>, or resume=false for a fresh run")
        else:
            problems.extend(_resume_architecture(cfg, path))
    return problems


ARCHITECTURE_KEYS = ("backbone", "model", "data.input_size", "data.centermap_size")


def _resume_architecture(cfg: DictConfig, path: Path) -> list[str]:
    """A resumed checkpoint must be the network this run builds; say which settings differ, not a size dump."""
    import torch

    from romp_hydra.models.build import BACKBONE_LOADING_KEYS  # how to initialise, not what the network is

    try:
        saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("config")
    except Exception as err:  # noqa: BLE001  (any unreadable file is a problem to report, not a crash)
        return [f"resume: {path} cannot be read as a checkpoint ({type(err).__name__}: {err})\n"
                f"  fix: resume from another run, or delete the file if it is damaged"]
    if not saved:
        return []
    saved_cfg = OmegaConf.create(saved)
    differences = []
    for key in ARCHITECTURE_KEYS:
        ours = _plain(OmegaConf.select(cfg, key, default=None))
        theirs = _plain(OmegaConf.select(saved_cfg, key, default=None))
        if isinstance(ours, dict) and isinstance(theirs, dict):
            for sub in sorted(set(ours) | set(theirs)):
                if sub not in BACKBONE_LOADING_KEYS and ours.get(sub) != theirs.get(sub):
                    differences.append(f"{key}.{sub}: checkpoint {theirs.get(sub)!r}, this run {ours.get(sub)!r}")
        elif ours != theirs and theirs is not None:
            differences.append(f"{key}: checkpoint {theirs!r}, this run {ours!r}")
    if not differences:
        return []
    listing = "\n".join(f"    {line}" for line in differences)
    return [f"resume={cfg.resume}: {path} was trained with another architecture than this run builds:\n{listing}\n"
            f"  fix: resume with the run's own settings (leave out the backbone=/model=/data.input_size overrides), "
            f"or start a new run from its weights with resume=false ckpt_path={path}"]


def _plain(value: Any) -> Any:
    if isinstance(value, DictConfig):
        return OmegaConf.to_container(value, resolve=False)
    return value


# -- datasets ------------------------------------------------------------------------------------------------------
def _train_datasets(cfg: DictConfig, task: str) -> list[str]:
    return _check_members(cfg.dataset.get("members") or {}, "dataset", check_images=False)


def _val_datasets(cfg: DictConfig, task: str) -> list[str]:
    val = cfg.get("val")
    if not val or "dataset" not in val:
        return []
    # Evaluation never replaces a bad image: a truncated file would stop the run at a validation, hours in.
    return _check_members(val.dataset.get("members") or {}, "val.dataset", check_images=True)


def _eval_datasets(cfg: DictConfig, task: str) -> list[str]:
    return _check_members(cfg.dataset.get("members") or {}, "dataset", check_images=False)


def _check_members(members: Mapping[str, Any], where: str, check_images: bool) -> list[str]:
    from hydra.utils import get_class

    from romp_hydra.data.base import DatasetNotFoundError
    from romp_hydra.data.loader import instantiate_source
    from romp_hydra.data.store import StoreFormatError
    from romp_hydra.data.sources.synthetic import SCENE_OPTIONS, SyntheticSource

    problems = []
    for key in members:
        member = members[key]
        target = member.get("_target_") if isinstance(member, Mapping) else None
        if not target:
            continue  # reported by the config check
        try:
            source_class = get_class(target)
            if issubclass(source_class, SyntheticSource):
                # Generated into the cache on first use: nothing to find yet, but its scene settings are checked
                # now, not after the images of the members before it were generated.
                source_class.build_scene(**{name: member.get(name) for name in SCENE_OPTIONS})
                continue
            source = instantiate_source(str(key), member)
        except (DatasetNotFoundError, StoreFormatError) as err:
            problems.append(str(err))
            continue
        except ConfigError as err:
            problems.append(f"{err}")
            continue
        except (ImportError, TypeError, ValueError) as err:
            problems.append(f"{where}.members.{key}: {type(err).__name__}: {err}\n"
                            f"  fix: check conf/source/{key}.yaml and the overrides of {where}.members.{key}")
            continue
        if check_images:
            bad = incomplete_images(source.image_paths())
            if bad:
                listing = "\n".join(f"    {path}: {reason}" for path, reason in bad[:20])
                more = f"\n    ... and {len(bad) - 20} more" if len(bad) > 20 else ""
                problems.append(
                    f"{where}.members.{key}: {len(bad)} image(s) are missing or cut short; validation reads every "
                    f"image and stops at the first it cannot decode:\n{listing}{more}\n  fix: copy those files "
                    f"again, or run without this validation set (val=none)")
    return problems


def incomplete_images(paths: Iterable[str | Path]) -> list[tuple[str, str]]:
    """(path, reason) of the files that are missing, empty, or lack the end marker of their format (JPEG, PNG).
    Reads a few bytes per file, so a validation set of tens of thousands of images is checked in seconds."""
    bad = []
    for path in paths:
        path = Path(path)
        try:
            size = path.stat().st_size
        except OSError:
            bad.append((str(path), "no such file"))
            continue
        if size == 0:
            bad.append((str(path), "the file is empty"))
            continue
        tail = _IMAGE_TAILS.get(path.suffix.lower())
        if tail is None:
            continue
        with open(path, "rb") as handle:
            handle.seek(max(0, size - 64))
            end = handle.read().rstrip(b"\x00\r\n ")
        if not end.endswith(tail):
            bad.append((str(path), f"truncated: the {path.suffix.lower()[1:].upper()} end marker is missing"))
    return bad


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


# -- command line --------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """`python -m romp_hydra.preflight [--config-name train|evaluate|predict] [overrides]`: check, run nothing."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from romp_hydra.config.resolvers import project_root

    args = list(sys.argv[1:] if argv is None else argv)
    config_name = "train"
    for i, arg in enumerate(args):
        if arg.startswith("--config-name"):
            config_name = arg.split("=", 1)[1] if "=" in arg else args[i + 1]
            args = args[:i] + args[i + (1 if "=" in arg else 2):]
            break
    conf_dir = Path(project_root()) / "conf"
    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir), job_name="preflight"):
        cfg = compose(config_name, overrides=args, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    try:
        check_inputs(cfg, config_name)
    except PreflightError as err:
        print(err, file=sys.stderr)
        return 2
    print(f"preflight: every input of this {config_name} run is in place")
    return 0


if __name__ == "__main__":
    sys.exit(main())
