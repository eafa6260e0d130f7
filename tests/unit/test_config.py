"""Settings from PIPELINE_* variables: passthrough, hidden secrets, reserved keys, paths."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import ValidationError
from pydantic_settings import SettingsError

from pipeline.cli import main
from pipeline.config import Settings, bundled_dir, load_settings
from pipeline.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("no_pipeline_settings")


def test_defaults() -> None:
    settings = Settings()
    assert settings.client_config() == {"bootstrap.servers": "127.0.0.1:9092"}
    assert settings.topic_prefix == ""
    assert settings.topic("message_received") == "message_received"


def test_bootstrap_servers_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_BOOTSTRAP_SERVERS", "kafka-0:9092,kafka-1:9092")
    assert Settings().client_config()["bootstrap.servers"] == "kafka-0:9092,kafka-1:9092"


def test_passthrough_becomes_librdkafka_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_KAFKA__SASL_PASSWORD", "hunter2-secret")
    monkeypatch.setenv("PIPELINE_KAFKA__SASL_USERNAME", "svc-agent")
    monkeypatch.setenv("PIPELINE_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    config = Settings().client_config()
    assert config["sasl.password"] == "hunter2-secret"
    assert config["sasl.username"] == "svc-agent"
    assert config["security.protocol"] == "SASL_SSL"
    assert not any("_" in key for key in config)


def test_consumer_and_producer_passthrough(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_CONSUMER__FETCH_MIN_BYTES", "1024")
    monkeypatch.setenv("PIPELINE_PRODUCER__LINGER_MS", "5")
    monkeypatch.setenv("PIPELINE_PRODUCER__SASL_PASSWORD", "topsecret")
    settings = Settings()
    assert settings.consumer_config()["fetch.min.bytes"] == "1024"
    assert "linger.ms" not in settings.consumer_config()
    assert settings.producer_config()["linger.ms"] == "5"
    assert settings.producer_config()["sasl.password"] == "topsecret"
    assert "linger.ms" not in settings.client_config()
    assert "topsecret" not in repr(settings)
    assert "topsecret" not in str(settings)


def test_passthrough_given_directly() -> None:
    settings = Settings(kafka={"SASL_MECHANISM": "SCRAM-SHA-512"})
    assert settings.client_config()["sasl.mechanism"] == "SCRAM-SHA-512"


def test_secrets_never_appear_when_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_KAFKA__SASL_PASSWORD", "hunter2-secret")
    monkeypatch.setenv("PIPELINE_KAFKA__SSL_KEY_PASSWORD", "key-pass-77")
    settings = Settings()
    for text in (repr(settings), str(settings), f"{settings}", settings.model_dump_json()):
        assert "hunter2-secret" not in text
        assert "key-pass-77" not in text
    assert "sasl.password" in repr(settings)
    assert "hunter2-secret" not in repr(settings.model_dump())


@pytest.mark.parametrize(
    ("variable", "setting"),
    [
        ("PIPELINE_KAFKA__ENABLE_AUTO_COMMIT", "enable.auto.commit"),
        ("PIPELINE_KAFKA__GROUP_ID", "group.id"),
        ("PIPELINE_CONSUMER__ENABLE_AUTO_OFFSET_STORE", "enable.auto.offset.store"),
        ("PIPELINE_CONSUMER__PARTITION_ASSIGNMENT_STRATEGY", "partition.assignment.strategy"),
        ("PIPELINE_PRODUCER__BOOTSTRAP_SERVERS", "bootstrap.servers"),
    ],
)
def test_reserved_settings_are_refused(
    monkeypatch: pytest.MonkeyPatch, variable: str, setting: str
) -> None:
    monkeypatch.setenv(variable, "x")
    with pytest.raises(ValidationError) as info:
        Settings()
    message = str(info.value)
    assert f"{setting} cannot be passed through" in message
    assert "the runtime sets them" in message


def test_reserved_settings_are_refused_in_dotted_form() -> None:
    with pytest.raises(ValidationError, match=r"group\.id cannot be passed through"):
        Settings(consumer={"group.id": "mine"})


def test_topic_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_TOPIC_PREFIX", "staging.")
    settings = Settings()
    assert settings.topic("message_received") == "staging.message_received"
    assert settings.topic("dead_letters") == "staging.dead_letters"


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.topic_prefix = "other."  # type: ignore[misc]


def test_resource_dir_defaults_to_the_source_tree() -> None:
    settings = Settings()
    assert settings.resource_dir("schemas") == bundled_dir("schemas")
    assert settings.resource_dir("schemas").resolve() == REPO / "schemas"
    assert settings.resource_dir("topics").resolve() == REPO / "topics"
    assert (settings.resource_dir("schemas") / "pipeline.events.Metadata.avsc").is_file()


def test_resource_dir_configured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PIPELINE_SCHEMAS_DIR", str(tmp_path / "schemas"))
    settings = Settings(topics_dir=tmp_path / "topics")
    assert settings.resource_dir("schemas") == tmp_path / "schemas"
    assert settings.resource_dir("topics") == tmp_path / "topics"


def test_extra_folders_extend_the_bundled_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_EXTRA_SCHEMA_DIRS", "/srv/a:/srv/b")
    monkeypatch.setenv("PIPELINE_EXTRA_TOPIC_DIRS", '["/srv/with space", "/srv/c"]')
    settings = Settings()
    assert settings.schema_dirs() == (bundled_dir("schemas"), Path("/srv/a"), Path("/srv/b"))
    assert settings.topic_dirs() == (
        bundled_dir("topics"),
        Path("/srv/with space"),
        Path("/srv/c"),
    )


def test_no_extra_folders_by_default() -> None:
    assert Settings().schema_dirs() == (bundled_dir("schemas"),)
    assert Settings().topic_dirs() == (bundled_dir("topics"),)


def test_replaced_folder_comes_before_the_extra_ones(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PIPELINE_SCHEMAS_DIR", str(tmp_path / "ours"))
    monkeypatch.setenv("PIPELINE_EXTRA_SCHEMA_DIRS", str(tmp_path / "mine"))
    assert Settings().schema_dirs() == (tmp_path / "ours", tmp_path / "mine")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PIPELINE_EXTRA_SCHEMA_DIRS", "[1"),
        ("PIPELINE_MAX_IN_FLIGHT", "0"),
        ("PIPELINE_METRICS_PORT", "70000"),
    ],
)
def test_out_of_range_values_are_refused(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError):
        Settings()


SECRET = "hunter2-do-not-print"


@pytest.mark.parametrize(
    "env",
    [
        # A reserved key next to a password: the validator sees the whole dict.
        {"PIPELINE_KAFKA__SASL_PASSWORD": SECRET, "PIPELINE_KAFKA__GROUP_ID": "g"},
        {"PIPELINE_METRICS_PORT": SECRET},
        {"PIPELINE_GATEWAY__MAX_TEXT_CHARS": SECRET},
        {"PIPELINE_GATEWAY": "{" + SECRET},
    ],
)
def test_settings_errors_name_the_variable_never_the_value(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert SECRET not in str(caught.value) and SECRET not in repr(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert "PIPELINE_" in str(caught.value)
    # Settings() itself (services build it when none is passed) hides inputs too.
    with pytest.raises((ValidationError, SettingsError)) as direct:
        Settings()
    assert SECRET not in str(direct.value)


def test_settings_error_names_each_bad_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_METRICS_PORT", "x")
    monkeypatch.setenv("PIPELINE_GATEWAY__PORT", "y")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "PIPELINE_METRICS_PORT: Input should be a valid integer" in str(caught.value)
    assert "PIPELINE_GATEWAY__PORT: Input should be a valid integer" in str(caught.value)


def test_pipeline_run_prints_a_bad_setting_without_its_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PIPELINE_KAFKA__SASL_PASSWORD", SECRET)
    monkeypatch.setenv("PIPELINE_KAFKA__ENABLE_AUTO_COMMIT", "true")
    result = CliRunner().invoke(main, ["run", "echo"])
    assert result.exit_code == 2
    assert "PIPELINE_KAFKA: enable.auto.commit cannot be passed" in result.output
    assert SECRET not in result.output
    assert "Traceback" not in result.output


def test_gateway_limits_have_sane_defaults() -> None:
    gateway = Settings().gateway
    assert gateway.max_text_chars == 32_768
    assert gateway.max_messages_per_request == 50
    assert gateway.max_attachments == 10
    assert gateway.max_id_chars == 2048
    assert gateway.public_docs is False


def test_a_mangled_operator_hash_is_refused_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.services.console.auth import hash_password

    good = hash_password("correct horse battery")
    # export H="scrypt$16384$8$1$..." in double quotes: the shell expands $1, $16384, ...
    mangled = "scrypt6384$8$" + good.split("$", 4)[4]
    monkeypatch.setenv(
        "PIPELINE_CONSOLE__OPERATORS", f'{{"ada": {{"password_hash": "{mangled}"}}}}'
    )
    with pytest.raises(ConfigError) as raised:
        load_settings()
    message = str(raised.value)
    assert "PIPELINE_CONSOLE__OPERATORS" in message and "single quotes" in message
    assert mangled not in message
    monkeypatch.setenv("PIPELINE_CONSOLE__OPERATORS", f'{{"ada": {{"password_hash": "{good}"}}}}')
    assert "ada" in load_settings().console.operators


def test_a_short_chat_token_secret_is_refused_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_GATEWAY__CHAT_TOKEN_SECRET", "dev-secret")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert "PIPELINE_GATEWAY__CHAT_TOKEN_SECRET" in str(raised.value)
    assert "at least 16 characters" in str(raised.value)
    assert "dev-secret" not in str(raised.value)
    monkeypatch.setenv("PIPELINE_GATEWAY__CHAT_TOKEN_SECRET", "0123456789abcdef")
    assert load_settings().gateway.chat_token_secret is not None
