"""Configuration: ``config.toml`` read with tomllib into frozen, validated dataclasses.

Every key can be overridden by an environment variable ``SPINENODE_<SECTION>_<KEY>`` (upper
case), e.g. ``SPINENODE_NODE_PORT=11113`` or ``SPINENODE_DATABASE_URL=postgresql://...``;
lists are comma-separated. Relative paths (``data_dir`` and a relative SQLite file) are taken
relative to the folder of the configuration file, so the node behaves the same whatever the
working directory it is started from.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from dicomnode.errors import ConfigError
from pipeline.precision import Precision, parse_precision

ENV_PREFIX = "SPINENODE_"
_AE_RE = re.compile(r"^[\x20-\x7e]{1,16}$")


def _check_ae(key: str, value: str) -> None:
    if not _AE_RE.match(value) or not value.strip() or "\\" in value:
        raise ConfigError(
            f"{key} = {value!r} is not a valid AE title: 1-16 printable ASCII characters, "
            "no backslash, not only spaces"
        )


def _check_port(key: str, value: int) -> None:
    if not 0 <= value <= 65535:
        raise ConfigError(f"{key} = {value!r} is not a TCP port: use 0..65535 (0: any free port)")


def _check_positive(key: str, value: float, *, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{key} = {value!r} must be {'>= 0' if allow_zero else '> 0'}")


@dataclass(frozen=True, kw_only=True)
class NodeConfig:
    ae_title: str = "SPINENODE"
    host: str = "0.0.0.0"
    port: int = 11112
    allowed_calling_aes: tuple[str, ...] = ()
    data_dir: Path = Path("var")
    require_called_ae: bool = True
    fsync: bool = True
    min_free_disk_mb: int = 500
    max_associations: int = 16
    tls_certificate: str = ""  # PEM; with tls_private_key: the SCP accepts TLS associations only
    tls_private_key: str = ""
    tls_ca_certificates: str = ""  # PEM CA bundle: clients must present a certificate it signed

    def __post_init__(self) -> None:
        _check_ae("node.ae_title", self.ae_title)
        _check_port("node.port", self.port)
        for ae in self.allowed_calling_aes:
            _check_ae("node.allowed_calling_aes", ae)
        _check_positive("node.min_free_disk_mb", self.min_free_disk_mb, allow_zero=True)
        _check_positive("node.max_associations", self.max_associations)
        _check_tls("node", self.tls_certificate, self.tls_private_key, self.tls_ca_certificates,
                   needs_certificate=True)


def _check_tls(where: str, cert: str, key: str, ca: str, *, needs_certificate: bool) -> None:
    if bool(cert) != bool(key):
        raise ConfigError(f"{where}.tls_certificate and {where}.tls_private_key go together: set both or neither")
    if needs_certificate and ca and not cert:
        raise ConfigError(f"{where}.tls_ca_certificates needs {where}.tls_certificate and tls_private_key "
                          "(the node must have a certificate to speak TLS)")
    for key_name, value in (("tls_certificate", cert), ("tls_private_key", key), ("tls_ca_certificates", ca)):
        if value and not Path(value).is_file():
            raise ConfigError(f"{where}.{key_name} = {value!r}: no such file")


DEFAULT_DATABASE_FILE = "spinenode.db"  # under node.data_dir when database.url is empty


@dataclass(frozen=True, kw_only=True)
class DatabaseConfig:
    url: str = ""  # empty: SQLite in node.data_dir (spinenode.db), wherever data_dir is

    def __post_init__(self) -> None:
        if self.url and "://" not in self.url:
            raise ConfigError(
                f"database.url = {self.url!r} is not a database URL: use e.g. "
                "'sqlite:///var/spinenode.db' or 'postgresql+psycopg://user@host/db'"
            )


@dataclass(frozen=True, kw_only=True)
class ProtocolConfig:
    """The protocol rule that decides which series are analysed and when they are complete."""

    slices_per_phase: int = 12
    max_axial_angle_deg: float = 30.0
    contrast_description_patterns: tuple[str, ...] = (
        r"post", r"\+c\b", r"(^|[^a-z])ce([^a-z]|$)", r"gd", r"contrast", r"(^|[^a-z])km([^a-z]|$)",
    )
    vibe_description_patterns: tuple[str, ...] = (
        r"vibe", r"lava", r"thrive", r"fl3d", r"3d[ _-]?gre", r"gre[ _-]?3d", r"fame", r"quick3d",
    )
    vibe_sequence_name_patterns: tuple[str, ...] = (r"fl3d", r"vibe", r"gre3d", r"3d")
    spacing_tolerance: float = 0.1
    quiet_period_s: float = 120.0
    check_interval_s: float = 2.0

    def __post_init__(self) -> None:
        if not 1 <= self.slices_per_phase <= 1000:
            raise ConfigError(f"protocol.slices_per_phase = {self.slices_per_phase!r}: use 1..1000")
        if not 0 < self.max_axial_angle_deg < 90:
            raise ConfigError(
                f"protocol.max_axial_angle_deg = {self.max_axial_angle_deg!r}: use 0 < angle < 90"
            )
        for key in ("contrast_description_patterns", "vibe_description_patterns",
                    "vibe_sequence_name_patterns"):
            for pattern in getattr(self, key):
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise ConfigError(
                        f"protocol.{key}: {pattern!r} is not a regular expression ({exc})"
                    ) from None
        _check_positive("protocol.spacing_tolerance", self.spacing_tolerance)
        _check_positive("protocol.quiet_period_s", self.quiet_period_s)
        _check_positive("protocol.check_interval_s", self.check_interval_s)


@dataclass(frozen=True, kw_only=True)
class WorkerConfig:
    lease_s: float = 300.0
    heartbeat_s: float = 20.0
    poll_interval_s: float = 1.0
    max_attempts: int = 5
    retry_base_s: float = 10.0
    retry_max_s: float = 600.0
    workers: int = 1
    torch_threads: int = 0  # 0: as many as the machine has cores
    use_unet: bool = True  # False: region growing only (no weights needed)
    unet_precision: Precision = Precision.AUTO  # auto: bf16 where the CPU has it natively, else fp32
    use_radiomics: bool = True  # Rad-score of the largest lesion with the shipped signature
    use_classifier: bool = True  # 3D classifier: metastasis vs primary malignant bone tumour

    def __post_init__(self) -> None:
        for key in ("lease_s", "heartbeat_s", "poll_interval_s", "retry_base_s", "retry_max_s"):
            _check_positive(f"worker.{key}", getattr(self, key))
        if self.heartbeat_s >= self.lease_s:
            raise ConfigError(
                f"worker.heartbeat_s = {self.heartbeat_s!r} must be shorter than "
                f"worker.lease_s = {self.lease_s!r}, or leases expire while a job runs"
            )
        if self.max_attempts < 1:
            raise ConfigError(f"worker.max_attempts = {self.max_attempts!r} must be >= 1")
        if self.workers < 0:
            raise ConfigError(f"worker.workers = {self.workers!r} must be >= 0 (0: no worker)")
        _check_positive("worker.torch_threads", self.torch_threads, allow_zero=True)
        try:  # the text of config.toml or the environment becomes the enum here, once
            object.__setattr__(self, "unet_precision", parse_precision(self.unet_precision))
        except ValueError:
            raise ConfigError(f"worker.unet_precision = {self.unet_precision!r}: "
                              "use 'auto', 'bf16' or 'fp32'") from None


@dataclass(frozen=True, kw_only=True)
class SenderConfig:
    """Results back to PACS: attempts and backoff per outbox item."""

    max_attempts: int = 8
    retry_base_s: float = 5.0
    retry_max_s: float = 600.0
    poll_interval_s: float = 1.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError(f"sender.max_attempts = {self.max_attempts!r} must be >= 1")
        for key in ("retry_base_s", "retry_max_s", "poll_interval_s"):
            _check_positive(f"sender.{key}", getattr(self, key))
        if self.retry_max_s < self.retry_base_s:
            raise ConfigError(f"sender.retry_max_s = {self.retry_max_s!r} must be >= sender.retry_base_s")


DESTINATION_KINDS = ("dimse", "dicomweb")


@dataclass(frozen=True, kw_only=True)
class Destination:
    """Where results go: ``kind = "dimse"`` (C-STORE to ae_title@host:port, optionally over TLS) or
    ``kind = "dicomweb"`` (STOW-RS to ``url``, optionally with HTTP basic authentication)."""

    name: str
    kind: str = "dimse"
    ae_title: str = ""
    host: str = ""
    port: int = 0
    tls: bool = False  # verify the PACS's certificate and host name
    tls_ca_certificates: str = ""  # PEM CA bundle for the PACS's certificate (default: the system's)
    tls_certificate: str = ""  # optional client certificate (mutual TLS)
    tls_private_key: str = ""
    url: str = ""  # dicomweb: the DICOMweb base, e.g. "http://pacs:8042/dicom-web" (STOW-RS: url + /studies)
    username: str = ""  # dicomweb: HTTP basic authentication
    password: str = field(default="", repr=False)  # never in a repr or a log line

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("destinations.name must not be empty")
        where = f"destinations[{self.name}]"
        if self.kind not in DESTINATION_KINDS:
            raise ConfigError(f"{where}.kind = {self.kind!r}: use one of {', '.join(DESTINATION_KINDS)}")
        if self.kind == "dicomweb":
            self._check_dicomweb(where)
            return
        _check_ae(f"{where}.ae_title", self.ae_title)
        if not self.host:
            raise ConfigError(f"{where}.host must not be empty")
        _check_port(f"{where}.port", self.port)
        if self.port == 0:
            raise ConfigError(f"{where}.port = 0: give the PACS's DICOM port")
        if self.url or self.username:
            raise ConfigError(f"{where}: url, username and password are for kind = \"dicomweb\"")
        if not self.tls and (self.tls_ca_certificates or self.tls_certificate):
            raise ConfigError(f"{where}: TLS files are set but tls = false")
        _check_tls(where, self.tls_certificate, self.tls_private_key, self.tls_ca_certificates, needs_certificate=False)

    def _check_dicomweb(self, where: str) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"{where}.url = {self.url!r}: kind = \"dicomweb\" needs an http:// or https:// URL")
        if self.ae_title or self.host or self.port or self.tls or self.tls_certificate:
            raise ConfigError(f"{where}: ae_title, host, port, tls and tls_certificate are for kind = \"dimse\"; "
                              "a DICOMweb destination has a url (https:// for TLS)")
        if bool(self.username) != bool(self.password):
            raise ConfigError(f"{where}.username and password go together: set both or neither")
        if self.tls_ca_certificates and not self.url.startswith("https://"):
            raise ConfigError(f"{where}.tls_ca_certificates is set but the url is not https://")
        _check_tls(where, "", "", self.tls_ca_certificates, needs_certificate=False)


@dataclass(frozen=True, kw_only=True)
class LoggingConfig:
    level: str = "INFO"
    json_file: str = "logs/spinenode.jsonl"  # under data_dir
    console: bool = True

    def __post_init__(self) -> None:
        if self.level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ConfigError(
                f"logging.level = {self.level!r}: use DEBUG, INFO, WARNING or ERROR"
            )


_LOOPBACK = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True, kw_only=True)
class HttpConfig:
    """The node's HTTP side in `serve`: /healthz and /metrics."""

    enabled: bool = True
    host: str = "127.0.0.1"  # loopback only unless told otherwise
    port: int = 8043  # not Orthanc's 8042; 0: any free port (written to <data_dir>/run/http.port)
    username: str = ""  # required, with password, when host is not loopback
    password: str = ""

    def __post_init__(self) -> None:
        _check_port("http.port", self.port)
        if bool(self.username) != bool(self.password):
            raise ConfigError("http.username and http.password go together: set both or neither")
        if self.enabled and self.host not in _LOOPBACK and not self.username:
            raise ConfigError(f"http.host = {self.host!r} is reachable from other machines: set http.username "
                              "and http.password (HTTP basic authentication), or keep http.host = \"127.0.0.1\"")


