"""Settings, read once from the environment and `.env` (prefix PARLEY_)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent
BUNDLED_MODEL = REPO_ROOT / "models" / "default"


class Settings(BaseSettings):
    """Every setting parley reads. `.env.example` lists them with their defaults."""

    model_config = SettingsConfigDict(
        env_prefix="PARLEY_", env_file=".env", env_ignore_empty=True, extra="ignore"
    )

    model: Path = Field(BUNDLED_MODEL, description="model directory to answer with")
    decoding: Literal["greedy", "beam", "sample"] | None = Field(
        None, description="decoding method; empty = the model's default"
    )
    beam_width: int | None = Field(None, ge=1, le=16)
    temperature: float | None = Field(None, gt=0)
    top_p: float | None = Field(None, gt=0, le=1)
    max_reply_tokens: int | None = Field(None, ge=1, le=256)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    def decode_overrides(self) -> dict[str, object]:
        """Decoding options the settings change, as `DecodeOptions` field names."""
        pairs = {
            "method": self.decoding,
            "beam_width": self.beam_width,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_length": self.max_reply_tokens,
        }
        return {k: v for k, v in pairs.items() if v is not None}


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment; a bad value raises `ConfigError` naming the setting."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"PARLEY_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(problems) from None
