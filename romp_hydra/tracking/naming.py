"""Run names and parameter strings for the tracking store.

Pure functions (no MLflow import) so that names and parameter values can be computed, tested and shown
without a store. The limits mirror `mlflow/utils/validation.py`.
"""

from __future__ import annotations

import hashlib
import math
import posixpath
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
MAX_KEY_LENGTH = 250
MAX_PARAMS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
TRUNCATION_MARKER = "...[truncated]"
SIGNIFICANT_DIGITS = 6
MAX_RUN_NAME_LENGTH = 100

# Overrides that move files around or configure tracking itself: they do not make one experiment differ
# from another, and paths would swamp the name.
EXCLUDED_OVERRIDE_ROOTS = frozenset({"paths", "hydra", "logger", "resume", "ckpt_path"})

# MLflow accepts alphanumerics, '_', '-', '.', ' ', ':' and '/' in param, metric and tag keys.
_INVALID_KEY_CHARS = re.compile(r"[^\w.\- :/]")
_INVALID_RUN_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.,=+\-]+")

T = TypeVar("T")


def format_value(value: Any) -> str:
    """One config value as a param string.

    Floats keep 6 significant digits (MLflow would store the repr, e.g. 0.30000000000000004); booleans and
    None are written as Hydra reads them (true/false/null), so a value can be pasted back into an override.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return format(value, f".{SIGNIFICANT_DIGITS}g")
    if isinstance(value, (list, tuple, ListConfig)):
        return "[" + ",".join(format_value(item) for item in value) + "]"
    if isinstance(value, (dict, DictConfig)):
        return "{" + ",".join(f"{key}:{format_value(item)}" for key, item in value.items()) + "}"
    return str(value)


def truncate(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, ending in a visible marker when something was cut."""
    if len(text) <= limit:
        return text
    return text[: limit - len(TRUNCATION_MARKER)] + TRUNCATION_MARKER


def sanitize_key(key: str, limit: int = MAX_KEY_LENGTH) -> str:
    """A param/metric/tag key MLflow accepts: invalid characters become '_', no leading '/', and a key longer
    than `limit` keeps its head plus a hash of the whole key (so two long keys stay distinct)."""
    key = _INVALID_KEY_CHARS.sub("_", str(key)) or "_"
    # MLflow treats keys as file paths and rejects ones that normalise to something else (/a, a//b, a/../b).
    if posixpath.normpath(key) != key or key.startswith("/"):
        key = key.replace("/", "_")
    if key == "." or key.startswith(".."):
        key = "_" + key[1:]
    if len(key) <= limit:
        return key
    digest = hashlib.sha1(key.encode()).hexdigest()[:8]
    return f"{key[: limit - 9]}-{digest}"


def flatten_config(
    cfg: Mapping[str, Any] | DictConfig, exclude: Iterable[str] = ("hydra",)
) -> dict[str, str]:
    """Dotted-key params of a config, resolved where possible, as MLflow-ready strings.

    Lists become one value ("[a,b]"); an interpolation that cannot be resolved in this context (e.g.
    `${hydra:...}` outside a Hydra job) is kept as written; a mandatory value that was never set reads "???".
    """
    flat: dict[str, str] = {}
    excluded = set(exclude)
    for key, value in _items(cfg):
        if str(key) in excluded:
            continue
        _flatten_into(flat, str(key), value)
    return {sanitize_key(key): truncate(value, MAX_PARAM_VALUE_LENGTH) for key, value in flat.items()}


def _items(node: Mapping[str, Any] | DictConfig) -> Iterator[tuple[Any, Any]]:
    """(key, value) pairs of a mapping; for a DictConfig each value is resolved on its own so that one bad
    interpolation does not hide every other value."""
    if not isinstance(node, DictConfig):
        yield from node.items()
        return
    raw: dict[Any, Any] | None = None
    for key in node:
        try:
            value = node[key]
        except MissingMandatoryValue:
            value = "???"
        except Exception:  # an interpolation whose resolver or target is not available here
            if raw is None:
                raw = OmegaConf.to_container(node, resolve=False)
            value = raw[key]
        yield key, value


def _flatten_into(flat: dict[str, str], prefix: str, value: Any) -> None:
    if isinstance(value, (Mapping, DictConfig)):
        if len(value) == 0:
            flat[prefix] = "{}"
        for key, item in _items(value):
            _flatten_into(flat, f"{prefix}.{key}", item)
    elif isinstance(value, ListConfig):
        try:
            flat[prefix] = format_value(OmegaConf.to_container(value, resolve=True))
        except Exception:
            flat[prefix] = format_value(OmegaConf.to_container(value, resolve=False))
    else:
        flat[prefix] = format_value(value)


