"""Read and check the environment once, into one Config object.

Every setting of the contract's §6 lives here. A bad value raises ConfigError
naming the variable, so start-up stops with one line instead of failing at the
first request.
"""
import base64
import json
import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit

DEFAULT_ROLE_CAPABILITIES = {
    "owner": ["read", "send", "admin"],
    "admin": ["read", "send", "admin"],
    "member": ["read", "send"],
    "viewer": ["read"],
    "org:admin": ["read", "send", "admin"],
    "org:member": ["read", "send"],
}
# `admin`: the organization's own API keys (and webhooks) over HTTP.
CAPABILITIES = ("read", "send", "sync", "admin")
# A webhook batch is read from a window of the change order this size at most (the feed's largest page).
MAX_WEBHOOK_BATCH_SIZE = 1000
DATABASE_SCHEMES = ("sqlite", "postgres", "postgresql")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# HMAC algorithms are never accepted for login tokens, whatever the setting.
ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                         "ES256", "ES256K", "ES384", "ES512", "EdDSA")


class ConfigError(ValueError):
    """A setting that cannot be used; the message names the variable."""

    def __init__(self, variable, reason):
        super().__init__(f"{variable}: {reason}")
        self.variable = variable


@dataclass(frozen=True)
class Config:
    database_url: str = "sqlite:///chatstore.db"
    jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_authorized_parties: tuple = ()
    jwt_algorithms: tuple = ("RS256", "ES256", "EdDSA")
    jwt_org_claim: str = "org_id"
    jwt_role_claim: str = "org_role"
    jwt_leeway_seconds: int = 30
    jwks_cache_seconds: int = 300
    jwks_timeout_seconds: float = 3
    jwks_min_refetch_seconds: int = 30
    role_capabilities: dict = field(default_factory=lambda: dict(DEFAULT_ROLE_CAPABILITIES))
    max_body_bytes: int = 65536
    max_pinned_chats: int = 3
    log_level: str = "INFO"
    log_format: str = "text"
    secret_key: str | None = None
    sync_max_body_bytes: int = 1048576
    tombstone_retention_days: int = 30
    cors_origins: tuple = ()
    metrics_token: str | None = None
    db_pool_size: int = 10
    webhook_batch_size: int = 100
    webhook_timeout_seconds: float = 10
    webhook_retry_hours: float = 72
    webhook_log_retention_days: int = 7
    webhook_allow_private_targets: bool = False
    webhook_secrets_key: str | None = None


def _optional(environ, name):
    value = environ.get(name, "").strip()
    return value or None


