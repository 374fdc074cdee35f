"""`build_tracker(cfg, rank)`: the tracker `cfg.logger` asks for."""

from __future__ import annotations

from omegaconf import DictConfig

from romp_hydra.tracking.base import NullTracker, Tracker


def build_tracker(cfg: DictConfig, rank: int = 0) -> Tracker:
    """The tracker `cfg.logger.kind` asks for on rank 0; a `NullTracker` on every other rank.

    MLflow is imported only when it is used, so `logger=none` runs never pay for it.
    """
    if rank != 0:
        return NullTracker()
    logger_cfg = cfg.get("logger") if isinstance(cfg, (DictConfig, dict)) else None
    kind = (logger_cfg or {}).get("kind", "none")
    if kind == "none":
        return NullTracker()
    if kind == "mlflow":
        from romp_hydra.tracking.mlflow_tracker import MLflowTracker

        return MLflowTracker(
            tracking_uri=logger_cfg.get("tracking_uri"),
            experiment_name=logger_cfg.get("experiment_name") or "romp_hydra",
            run_name=logger_cfg.get("run_name"),
        )
    raise ValueError(f"logger.kind={kind!r} is not a known tracker; use logger=mlflow or logger=none")
