"""One typed settings object, built once at start-up from the environment and `.env`.

Nothing else in the project reads ``os.environ``: the CLI calls :func:`load_settings`
and passes the result (or the parts a component needs) into constructors.
"""

from __future__ import annotations

import ipaddress
import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings import SettingsError as _SourceError

from bot.adapters import PLATFORMS
from bot.feedback import EmojiTable, normalize_emoji
from bot.shards import Shards
from storage.database import is_database_url, url_password
from storage.redact import KINDS as REDACT_KINDS
from storage.redact import parse_kinds
from trainer.config import DataConfig, JobConfig, TrainConfig

# Each emoji once: its other names (Slack's `+1`, `thumbsup`, ...) are bot.feedback.ALIASES'.
DEFAULT_EMOJI_REWARDS: dict[str, float] = {"👍": 1.0, "👎": -1.0}
DEFAULT_FLAG_EMOJI: tuple[str, ...] = ("🚩",)


TrainHistory = Literal["all", "since-live"]  # THUMBTUNE_TRAIN_HISTORY
CompareMode = Literal["off", "on", "auto"]  # THUMBTUNE_COMPARE
MAX_PROMPT_CHARS = 100_000  # above any platform's message size (Slack's is 40,000)
MAX_REWARD = 10.0  # an emoji's reward; rewards are weights, and KTO's labels are their signs
# THUMBTUNE_COMPARE's old boolean spellings (pydantic's), kept working.
_SWITCHES = dict.fromkeys(("true", "1", "yes", "y", "t"), "on") | dict.fromkeys(("false", "0", "no", "n", "f"), "off")
MIN_TOKEN_CHARS = 16  # a dashboard token shorter than this is refused: it could be guessed


class SettingsError(Exception):
    """A setting has a wrong value; the message is one line naming the variable."""


