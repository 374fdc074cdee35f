"""Which datasets exist: the options of the `source` (single datasets) and `dataset` (mixtures) config groups.

A dataset is registered by a config file, nothing else: `conf/source/<key>.yaml` names its class with
`_target_`, and a user's own config folder on `hydra.searchpath` adds theirs without touching the package. The
registry is therefore whatever Hydra would find on the search path. Inside a Hydra app (or after `compose`) we
ask Hydra's own config repository, so every searchpath entry counts; otherwise we list the YAML files of the
package's conf/ folder plus any folders given.
"""
from __future__ import annotations

import importlib.resources
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig

log = logging.getLogger(__name__)

PACKAGE_CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def group_options(group: str, search_paths: Sequence[str] = ()) -> list[str]:
    """Sorted option names of a config group (e.g. 'source' -> ['coco', 'h36m', ...]).

    Args:
        group: the config group folder name.
        search_paths: extra config folders (`file:///abs/dir`, `pkg://module`, or a plain path) to scan in
            addition to what Hydra or the package provides.
    """
    folders = [str(PACKAGE_CONF_DIR), *search_paths]
    from_hydra: list[str] = []
    if GlobalHydra.instance().is_initialized():  # inside a Hydra app, or between initialize() and clear()
        if HydraConfig.initialized():
            folders.extend(HydraConfig.get().searchpath)  # the job's hydra.searchpath entries
        from_hydra = _hydra_group_options(group)
    names = set(_scan(group, folders)) | set(from_hydra)
    return sorted(names)


def registered_sources(search_paths: Sequence[str] = ()) -> list[str]:
    """The keys usable as mixture members: the conf/source/<key>.yaml files on the search path."""
    return group_options("source", search_paths)


def registered_datasets(search_paths: Sequence[str] = ()) -> list[str]:
    """The options of `dataset=`: single datasets and mixtures (conf/dataset/<name>.yaml)."""
    return group_options("dataset", search_paths)


def how_to_register(key: str) -> str:
    """A hint for an unknown dataset key: what is registered and how to add one."""
    known = ", ".join(registered_sources()) or "(none found)"
    return (
        f"'{key}' is not a registered source. Registered: {known}.\n"
        f"  To add your own dataset, write <your_conf>/source/{key}.yaml with `_target_: your_module.YourDataset` "
        f"and `root: ...`, plus <your_conf>/dataset/{key}.yaml with `defaults: [/source@members.{key}: {key}]`, "
        f"then pass hydra.searchpath=[file:///abs/path/to/your_conf] (see romp_hydra/data/template.py)."
    )


def _hydra_group_options(group: str) -> list[str]:
    """Ask the running Hydra instance, including the searchpath overrides of the current job."""
    loader = GlobalHydra.instance().config_loader()
    if HydraConfig.initialized():
        # Only a reload with the job's own config name and overrides sees its hydra.searchpath additions.
        job = HydraConfig.get()
        try:
            return loader.get_group_options(
                group,
                config_name=job.job.config_name,
                overrides=[*job.overrides.hydra, *job.overrides.task],
            )
        except Exception as err:  # noqa: BLE001  (a listing must never break the error message it serves)
            log.debug("could not list group %s with the job's overrides: %s", group, err)
    return loader.get_group_options(group)


def _scan(group: str, search_paths: Iterable[str]) -> list[str]:
    names = []
    for entry in search_paths:
        folder = _search_path_folder(entry)
        if folder is not None and (folder / group).is_dir():
            names.extend(path.stem for path in (folder / group).glob("*.yaml"))
    return names


def _search_path_folder(entry: str) -> Path | None:
    if entry.startswith("file://"):
        return Path(entry[len("file://"):])
    if entry.startswith("pkg://"):
        module = entry[len("pkg://"):].replace("/", ".")
        try:
            return Path(str(importlib.resources.files(module)))
        except (ModuleNotFoundError, TypeError):
            return None
    return Path(entry)