def chunked(items: Sequence[T], size: int) -> Iterator[list[T]]:
    """Consecutive slices of at most `size` items (MLflow caps params and tags per request at 100)."""
    if size < 1:
        raise ValueError(f"chunk size must be at least 1, got {size}")
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def key_overrides(overrides: Iterable[str]) -> list[tuple[str, str]]:
    """(key, value) of the overrides that define an experiment, sorted by key.

    Drops deletions (~key), paths/hydra/logger/resume overrides, and the +/++ prefixes. Group overrides
    (`dataset=v1_mix`, `hydra/launcher=joblib`) are kept or dropped by their first path element.
    """
    pairs: dict[str, str] = {}
    for override in overrides:
        override = str(override).strip()
        if not override or override.startswith("~") or "=" not in override:
            continue
        key, value = override.split("=", 1)
        key = key.lstrip("+")
        root = re.split(r"[./@]", key, maxsplit=1)[0]
        if root in EXCLUDED_OVERRIDE_ROOTS:
            continue
        pairs[key] = value.strip().strip("'\"")
    return sorted(pairs.items())


def override_keys(overrides: Iterable[str]) -> list[str]:
    """The keys of `key_overrides(overrides)`, in order."""
    return [key for key, _ in key_overrides(overrides)]


def build_run_name(
    task_name: str, overrides: Iterable[str] = (), max_length: int = MAX_RUN_NAME_LENGTH
) -> str:
    """A readable, deterministic run name: the task plus the experiment-defining overrides.

    Keys are shortened to their shortest unique dotted suffix (`sampling.weights.coco=0.2` -> `coco=0.2`).
    A name longer than `max_length` keeps its head and ends in a hash of the full name, so distinct
    override sets still get distinct names. Never random: seeding the RNGs makes MLflow's generated names
    collide across runs (lightning-hydra-template #613).
    """
    label = override_label(key_overrides(overrides))
    return _clip_name(task_name if not label else f"{task_name}-{label}", max_length)


def override_label(pairs: Sequence[tuple[str, str]]) -> str:
    """`key=value` pairs joined by commas, each key cut to its shortest unique dotted suffix."""
    short_keys = _shortest_unique_suffixes([key for key, _ in pairs])
    return ",".join(f"{short}={value}" for short, (_, value) in zip(short_keys, pairs, strict=True))


def _clip_name(name: str, max_length: int) -> str:
    name = _INVALID_RUN_NAME_CHARS.sub("_", name).strip("_") or "run"
    if len(name) <= max_length:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{name[: max_length - 9]}-{digest}"


def sweep_job_name(
    job_overrides: Iterable[str], fixed_overrides: Iterable[str], max_length: int = MAX_RUN_NAME_LENGTH
) -> str | None:
    """A sweep job's name: only the overrides that differ between the jobs (`synth_crowd=0.5`), keys cut to
    their shortest unique suffix. `fixed_overrides` are the sweep's command-line overrides that every job
    shares. None when nothing differs (the caller falls back to `build_run_name`)."""
    # By key: Hydra rewrites the values it passes to a job (`normalize=true` arrives as `normalize=True`).
    fixed = set(override_keys(fixed_overrides))
    differing = [(key, value) for key, value in key_overrides(job_overrides) if key not in fixed]
    return _clip_name(override_label(differing), max_length) if differing else None


def sweep_parent_name(
    task_name: str, swept_keys: Sequence[str], max_length: int = MAX_RUN_NAME_LENGTH
) -> str:
    """The parent run's name: the task and the keys the sweep varies (`quickstart-sweep-synth_crowd`)."""
    keys = sorted(set(swept_keys))
    short = ",".join(_shortest_unique_suffixes(keys))
    return _clip_name(f"{task_name}-sweep-{short}" if short else f"{task_name}-sweep", max_length)


def _shortest_unique_suffixes(keys: Sequence[str]) -> list[str]:
    """For each dotted key, the shortest tail of its path that no other key in `keys` ends with."""
    split = [key.split(".") for key in keys]
    shortened = []
    for index, parts in enumerate(split):
        for length in range(1, len(parts) + 1):
            tail = parts[-length:]
            clash = any(other[-length:] == tail for j, other in enumerate(split) if j != index)
            if not clash:
                break
        shortened.append(".".join(tail))
    return shortened