@dataclass(frozen=True, kw_only=True)
class Config:
    node: NodeConfig = field(default_factory=NodeConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    sender: SenderConfig = field(default_factory=SenderConfig)
    destinations: tuple[Destination, ...] = ()
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    source: Path | None = None  # the file it was read from, if any

    @property
    def data_dir(self) -> Path:
        return self.node.data_dir


_SECTIONS: dict[str, type] = {
    "node": NodeConfig,
    "database": DatabaseConfig,
    "protocol": ProtocolConfig,
    "worker": WorkerConfig,
    "sender": SenderConfig,
    "logging": LoggingConfig,
    "http": HttpConfig,
}


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Turn a TOML or environment value into the field's type, or say what is accepted."""
    text = isinstance(value, str)
    hint_s = str(hint)
    try:
        if hint is bool or hint_s == "bool":
            if isinstance(value, bool):
                return value
            if text and value.lower() in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
                return value.lower() in {"1", "true", "yes", "on"}
            raise ValueError
        if hint is int or hint_s == "int":
            if isinstance(value, bool):
                raise ValueError
            return int(value)
        if hint is float or hint_s == "float":
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if hint_s.startswith("tuple[str"):
            if text:
                return tuple(v.strip() for v in value.split(",") if v.strip())
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return tuple(value)
            raise ValueError
        if hint is Path or hint_s == "Path":
            if not text:
                raise ValueError
            return Path(value)
        if hint is str or hint_s == "str":
            if not text:
                raise ValueError
            return value
    except (TypeError, ValueError):
        pass
    else:
        return value
    accepted = hint_s.replace("typing.", "")
    raise ConfigError(f"{key} = {value!r} is not valid: expected {accepted}")


def _build(section: str, cls: type, raw: Mapping[str, Any]) -> Any:
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(
            f"unknown key(s) in [{section}]: {', '.join(unknown)}; accepted: {', '.join(sorted(names))}"
        )
    kwargs = {k: _coerce(f"{section}.{k}", v, hints[k]) for k, v in raw.items()}
    return cls(**kwargs)


def _env_overrides(raw: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    merged = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX + "CONFIG":
            continue
        rest = name[len(ENV_PREFIX):].lower()
        section = next((s for s in _SECTIONS if rest.startswith(s + "_")), None)
        if section is None:
            raise ConfigError(
                f"environment variable {name} does not name a setting: use "
                f"{ENV_PREFIX}<SECTION>_<KEY> with SECTION one of {', '.join(_SECTIONS)}"
            )
        merged.setdefault(section, {})[rest[len(section) + 1:]] = value
    return merged


def _resolve_paths(cfg_node: NodeConfig, db: DatabaseConfig, base: Path) -> tuple[NodeConfig, DatabaseConfig]:
    data_dir = cfg_node.data_dir if cfg_node.data_dir.is_absolute() else base / cfg_node.data_dir
    node = dataclasses.replace(cfg_node, data_dir=data_dir)
    url = db.url or f"sqlite:///{data_dir / DEFAULT_DATABASE_FILE}"
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
        url = prefix + str(base / url[len(prefix):])
    return node, dataclasses.replace(db, url=url)


TLS_FILES = ("tls_certificate", "tls_private_key", "tls_ca_certificates")


def _resolve_files(raw: Any, base: Path) -> Any:
    """TLS file names in a section, relative to the configuration file's folder."""
    if not isinstance(raw, dict):
        return raw
    return {k: str(base / v) if k in TLS_FILES and isinstance(v, str) and v and not Path(v).is_absolute() else v
            for k, v in raw.items()}


def load_config(path: Path | str | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read, override from the environment and validate the configuration.

    ``path`` None means ``$SPINENODE_CONFIG`` or ``./config.toml`` if it exists, else the
    embedded defaults (relative to the working directory).
    """
    environ = os.environ if environ is None else environ
    if path is None:
        path = environ.get(ENV_PREFIX + "CONFIG") or ("config.toml" if Path("config.toml").exists() else None)
    raw: dict[str, Any] = {}
    base = Path.cwd()
    source = None
    if path is not None:
        source = Path(path).resolve()
        try:
            raw = tomllib.loads(source.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"configuration file {str(path)!r} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"configuration file {str(path)!r} is not valid TOML: {exc}") from None
        base = source.parent
    raw = _env_overrides(raw, environ)
    allowed = set(_SECTIONS) | {"destinations"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"unknown section(s): {', '.join(unknown)}; accepted: {', '.join(sorted(allowed))}")
    sections = {}
    for name, cls in _SECTIONS.items():
        value = _resolve_files(raw.get(name, {}), base)
        if not isinstance(value, dict):
            raise ConfigError(f"[{name}] must be a table, got {value!r}")
        sections[name] = _build(name, cls, value)
    dests_raw = raw.get("destinations", [])
    if not isinstance(dests_raw, list):
        raise ConfigError("destinations must be an array of tables ([[destinations]])")
    destinations = tuple(_build("destinations", Destination, _resolve_files(d, base)) for d in dests_raw)
    names = [d.name for d in destinations]
    if len(set(names)) != len(names):
        raise ConfigError(f"destinations: names must be unique, got {names}")
    sections["node"], sections["database"] = _resolve_paths(sections["node"], sections["database"], base)
    return Config(**sections, destinations=destinations, source=source)
