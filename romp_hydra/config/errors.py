"""The one exception type for a bad configuration, and how it is shown to the user."""
from __future__ import annotations

import sys
from typing import Any, NoReturn


class ConfigError(ValueError):
    """A configuration value is wrong. Carries the key, the value and the fix, so the message is actionable."""

    def __init__(self, key: str, value: Any, problem: str, fix: str):
        self.key, self.value, self.problem, self.fix = key, value, problem, fix
        super().__init__(f"{key}={value!r}: {problem}\n  fix: {fix}")


def exit_with_config_error(err: ConfigError) -> NoReturn:
    """Print one readable message (no traceback) and exit with status 2, like argparse does for bad arguments."""
    print(f"Invalid configuration: {err}", file=sys.stderr)
    sys.exit(2)
