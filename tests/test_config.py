"""The YAML configuration contract (PRODUCT §4.1, §4.2): defaults, types, unknown keys, paths, NLR_CONFIG."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

import pytest

from gateway.config import Config, ConfigError, load_config

REPO = Path(__file__).resolve().parent.parent


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def leaf_keys(cls: type = Config, prefix: str = "") -> list[tuple[str, Any]]:
    """Every key a config file may set, dotted, with its declared type."""
    hints = typing.get_type_hints(cls)
    out: list[tuple[str, Any]] = []
    for f in dataclasses.fields(cls):
        if f.name in ("base_dir", "source"):
            continue
        tp = hints[f.name]
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(tp):
            out.extend(leaf_keys(tp, key + "."))
        else:
            out.append((key, tp))
    return out


def nested_yaml(dotted: str, value_yaml: str) -> str:
    """``a.b`` and ``3`` → ``a:\\n  b: 3``."""
    parts = dotted.split(".")
    lines = [f"{'  ' * i}{part}:" for i, part in enumerate(parts[:-1])]
    lines.append(f"{'  ' * (len(parts) - 1)}{parts[-1]}: {value_yaml}")
    return "\n".join(lines) + "\n"


def assert_one_line_naming(exc: ConfigError, *needles: str) -> None:
    message = str(exc)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"


# ---------------------------------------------------------------------- defaults
def test_defaults_without_any_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NLR_CONFIG", raising=False)
    config = load_config(None)
    assert config.database_url == f"sqlite:///{tmp_path}/var/register.db"
    assert config.keys_path == tmp_path / "var" / "keys.yaml"
    assert config.sip2.listen == ["tcp:6001:interface=127.0.0.1"]
    assert config.http.listen == ["tcp:8080:interface=127.0.0.1"]
    assert config.register.agency_id == "NLR"
    assert config.register.allow_synthetic_ids is False
    assert config.register.pin_max_failures == 5
    assert config.register.pin_lock_minutes == 15


def test_empty_file_means_defaults_relative_to_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = write(tmp_path / "etc" / "nlr.yaml", "# nothing set\n")
    config = load_config(cfg)
    assert config.database_url == f"sqlite:///{tmp_path}/etc/var/register.db"
    assert config.keys_path == tmp_path / "etc" / "var" / "keys.yaml"
    assert config.http.listen == ["tcp:8080:interface=127.0.0.1"]


def test_the_shipped_config_files_load() -> None:
    files = sorted((REPO / "config").glob("*.yaml"))
    assert files, "config/ should hold at least the demo config"
    for file in files:
        load_config(file)


def test_every_documented_key_is_accepted(tmp_path: Path) -> None:
    cfg = write(tmp_path / "nlr.yaml", """\
database:
  url: postgresql+psycopg://nlr@db.example.org/nlr
  pool_size: 10
  connect_timeout: 3
keys_file: /etc/nlr/keys.yaml
register:
  agency_id: NLR-TEST
  allow_synthetic_ids: true
  pin_max_failures: 3
  pin_lock_minutes: 30
  pin_hash_cost: 12
sip2:
  listen: ["tcp:6001:interface=127.0.0.1", "ssl:6002:privateKey=key.pem"]
http:
  listen: ["tcp:8080:interface=127.0.0.1"]