class DataUnavailable(Exception):
    """The data folder or the database cannot be used (read-only, full, not a folder): the
    message is one line naming ``THUMBTUNE_DATA_DIR`` or ``THUMBTUNE_DB`` and saying why."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="THUMBTUNE_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    # --- model and generation -------------------------------------------------------
    model: str = Field("gpt2", description="Hugging Face model name or local model folder.")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    torch_threads: int = Field(1, ge=1, le=256)
    temperature: float = Field(0.9, gt=0.0, le=5.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_new_tokens: int = Field(48, ge=1, le=1024)
    candidates: int = Field(1, ge=1, le=8)
    best_of: int = Field(
        4, ge=1, le=16, description="answers sampled per prompt; the version's reward model shows the one it prefers"
    )
    compare: CompareMode = Field(
        "off",
        description="on: every answer is a comparison of two candidates (1️⃣ / 2️⃣); auto: only where the "
        "serving version's reward model is least sure, at most compare_share of answers",
    )
    compare_share: float = Field(
        0.1, ge=0.0, le=1.0, description="THUMBTUNE_COMPARE=auto: the most answers shown as comparisons"
    )
    challenger_share: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="share of answers (and one side of each comparison) from the previous version",
    )
    batch_window_ms: float = Field(10.0, ge=0.0, le=1000.0)
    max_batch_rows: int = Field(32, ge=1, le=512)
    queue_size: int = Field(64, ge=1, le=100_000)
    request_timeout_s: float = Field(120.0, gt=0.0)
    max_prompt_chars: int = Field(2000, ge=1, le=MAX_PROMPT_CHARS)

    # --- serving engine (bot.generation.vllm) ---------------------------------------
    engine: Literal["local", "vllm"] = Field(
        "local", description="local: the bot's own engine, in its process; vllm: the server(s) at THUMBTUNE_ENGINE_URL"
    )
    engine_url: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="base URLs of the vLLM servers (one per replica, comma-separated), e.g. http://gpu-host:8000",
    )
    engine_api_key: SecretStr | None = Field(None, description="the vLLM servers' --api-key, if they have one")
    engine_probe_s: float = Field(
        2.0, gt=0.0, le=300.0, description="how often each vLLM replica is checked (up, which version it holds)"
    )

    # --- feedback -------------------------------------------------------------------
    emoji_rewards: Annotated[dict[str, float], NoDecode] = Field(default_factory=lambda: dict(DEFAULT_EMOJI_REWARDS))
    correction_prefix: str = "better:"
    implicit: bool = Field(
        True,
        description=(
            "on: the asker's next message after an answer (thanks, a complaint, the question again or "
            "in other words) is kept as implicit feedback; off: nothing beyond reactions is read"
        ),
    )
    implicit_window_s: float = Field(
        300.0, gt=0.0, le=86_400.0, description="how soon after an answer asking again counts as a retry or rephrase"
    )

    # --- abuse limits ---------------------------------------------------------------
    prompts_per_minute: float = Field(6.0, ge=0.0, description="per person; 0 = no limit")
    prompt_burst: int = Field(3, ge=1)
    daily_vote_cap: int = Field(500, ge=0, description="votes per person per 24 h; 0 = no cap")
    flag_emoji: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(DEFAULT_FLAG_EMOJI))
    allowed_channels: Annotated[list[str], NoDecode] = Field(default_factory=list)
    admins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # --- catching up after downtime --------------------------------------------------
    reconcile_hours: float = Field(24.0, ge=0.0, description="re-read reactions on answers this recent; 0 = off")
    reconcile_max_messages: int = Field(500, ge=0)
    pending_hours: float = Field(
        24.0, ge=0.0, description="answer prompts left unanswered by a crash or stop if this recent; older: apology"
    )

    # --- storage and identity -------------------------------------------------------
    data_dir: Path = Path("data")
    db: Path | None = None
    database_url: SecretStr | None = Field(
        None,
        description="postgresql://USER:PASSWORD@HOST/NAME: PostgreSQL (several bot processes), not the file",
    )
    person_secret: SecretStr | None = None
    retention_days: int = Field(0, ge=0, description="purge prompt/answer texts older than this; 0 = keep")
    redact: Annotated[tuple[str, ...], NoDecode] = Field(
        REDACT_KINDS,
        description=(
            "what is scrubbed from texts leaving the database (snapshots, exports, changes.json): "
            "all, off, or a comma list of kinds"
        ),
    )

    # --- running --------------------------------------------------------------------
    adapter: str = Field("auto", description="auto, or a module of bot/adapters (shell, slack, discord)")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = Field("text", description="json: one JSON object per log line")
    http_host: str = "0.0.0.0"
    http_port: int = Field(3000, ge=0, le=65535)
    dashboard_host: str = Field("127.0.0.1", description="where /healthz and /metrics listen")
    dashboard_port: int = Field(8080, ge=0, le=65535, description="0 = no listener")
    dashboard_token: SecretStr | None = Field(
        None, description=f"bearer token, at least {MIN_TOKEN_CHARS} characters; required off loopback"
    )
    dashboard_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Host names the dashboard answers to besides loopback's (a reverse proxy's name); * = any",
    )
    shutdown_grace_s: float = Field(
        20.0, ge=0.0, description="on SIGTERM/SIGINT, finish answers in flight for up to this long"
    )

    # --- training: `thumbtune train` and the schedule run `python -m trainer run` -----
    # Defaults come from the trainer's config dataclasses (trainer.config), the one
    # source of truth for its options; bot.training.trainer_configs maps these onto them.
    registry_dir: str | None = Field(
        None, description="the model registry: a folder or an fsspec URI (default: DATA_DIR/models)"
    )
    artifacts: str | None = Field(
        None, description="where run snapshots and results go: a folder or an fsspec URI (default: DATA_DIR/artifacts)"
    )
    train_every_minutes: float = Field(60.0, ge=0.0, description="0 = no scheduled runs")
    train_cron: str | None = Field(None, description="crontab line (UTC); overrides the interval")
    train_min_new_votes: int = Field(20, ge=0)
    train_timeout_s: float = Field(3600.0, gt=0.0)
    train_launcher: str = Field("", description="replaces the Python interpreter, e.g. 'accelerate launch'")
    train_backend: Literal["local", "ray"] = Field(
        "local", description="local: a subprocess here; ray: a job on the Ray cluster at THUMBTUNE_RAY_ADDRESS"
    )
    ray_address: str | None = Field(None, description="the Ray head's dashboard address, e.g. http://gpu-host:8265")
    ray_gpus: float | None = Field(
        None, ge=0.0, description="GPUs a Ray training job asks for (default: 1 with THUMBTUNE_DEVICE=cuda, else 0)"
    )
    ray_cpus: float = Field(1.0, ge=0.0, description="CPUs a Ray training job asks for")
    ray_runtime_env: dict[str, Any] | None = Field(
        None, description='the Ray job\'s runtime_env as JSON, e.g. {"pip": ["thumbtune[train]"]}'
    )
    registry_poll_s: float = Field(30.0, ge=0.0, description="0 = do not watch the registry")
    announce_channel: str | None = Field(None, description="Slack/Discord channel id for 'new version live'")
    keep_versions: int = Field(JobConfig.keep_versions, ge=1, le=1000)
    train_min_examples: int = Field(DataConfig.min_examples, ge=1)
    gamma: float = Field(DataConfig.gamma, ge=0.0, le=1.0)
    held_out_fraction: float = Field(DataConfig.held_out_fraction, ge=0.0, lt=1.0)
    train_history: TrainHistory = Field(
        "all" if DataConfig.all_history else "since-live",
        description="all: every vote ever cast; since-live: only those since the current version went live",
    )
    train_learning_rate: float = Field(TrainConfig.learning_rate, gt=0.0, le=1.0)
    train_epochs: float = Field(TrainConfig.epochs, gt=0.0, le=100.0)
    train_batch_size: int = Field(TrainConfig.batch_size, ge=2, le=1024)
    train_lora: bool = TrainConfig.lora
    train_seed: int = Field(
        TrainConfig.seed, ge=0, description="seed for the run's shuffling, initialisation and sampling"
    )
    report_to: Literal["none", "tensorboard", "wandb", "mlflow", "trackio"] = Field(
        TrainConfig.report_to, description="where training curves go (TRL's report_to)"
    )

    # --- discord ---------------------------------------------------------------------
    discord_guild_id: int | None = Field(
        None, gt=0, description="Test server id: /ask is synced there only, and updates at once."
    )
    discord_shards: Annotated[Shards | None, NoDecode] = Field(
        None,
        description="the gateway shards this process runs, IDS/COUNT (0,1/4); unset: one process, no sharding",
    )

    # --- platform credentials keep their usual names --------------------------------
    discord_token: SecretStr | None = Field(None, validation_alias="DISCORD_TOKEN")
    slack_bot_token: SecretStr | None = Field(None, validation_alias="SLACK_BOT_TOKEN")
    slack_signing_secret: SecretStr | None = Field(None, validation_alias="SLACK_SIGNING_SECRET")
    slack_app_token: SecretStr | None = Field(None, validation_alias="SLACK_APP_TOKEN")
    slack_api_url: str | None = Field(None, validation_alias="SLACK_API_URL")

    @field_validator("emoji_rewards", mode="before")
    @classmethod
    def _parse_emoji_rewards(cls, value: object) -> object:
        # Accept JSON ({"👍": 1}) or the friendlier "👍=1,👎=-1".
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("{"):
                return json.loads(text)
            table: dict[str, float] = {}
            for item in filter(None, (part.strip() for part in text.split(","))):
                name, sep, reward = item.rpartition("=")
                if not sep or not name.strip():
                    raise ValueError(f"expected EMOJI=REWARD, got {item!r}")
                table[name.strip()] = float(reward)
            return table
        return value

    @field_validator("emoji_rewards")
    @classmethod
    def _check_emoji_rewards(cls, value: dict[str, float]) -> dict[str, float]:
        if not value:
            raise ValueError("needs at least one emoji")
        for name, reward in value.items():
            if not math.isfinite(reward) or abs(reward) > MAX_REWARD:
                raise ValueError(f"the reward of {name[:16]!r} must be a number from -{MAX_REWARD:g} to {MAX_REWARD:g}")
        EmojiTable(value)  # two names of one emoji (+1, thumbsup) must agree
        return value

    @field_validator("flag_emoji", "allowed_channels", "admins", "dashboard_allowed_hosts", "engine_url", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("compare", mode="before")
    @classmethod
    def _compare_mode(cls, value: object) -> object:
        """THUMBTUNE_COMPARE was a switch before it had ``auto``: true/false (and 1/0, yes/no) still mean on/off."""
        if isinstance(value, bool):
            return "on" if value else "off"
        if isinstance(value, str):
            lowered = value.strip().lower()
            return _SWITCHES.get(lowered, lowered)
        return value

    @field_validator("discord_shards", mode="before")
    @classmethod
    def _parse_discord_shards(cls, value: object) -> object:
        return Shards.parse(value) if isinstance(value, str) else value

    @field_validator("redact", mode="before")
    @classmethod
    def _parse_redact(cls, value: object) -> object:
        if isinstance(value, str):
            return parse_kinds(value)
        if isinstance(value, (list, tuple)):
            return parse_kinds(",".join(str(item) for item in value) or "off")
        return value

    @field_validator("adapter")
    @classmethod
    def _check_adapter(cls, value: str) -> str:
        value = value.strip().lower()
        if value != "auto" and value not in PLATFORMS:
            raise ValueError(f"expected auto or one of {', '.join(PLATFORMS)}, got {value!r}")
        return value

    @field_validator("admins")
    @classmethod
    def _check_admins(cls, value: list[str]) -> list[str]:
        for entry in value:
            platform, sep, user = entry.partition(":")
            if not sep or platform not in PLATFORMS or not user:
                raise ValueError(f"expected PLATFORM:USER_ID (e.g. slack:U012AB3CD), got {entry!r}")
        return value

    @model_validator(mode="after")
    def _check_flag_not_a_rating(self) -> Settings:
        rating = {normalize_emoji(name) for name in self.emoji_rewards}
        overlap = {name for name in self.flag_emoji if normalize_emoji(name) in rating}
        if overlap:
            raise ValueError(f"THUMBTUNE_FLAG_EMOJI: {', '.join(sorted(overlap))} is also a rating emoji")
        return self

    @field_validator("dashboard_token")
    @classmethod
    def _check_dashboard_token(cls, value: SecretStr | None) -> SecretStr | None:
        # Never echo the value: the message says only what is wrong with it.
        if value is None:
            return None
        token = value.get_secret_value().strip()
        if not token:
            raise ValueError(
                "is empty, which would not turn authentication off: unset it (loopback only) or give it "
                f"at least {MIN_TOKEN_CHARS} random characters"
            )
        if len(token) < MIN_TOKEN_CHARS:
            raise ValueError(
                f"is too short ({len(token)} characters): use at least {MIN_TOKEN_CHARS} random ones, "
                "e.g. the output of python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return SecretStr(token)

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: SecretStr | None) -> SecretStr | None:
        # The value holds a password: the message never quotes it.
        if value is None or not value.get_secret_value().strip():
            return None
        if not is_database_url(value.get_secret_value().strip()):
            raise ValueError("expected postgresql://USER:PASSWORD@HOST:PORT/NAME (unset it for the SQLite file)")
        return SecretStr(value.get_secret_value().strip())

    @field_validator("dashboard_allowed_hosts")
    @classmethod
    def _check_allowed_hosts(cls, value: list[str]) -> list[str]:
        hosts = [host.lower().rstrip(".") for host in value]
        for host in hosts:
            if host != "*" and (not host or any(c in host for c in "/ @?#")):
                raise ValueError(f"expected host names or addresses without a scheme or path (or *), got {host!r}")
        return hosts

    @model_validator(mode="after")
    def _check_dashboard(self) -> Settings:
        if self.dashboard_port and self.dashboard_token is None and not _is_loopback(self.dashboard_host):
            raise ValueError(
                f"THUMBTUNE_DASHBOARD_TOKEN: needed when THUMBTUNE_DASHBOARD_HOST is {self.dashboard_host}, "
                "not loopback (or set THUMBTUNE_DASHBOARD_PORT=0)"
            )
        return self

    @field_validator("engine_url")
    @classmethod
    def _check_engine_url(cls, value: list[str]) -> list[str]:
        urls = [url.rstrip("/") for url in value]
        for url in urls:
            parsed = urlsplit(url)
            if "@" in parsed.netloc:  # never echoed: it would put a password in the log
                raise ValueError("must not carry a user or password (the key goes in THUMBTUNE_ENGINE_API_KEY)")
            if parsed.scheme not in ("http", "https") or not parsed.hostname or parsed.query:
                raise ValueError(f"expected base URLs like http://gpu-host:8000, got {url[:80]!r}")
        if len(set(urls)) != len(urls):
            raise ValueError("names one server twice")
        return urls

    @model_validator(mode="after")
    def _check_engine(self) -> Settings:
        if self.engine == "vllm" and not self.engine_url:
            raise ValueError("THUMBTUNE_ENGINE_URL: needed with THUMBTUNE_ENGINE=vllm (e.g. http://gpu-host:8000)")
        return self

    @model_validator(mode="after")
    def _check_ray(self) -> Settings:
        if self.train_backend == "ray" and not self.ray_address:
            raise ValueError(
                "THUMBTUNE_RAY_ADDRESS: needed with THUMBTUNE_TRAIN_BACKEND=ray (e.g. http://gpu-host:8265)"
            )
        return self

    @field_validator("train_cron")
    @classmethod
    def _check_cron(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value.strip())
        except ValueError as exc:
            raise ValueError(f"not a crontab line ({exc}), e.g. '0 3 * * *' for 03:00 UTC daily") from None
        return value.strip()

    @field_validator("model")
    @classmethod
    def _check_model(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must name a model (e.g. gpt2) or a local folder")
        looks_like_path = value.startswith((".", "/", "~")) or Path(value).expanduser().exists()
        if looks_like_path and not Path(value).expanduser().is_dir():
            raise ValueError(f"folder {value} does not exist")
        return str(Path(value).expanduser()) if looks_like_path else value

    @model_validator(mode="after")
    def _check_paths(self) -> Settings:
        if self.data_dir.exists() and not self.data_dir.is_dir():
            raise ValueError(f"THUMBTUNE_DATA_DIR: {self.data_dir} exists and is not a folder")
        return self

    # --- derived values -------------------------------------------------------------
    @property
    def db_path(self) -> Path:
        return self.db if self.db is not None else self.data_dir / "thumbtune.db"

    @property
    def db_setting(self) -> str:
        """The variable that names the database, for messages about it."""
        if self.database_url is not None:
            return "THUMBTUNE_DATABASE_URL"
        return "THUMBTUNE_DB" if self.db is not None else "THUMBTUNE_DATA_DIR"

    @property
    def database(self) -> Path | str:
        """What :meth:`storage.database.Database.open` opens: the PostgreSQL URL, else the SQLite file."""
        return self.database_url.get_secret_value() if self.database_url is not None else self.db_path

    def database_exists(self) -> bool:
        """Whether there is a database to read (a server is assumed to be there; a file must be)."""
        return self.database_url is not None or self.db_path.is_file()

    def secret_values(self) -> list[str]:
        """The values of the secret settings, for the log to mask (bot.logs)."""
        secrets = (
            self.dashboard_token,
            self.discord_token,
            self.slack_bot_token,
            self.slack_signing_secret,
            self.slack_app_token,
            self.person_secret,
            self.database_url,
            self.engine_api_key,
        )
        values = [secret.get_secret_value() for secret in secrets if secret is not None]
        if self.database_url is not None:  # the password alone too: a driver's message may quote it
            values += [part for part in [url_password(self.database_url.get_secret_value())] if part]
        return values

    @property
    def shell_log_path(self) -> Path:
        """Where the log goes while the shell chat owns the terminal."""
        return self.data_dir / "thumbtune.log"

    @property
    def registry_uri(self) -> str:
        """The model registry (trained versions and the current pointer): an fsspec URI as
        given, or an absolute local folder."""
        return _location(self.registry_dir, default=self.data_dir / "models")

    @property
    def artifacts_uri(self) -> str:
        """The artifact store: an fsspec URI as given, or an absolute local folder (a trainer
        launched in another working folder finds it too)."""
        return _location(self.artifacts, default=self.data_dir / "artifacts")

    @property
    def artifacts_setting(self) -> str:
        """The variable that names the artifact store, for messages about it."""
        return "THUMBTUNE_ARTIFACTS" if self.artifacts is not None else "THUMBTUNE_DATA_DIR"

    def chosen_adapter(self) -> str:
        """The adapter `thumbtune run` starts: the setting, or the first platform with a token."""
        if self.adapter != "auto":
            return self.adapter
        if self.slack_bot_token is not None:
            return "slack"
        if self.discord_token is not None:
            return "discord"
        return "shell"


def default_of(name: str) -> Any:
    """A setting's default, for a component that takes the setting as a constructor argument:
    every default is declared once, here in :class:`Settings`."""
    return Settings.model_fields[name].get_default(call_default_factory=True)


def _env_name(field: str) -> str:
    info = Settings.model_fields.get(field)
    if info is not None and isinstance(info.validation_alias, str):
        return info.validation_alias
    return f"THUMBTUNE_{field.upper()}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: not known to stay on this machine
        return False


def _location(value: str | None, *, default: Path) -> str:
    """A store's place: an fsspec URI as given, else an absolute local folder (so that a
    trainer started in another working folder finds the same one)."""
    if value is not None and "://" in value:
        return value
    return str((Path(value) if value is not None else default).expanduser().resolve())


def load_settings(**overrides: Any) -> Settings:
    """Build the settings; a wrong value raises :class:`SettingsError` with one line."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = [str(part) for part in error.get("loc", ()) if part != "__root__"]
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        if loc:
            where = _env_name(loc[0])
            return_text = f"{where}: {message}"
        else:
            return_text = message
        raise SettingsError(return_text.replace("\n", " ")) from None
    except (_SourceError, ValueError) as exc:  # e.g. a .env value pydantic cannot parse
        raise SettingsError(str(exc).replace("\n", " ")) from None
