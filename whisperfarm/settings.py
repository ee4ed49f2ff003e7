"""Settings base: every component is configured by one pydantic-settings class.

Values come from (highest first) CLI flags, `WHISPERFARM_<COMPONENT>_*` environment
variables, then the field defaults. CLI flags mirror the field names in kebab case
(`max_active` → `--max-active`), so the two never drift apart.

A setting the component cannot run with ends the process the way argparse ends it for an
unknown flag: one line per problem on stderr, named by its flag, and exit status 2 (a
pydantic traceback would bury the one line an operator needs).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Final, TypeVar, get_args

from pydantic import ValidationError
from pydantic_settings import BaseSettings, CliPositionalArg, SettingsConfigDict, SettingsError

S = TypeVar("S", bound="ComponentSettings")
USAGE_ERROR: Final = 2
"""Exit status of a bad flag or setting, the same as argparse's for an unknown flag."""
_POSITIONAL: Final = get_args(CliPositionalArg[object])[1]
"""The marker pydantic-settings puts on a positional argument's field."""


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
        """Read settings from `argv` (None: no CLI flags, env and defaults only).

        Raises SystemExit, as argparse does: 0 after `--help`, `USAGE_ERROR` after
        printing what is wrong with a flag, an environment variable or a value.
        """
        try:
            if argv is None:
                return cls()
            return cls(_cli_parse_args=list(argv), _cli_prog_name=prog)  # type: ignore[call-arg]
        except ValidationError as exc:
            lines = cls.describe_invalid(exc)
        except SettingsError as exc:  # e.g. an environment variable that is not valid JSON
            lines = [str(exc)]
        for line in lines:
            print(f"{prog}: {line}", file=sys.stderr)
        raise SystemExit(USAGE_ERROR)

    @classmethod
    def describe_invalid(cls, exc: ValidationError) -> list[str]:
        """One `--flag: what is wrong` line per error (a positional argument by its name)."""
        lines = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else ""
            info = cls.model_fields.get(field)
            if info is None:
                where = "settings"
            elif _POSITIONAL in info.metadata:
                where = field
            else:
                where = "--" + field.replace("_", "-")
            lines.append(f"{where}: {error['msg']}")
        return lines


def configure_logging(level: str) -> None:
    """One log format for every component, so `whisperfarm up` output reads as one log."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
