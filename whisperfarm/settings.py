"""Settings base: every component is configured by one pydantic-settings class.

Values come from (highest first) CLI flags, `WHISPERFARM_<COMPONENT>_*` environment
variables, then the field defaults. CLI flags mirror the field names in kebab case
(`max_active` → `--max-active`), so the two never drift apart.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TypeVar

from pydantic_settings import BaseSettings, SettingsConfigDict

S = TypeVar("S", bound="ComponentSettings")


class ComponentSettings(BaseSettings):
    """Common behaviour; each component subclasses it with its own `env_prefix`."""

    model_config = SettingsConfigDict(
        cli_kebab_case=True,
        cli_implicit_flags=True,
        cli_avoid_json=True,
        cli_enforce_required=False,
        extra="ignore",
    )

    log_level: str = "INFO"

    @classmethod
    def from_cli(cls: type[S], argv: Sequence[str] | None, prog: str) -> S:
        """Read settings from `argv` (None: no CLI flags, env and defaults only)."""
        if argv is None:
            return cls()
        return cls(_cli_parse_args=list(argv), _cli_prog_name=prog)  # type: ignore[call-arg]


def configure_logging(level: str) -> None:
    """One log format for every component, so `whisperfarm up` output reads as one log."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
