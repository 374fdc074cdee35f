"""Configuration: schemas (ConfigStore), resolvers and the cross-field validation every entry point runs."""
from romp_hydra.config import resolvers as _resolvers  # noqa: F401  (registers ${project_root:})
from romp_hydra.config.errors import ConfigError, exit_with_config_error
from romp_hydra.config.schema import register_configs
from romp_hydra.config.validate import normalized_weights, validate_config

__all__ = ["ConfigError", "exit_with_config_error", "normalized_weights", "register_configs", "validate_config"]
