"""Pack the annotations of a dataset's members into our store: python -m romp_hydra.data.pack dataset=<name>

Each member of `cfg.dataset.members` is instantiated and its `pack_data()` called, which reads the original
annotation files once and writes the plain-array store (`romp_hydra.data.store`). Sources also pack
themselves on first use; this command does it up front (e.g. on a login node before a cluster job) and
always rewrites the store.
"""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from romp_hydra.config import ConfigError, exit_with_config_error, validate_config
from romp_hydra.data.base import DatasetNotFoundError
from romp_hydra.data.loader import build_sources
from romp_hydra.data.store import PackedStore, StoreFormatError


def pack_dataset(cfg: DictConfig) -> dict[str, Path | None]:
    """Call pack_data() on every member; returns member key -> store path (None: the source has no pack step)."""
    written: dict[str, Path | None] = {}
    for key, source in build_sources(cfg.dataset).items():
        pack = getattr(source, "pack_data", None)
        if pack is None:
            print(f"{key}: {type(source).__name__} has no pack step (it reads its annotation files directly); "
                  f"nothing to do")
            written[key] = None
            continue
        result = pack()
        if result is None:  # a custom pack step that does not say where it wrote
            print(f"{key}: packed")
            written[key] = None
            continue
        path = Path(result)
        store = PackedStore(path)
        print(f"{key}: packed {len(store)} images, {store.num_persons} persons into {path}")
        written[key] = path
    return written


@hydra.main(version_base="1.3", config_path="../../conf", config_name="pack")
def main(cfg: DictConfig) -> None:
    try:
        validate_config(cfg)
        pack_dataset(cfg)
    except ConfigError as err:
        exit_with_config_error(err)
    except (DatasetNotFoundError, StoreFormatError, ValueError, OSError) as err:
        print(f"pack failed: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
