from __future__ import annotations

from pathlib import Path

import pytest

from dicomnode.config import load_config
from dicomnode.errors import ConfigError
from tests.conftest import REPO


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_shipped_config_is_valid_and_resolves_paths() -> None:
    cfg = load_config(REPO / "config.toml", environ={})
    assert cfg.node.ae_title == "SPINENODE" and cfg.node.port == 11112
    assert cfg.node.data_dir == REPO / "var"
    assert cfg.database.url == f"sqlite:///{REPO / 'var' / 'spinenode.db'}"
    assert [d.name for d in cfg.destinations] == ["pacs"]
    assert cfg.node.allowed_calling_aes == ()


def test_embedded_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, environ={})
    assert cfg.source is None and cfg.node.data_dir == tmp_path / "var"


def test_environment_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "[node]\nport = 104\n")
    cfg = load_config(path, environ={"SPINENODE_NODE_PORT": "11113",
                                     "SPINENODE_NODE_ALLOWED_CALLING_AES": "PACS1, PACS2",
                                     "SPINENODE_DATABASE_URL": "postgresql://u@h/db",
                                     "SPINENODE_NODE_FSYNC": "false"})
    assert cfg.node.port == 11113
    assert cfg.node.allowed_calling_aes == ("PACS1", "PACS2")
    assert cfg.database.url == "postgresql://u@h/db"
    assert cfg.node.fsync is False


@pytest.mark.parametrize(("text", "names"), [
    ("[node]\nport = 70000\n", ["node.port", "70000", "0..65535"]),
    ("[node]\nport = \"eleven\"\n", ["node.port", "'eleven'", "int"]),
    ("[node]\nae_title = \"WAY_TOO_LONG_AE_TITLE\"\n", ["node.ae_title", "1-16"]),
    ("[node]\nbogus = 1\n", ["[node]", "bogus", "accepted"]),
    ("[nodes]\n", ["nodes", "accepted"]),
    ("[database]\nurl = \"var/db.sqlite\"\n", ["database.url", "sqlite:///"]),
    ("[worker]\nheartbeat_s = 400\nlease_s = 300\n", ["heartbeat_s", "lease_s"]),
    ("[protocol]\nvibe_description_patterns = [\"(\"]\n", ["vibe_description_patterns", "regular expression"]),
    ("[logging]\nlevel = \"LOUD\"\n", ["logging.level", "DEBUG"]),
    ("[[destinations]]\nname = \"a\"\nae_title = \"X\"\nhost = \"h\"\nport = 1\n"
     "[[destinations]]\nname = \"a\"\nae_title = \"Y\"\nhost = \"h\"\nport = 2\n", ["unique"]),
    ("[node\n", ["not valid TOML"]),
    ("[[destinations]]\nname = \"a\"\nkind = \"ftp\"\n", ["destinations[a].kind", "'ftp'", "dimse, dicomweb"]),
    ("[[destinations]]\nname = \"a\"\nae_title = \"X\"\nport = 104\n", ["destinations[a].host", "empty"]),
    ("[[destinations]]\nname = \"a\"\nae_title = \"X\"\nhost = \"h\"\n", ["destinations[a].port = 0"]),
    ("[[destinations]]\nname = \"a\"\nae_title = \"X\"\nhost = \"h\"\nport = 1\nurl = \"http://x\"\n",
     ["url", "dicomweb"]),
    ("[[destinations]]\nname = \"w\"\nkind = \"dicomweb\"\nurl = \"pacs:8042\"\n", ["destinations[w].url", "http://"]),
    ("[[destinations]]\nname = \"w\"\nkind = \"dicomweb\"\nurl = \"http://p\"\nport = 104\n",
     ["ae_title, host, port", "dimse"]),
    ("[[destinations]]\nname = \"w\"\nkind = \"dicomweb\"\nurl = \"http://p\"\nusername = \"u\"\n",
     ["username and password"]),
    ("[[destinations]]\nname = \"w\"\nkind = \"dicomweb\"\nurl = \"http://p\"\ntls_ca_certificates = \"ca.pem\"\n",
     ["not https://"]),
])
def test_errors_name_the_key_the_value_and_what_is_accepted(tmp_path: Path, text: str, names: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ={})
    for name in names:
        assert name in str(info.value)


def test_unknown_environment_variable_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SPINENODE_NOPE_X"):
        load_config(write(tmp_path, ""), environ={"SPINENODE_NOPE_X": "1"})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.toml", environ={})


def test_tls_files_are_relative_to_the_config_and_checked(tmp_path: Path) -> None:
    (tmp_path / "tls").mkdir()
    for name in ("node.pem", "node.key", "ca.pem"):
        (tmp_path / "tls" / name).write_text("x")
    cfg = load_config(write(tmp_path, '[node]\ntls_certificate = "tls/node.pem"\ntls_private_key = "tls/node.key"\n'
                                      '[[destinations]]\nname = "pacs"\nae_title = "PACS"\nhost = "pacs.local"\n'
                                      'port = 2762\ntls = true\ntls_ca_certificates = "tls/ca.pem"\n'), environ={})
    assert cfg.node.tls_certificate == str(tmp_path / "tls" / "node.pem")
    assert cfg.destinations[0].tls_ca_certificates == str(tmp_path / "tls" / "ca.pem")
    with pytest.raises(ConfigError, match="tls_private_key go together"):
        load_config(write(tmp_path, '[node]\ntls_certificate = "tls/node.pem"\n'), environ={})
    with pytest.raises(ConfigError, match=r"node.tls_certificate = .*missing.pem.*no such file"):
        load_config(write(tmp_path, '[node]\ntls_certificate = "missing.pem"\ntls_private_key = "tls/node.key"\n'),
                    environ={})
    with pytest.raises(ConfigError, match="tls = false"):
        load_config(write(tmp_path, '[[destinations]]\nname = "p"\nae_title = "P"\nhost = "h"\nport = 1\n'
                                    'tls_ca_certificates = "tls/ca.pem"\n'), environ={})


def test_the_database_follows_data_dir_unless_given(tmp_path: Path) -> None:
    cfg = load_config(REPO / "config.toml", environ={"SPINENODE_NODE_DATA_DIR": str(tmp_path / "elsewhere")})
    assert cfg.database.url == f"sqlite:///{tmp_path / 'elsewhere' / 'spinenode.db'}"
    given = load_config(REPO / "config.toml", environ={"SPINENODE_NODE_DATA_DIR": str(tmp_path / "elsewhere"),
                                                        "SPINENODE_DATABASE_URL": "postgresql://u@h/db"})
    assert given.database.url == "postgresql://u@h/db"


def test_a_dicomweb_destination(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, '[[destinations]]\nname = "cloud"\nkind = "dicomweb"\n'
                                      'url = "https://pacs.example/dicom-web"\nusername = "u"\npassword = "p"\n'),
                      environ={})
    (dest,) = cfg.destinations
    assert (dest.kind, dest.url, dest.username, dest.ae_title, dest.port) == (
        "dicomweb", "https://pacs.example/dicom-web", "u", "", 0)


def test_the_suite_runs_without_spinenode_variables() -> None:
    """``tests/conftest.py`` takes every SPINENODE_* variable out of the environment the tests and
    their subprocesses see (run the suite with one set to check: this test would fail without it)."""
    import os

    assert not [name for name in os.environ if name.startswith("SPINENODE_")]