def _non_negative_int(environ, name, default):
    raw = _optional(environ, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(name, f"must be a whole number, got {raw!r}") from None
    if value < 0:
        raise ConfigError(name, f"must not be negative, got {value}")
    return value


def _positive_int(environ, name, default):
    value = _non_negative_int(environ, name, default)
    if value == 0:
        raise ConfigError(name, "must be at least 1")
    return value


def _positive_number(environ, name, default):
    raw = _optional(environ, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(name, f"must be a number, got {raw!r}") from None
    if not value > 0:
        raise ConfigError(name, f"must be greater than 0, got {raw}")
    return value


def _comma_list(environ, name, default=()):
    raw = _optional(environ, name)
    if raw is None:
        return tuple(default)
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _database_url(environ):
    url = _optional(environ, "DATABASE_URL") or Config.database_url
    scheme = urlsplit(url).scheme
    if scheme not in DATABASE_SCHEMES:
        raise ConfigError("DATABASE_URL", f"unknown database scheme {scheme!r}; "
                          "use sqlite:///path, postgresql://… or postgres://…")
    return url


def _http_url(environ, name):
    url = _optional(environ, name)
    if url is not None and urlsplit(url).scheme not in ("http", "https"):
        raise ConfigError(name, "must be an http:// or https:// URL")
    return url


def _algorithms(environ):
    algorithms = _comma_list(environ, "JWT_ALGORITHMS", Config.jwt_algorithms)
    refused = [name for name in algorithms if name not in ASYMMETRIC_ALGORITHMS]
    if refused or not algorithms:
        raise ConfigError("JWT_ALGORITHMS", f"only asymmetric algorithms are accepted "
                          f"({', '.join(ASYMMETRIC_ALGORITHMS)}); refused: {', '.join(refused) or 'empty list'}")
    return algorithms


def _role_capabilities(environ):
    raw = _optional(environ, "ROLE_CAPABILITIES")
    if raw is None:
        return dict(DEFAULT_ROLE_CAPABILITIES)
    try:
        value = json.loads(raw)
    except ValueError:
        raise ConfigError("ROLE_CAPABILITIES", "is not valid JSON") from None
    if not isinstance(value, dict) or not all(
            isinstance(caps, list) and all(cap in CAPABILITIES for cap in caps)
            for caps in value.values()):
        raise ConfigError("ROLE_CAPABILITIES", "must be a JSON object of role -> list of "
                          f"capabilities among {', '.join(CAPABILITIES)}")
    return value


def _log_level(environ):
    level = (_optional(environ, "LOG_LEVEL") or Config.log_level).upper()
    if level not in LOG_LEVELS:
        raise ConfigError("LOG_LEVEL", f"must be one of {', '.join(LOG_LEVELS)}")
    return level


def _log_format(environ):
    log_format = (_optional(environ, "LOG_FORMAT") or Config.log_format).lower()
    if log_format not in ("text", "json"):
        raise ConfigError("LOG_FORMAT", "must be text or json")
    return log_format


def _cors_origins(environ):
    """`*`, or exact origins: scheme://host[:port], nothing after it."""
    origins = _comma_list(environ, "CORS_ORIGINS")
    for origin in origins:
        parts = urlsplit(origin)
        if origin != "*" and (parts.scheme not in ("http", "https") or not parts.netloc
                              or parts.path or parts.query or parts.fragment):
            raise ConfigError("CORS_ORIGINS", f"{origin!r} is not an origin such as https://app.example.com "
                              "(scheme, host and port only), nor *")
    return origins


def _flag(environ, name):
    raw = (_optional(environ, name) or "0").lower()
    if raw not in ("0", "1", "true", "false"):
        raise ConfigError(name, f"must be 1 or 0, got {raw!r}")
    return raw in ("1", "true")


def _batch_size(environ):
    size = _positive_int(environ, "WEBHOOK_BATCH_SIZE", Config.webhook_batch_size)
    if size > MAX_WEBHOOK_BATCH_SIZE:
        raise ConfigError("WEBHOOK_BATCH_SIZE", f"must be at most {MAX_WEBHOOK_BATCH_SIZE}, got {size}")
    return size


def _fernet_key(environ):
    """WEBHOOK_SECRETS_KEY: a Fernet key, 32 bytes in URL-safe base64 (push/signing.py says how to make one)."""
    key = _optional(environ, "WEBHOOK_SECRETS_KEY")
    if key is not None:
        try:
            if len(base64.urlsafe_b64decode(key.encode("ascii"))) != 32:
                raise ValueError
        except (ValueError, UnicodeEncodeError):  # binascii.Error is a ValueError
            raise ConfigError("WEBHOOK_SECRETS_KEY", "must be a Fernet key: 32 bytes in URL-safe base64, as "
                              "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key()"
                              ".decode())'` prints") from None
    return key


def load_config(environ=None):
    """Build the Config from the environment, or raise ConfigError."""
    environ = os.environ if environ is None else environ
    max_pinned = _non_negative_int(environ, "MAX_PINNED_CHATS", Config.max_pinned_chats)
    return Config(
        database_url=_database_url(environ),
        jwks_url=_http_url(environ, "JWKS_URL"),
        jwt_issuer=_optional(environ, "JWT_ISSUER"),
        jwt_audience=_optional(environ, "JWT_AUDIENCE"),
        jwt_authorized_parties=_comma_list(environ, "JWT_AUTHORIZED_PARTIES"),
        jwt_algorithms=_algorithms(environ),
        jwt_org_claim=_optional(environ, "JWT_ORG_CLAIM") or Config.jwt_org_claim,
        jwt_role_claim=_optional(environ, "JWT_ROLE_CLAIM") or Config.jwt_role_claim,
        jwt_leeway_seconds=_non_negative_int(environ, "JWT_LEEWAY_SECONDS", Config.jwt_leeway_seconds),
        jwks_cache_seconds=_non_negative_int(environ, "JWKS_CACHE_SECONDS", Config.jwks_cache_seconds),
        jwks_timeout_seconds=_positive_number(environ, "JWKS_TIMEOUT_SECONDS", Config.jwks_timeout_seconds),
        jwks_min_refetch_seconds=_non_negative_int(environ, "JWKS_MIN_REFETCH_SECONDS",
                                                   Config.jwks_min_refetch_seconds),
        role_capabilities=_role_capabilities(environ),
        max_body_bytes=_non_negative_int(environ, "MAX_BODY_BYTES", Config.max_body_bytes),
        max_pinned_chats=max_pinned,
        log_level=_log_level(environ),
        log_format=_log_format(environ),
        secret_key=_optional(environ, "SECRET_KEY"),
        sync_max_body_bytes=_non_negative_int(environ, "SYNC_MAX_BODY_BYTES", Config.sync_max_body_bytes),
        tombstone_retention_days=_non_negative_int(environ, "TOMBSTONE_RETENTION_DAYS",
                                                   Config.tombstone_retention_days),
        cors_origins=_cors_origins(environ),
        metrics_token=_optional(environ, "METRICS_TOKEN"),
        db_pool_size=_positive_int(environ, "DB_POOL_SIZE", Config.db_pool_size),
        webhook_batch_size=_batch_size(environ),
        webhook_timeout_seconds=_positive_number(environ, "WEBHOOK_TIMEOUT_SECONDS", Config.webhook_timeout_seconds),
        webhook_retry_hours=_positive_number(environ, "WEBHOOK_RETRY_HOURS", Config.webhook_retry_hours),
        webhook_log_retention_days=_positive_int(environ, "WEBHOOK_LOG_RETENTION_DAYS",
                                                 Config.webhook_log_retention_days),
        webhook_allow_private_targets=_flag(environ, "WEBHOOK_ALLOW_PRIVATE_TARGETS"),
        webhook_secrets_key=_fernet_key(environ),
    )