""")
    config = load_config(cfg)
    assert config.database_url == "postgresql+psycopg://nlr@db.example.org/nlr"
    assert config.database.pool_size == 10
    assert config.keys_path == Path("/etc/nlr/keys.yaml")
    assert config.register.agency_id == "NLR-TEST"
    assert config.register.allow_synthetic_ids is True
    assert config.register.pin_hash_cost == 12
    assert config.sip2.listen[1] == "ssl:6002:privateKey=key.pem"
    assert config.source == str(cfg)


# ---------------------------------------------------------------------- types
def _wrong_values(tp: Any) -> list[str]:
    """YAML values of the wrong type for a key of type ``tp``."""
    if typing.get_origin(tp) is list:
        return ['"tcp:8080"', "5", "[1, 2]", "{a: 1}"]
    if tp is bool:
        return ['"yes please"', "1", "[true]"]
    if tp is int:
        return ['"five"', "true", "2.5", "[5]"]
    if tp is str:
        return ["5", "true", "[a]", "{a: b}"]
    if set(typing.get_args(tp)) == {int, str}:  # a number or a word (server.workers: N or auto)
        return ["true", "2.5", "[5]", "{a: 1}", "many", "0"]
    raise AssertionError(f"no wrong values known for {tp}")


WRONG_TYPES = [(key, value) for key, tp in leaf_keys() for value in _wrong_values(tp)]


def test_the_key_list_covers_the_documented_contract() -> None:
    keys = {key for key, _ in leaf_keys()}
    assert {"database.url", "keys_file", "register.agency_id", "register.allow_synthetic_ids",
            "sip2.listen", "http.listen"} <= keys


@pytest.mark.parametrize(("key", "value"), WRONG_TYPES, ids=[f"{k}={v}" for k, v in WRONG_TYPES])
def test_every_key_is_type_checked(tmp_path: Path, key: str, value: str) -> None:
    cfg = write(tmp_path / "nlr.yaml", nested_yaml(key, value))
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert_one_line_naming(err.value, str(cfg), key)


@pytest.mark.parametrize(("key", "value"), [
    ("register.pin_hash_cost", "9"), ("register.pin_hash_cost", "21"), ("register.pin_max_failures", "0"),
    ("register.pin_lock_minutes", "0"), ("database.pool_size", "0"), ("database.connect_timeout", "0"),
    ("database.url", "mysql://x@y/z"), ("database.url", '""'), ("register.agency_id", '"  "'),
    ("keys_file", '""'), ("http.listen", '[""]'),
])
def test_values_out_of_range_are_refused(tmp_path: Path, key: str, value: str) -> None:
    cfg = write(tmp_path / "nlr.yaml", nested_yaml(key, value))
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert_one_line_naming(err.value, str(cfg), key)


@pytest.mark.parametrize("section", ["database", "register", "sip2", "http"])
def test_a_section_must_be_a_mapping(tmp_path: Path, section: str) -> None:
    cfg = write(tmp_path / "nlr.yaml", f"{section}: just a string\n")
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert_one_line_naming(err.value, str(cfg), section, "mapping")


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    cfg = write(tmp_path / "nlr.yaml", "- database\n- http\n")
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert_one_line_naming(err.value, str(cfg), "mapping")


# ---------------------------------------------------------------------- unknown keys
@pytest.mark.parametrize(("text", "dotted"), [
    ("databse:\n  url: sqlite:///x.db\n", "databse"),
    ("database:\n  uri: sqlite:///x.db\n", "database.uri"),
    ("register:\n  allow_synthetic_id: true\n", "register.allow_synthetic_id"),
    ("http:\n  listen: []\n  port: 8080\n", "http.port"),
    ("sip2:\n  Listen: []\n", "sip2.Listen"),
    ("keys: var/keys.yaml\n", "keys"),
    ("base_dir: /tmp\n", "base_dir"),
])
def test_unknown_key_names_file_and_dotted_key(tmp_path: Path, text: str, dotted: str) -> None:
    cfg = write(tmp_path / "nlr.yaml", text)
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert_one_line_naming(err.value, str(cfg), f"'{dotted}'", "unknown")


def test_a_key_given_twice_is_refused(tmp_path: Path) -> None:
    cfg = write(tmp_path / "nlr.yaml", "database:\n  url: sqlite:///a.db\ndatabase:\n  url: sqlite:///b.db\n")
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert_one_line_naming(err.value, str(cfg), "database", "twice")


# ---------------------------------------------------------------------- the file itself
def test_missing_file(tmp_path: Path) -> None:
    cfg = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert_one_line_naming(err.value, str(cfg), "not found")


def test_a_folder_is_not_a_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path)
    assert_one_line_naming(err.value, str(tmp_path))


@pytest.mark.parametrize("text", ["database:\n  url: [unclosed\n", "a: b: c\n", "database:\n\turl: x\n", "\xff\xfe"])
def test_invalid_yaml(tmp_path: Path, text: str) -> None:
    cfg = tmp_path / "nlr.yaml"
    cfg.write_bytes(text.encode("latin-1"))
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert_one_line_naming(err.value, str(cfg))


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    cfg = write(tmp_path / "nlr.yaml", "database:\n  url: sqlite:///x.db\nhttp:\n  listen: [unclosed\n")
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert_one_line_naming(err.value, str(cfg), "YAML", "line")


# ---------------------------------------------------------------------- paths
def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = write(tmp_path / "etc" / "nlr" / "nlr.yaml",
                "database:\n  url: sqlite:///data/register.db\nkeys_file: secret/keys.yaml\n")
    config = load_config(cfg)
    assert config.database_url == f"sqlite:///{tmp_path}/etc/nlr/data/register.db"
    assert config.keys_path == tmp_path / "etc" / "nlr" / "secret" / "keys.yaml"


def test_relative_config_path_and_parent_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "config" / "demo.yaml",
          "database:\n  url: sqlite:///../var/register.db\nkeys_file: ../var/keys.yaml\n")
    config = load_config("config/demo.yaml")
    assert Path(config.database_url.removeprefix("sqlite:///")).resolve() == tmp_path / "var" / "register.db"
    assert config.keys_path.resolve() == tmp_path / "var" / "keys.yaml"
    assert config.keys_path.is_absolute()


def test_absolute_paths_and_server_urls_are_kept(tmp_path: Path) -> None:
    cfg = write(tmp_path / "a" / "nlr.yaml",
                f"database:\n  url: sqlite:///{tmp_path}/b/r.db\nkeys_file: {tmp_path}/c/k.yaml\n")
    config = load_config(cfg)
    assert config.database_url == f"sqlite:///{tmp_path}/b/r.db"
    assert config.keys_path == tmp_path / "c" / "k.yaml"
    pg = write(tmp_path / "pg.yaml", "database:\n  url: postgresql+psycopg://nlr@127.0.0.1/nlr\n")
    assert load_config(pg).database_url == "postgresql+psycopg://nlr@127.0.0.1/nlr"
    mem = write(tmp_path / "mem.yaml", "database:\n  url: \"sqlite:///:memory:\"\n")
    assert load_config(mem).database_url == "sqlite:///:memory:"


# ---------------------------------------------------------------------- NLR_CONFIG
def test_nlr_config_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = write(tmp_path / "env" / "nlr.yaml", "register:\n  agency_id: FROM-ENV\n")
    monkeypatch.setenv("NLR_CONFIG", str(cfg))
    config = load_config()
    assert config.register.agency_id == "FROM-ENV"
    assert config.keys_path == tmp_path / "env" / "var" / "keys.yaml"
    # An explicit file wins over the environment.
    explicit = write(tmp_path / "explicit.yaml", "register:\n  agency_id: EXPLICIT\n")
    assert load_config(explicit).register.agency_id == "EXPLICIT"


def test_nlr_config_env_var_pointing_nowhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NLR_CONFIG", str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError) as err:
        load_config()
    assert_one_line_naming(err.value, str(tmp_path / "missing.yaml"))


def test_empty_nlr_config_means_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NLR_CONFIG", "")
    assert load_config().keys_path == tmp_path / "var" / "keys.yaml"


@pytest.mark.parametrize("text", [
    "? [a, b]\n: 1\n", "1: x\n", "~: x\n", "!!python/object/apply:os.system ['true']\n",
    "database: &a [*a]\n", "sip2:\n  listen: &l [*l]\n", "--- a\n--- b\n", "base: &b\n  url: x\ndatabase:\n  <<: *b\n",
    "database:\n  url: !!binary aGVsbG8=\n", "register:\n  pin_hash_cost: 1e3\n", "'': 1\n", "database: {url: null}\n",
])
def test_odd_yaml_gives_a_config_error_and_nothing_else(tmp_path: Path, text: str) -> None:
    cfg = write(tmp_path / "nlr.yaml", text)
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert_one_line_naming(err.value, str(cfg))


def test_the_register_section_is_the_registers_settings_key_for_key() -> None:
    """`register:` in the config becomes gateway.register.Settings unchanged: same keys, same defaults."""
    import dataclasses

    from gateway.config import RegisterConfig
    from gateway.register import Settings

    assert dataclasses.asdict(RegisterConfig()) == dataclasses.asdict(Settings())
