"""Console sign-in: password hashes, tokens, session cookies, the cross-site check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.config import Settings
from pipeline.errors import ConfigError
from pipeline.services.console.auth import Operators, cross_site
from pipeline.services.console.passwords import scrypt_hash, verify_password
from pipeline.services.console.sessions import Sessions

FAST = 2**10


def test_a_password_matches_its_hash_and_nothing_else() -> None:
    stored = scrypt_hash("s3cret-enough", n=FAST)
    assert stored.startswith(f"scrypt${FAST}$8$1$")
    assert verify_password("s3cret-enough", stored)
    assert not verify_password("s3cret-enougH", stored)
    assert scrypt_hash("s3cret-enough", n=FAST) != stored, "a fresh salt each time"
    for broken in ("", "plain", "md5$1$2$3$4$5", stored.replace("$8$", "$x$"), stored[:-4]):
        assert not verify_password("s3cret-enough", broken)


def test_operators_from_settings_and_a_mounted_file(tmp_path: Path) -> None:
    secret = tmp_path / "operators.json"
    secret.write_text(json.dumps({"cy": {"password_hash": scrypt_hash("pw-of-cy", n=FAST)}}))
    settings = Settings(
        console={
            "operators": {
                "ada": {"password_hash": scrypt_hash("pw-of-ada", n=FAST)},
                "bob": {"token": "tok-bob"},
            },
            "operators_file": str(secret),
        }
    )
    operators = Operators.from_settings(settings)
    assert len(operators) == 3
    assert operators.check_password("ada", "pw-of-ada")
    assert operators.check_password("cy", "pw-of-cy")
    assert not operators.check_password("bob", "tok-bob"), "a token is no password"
    assert not operators.check_password("nobody", "pw-of-ada")
    assert operators.operator_for_token("tok-bob") == "bob"
    assert operators.operator_for_token("tok-bo") is None


def test_a_bad_operators_file_names_the_setting(tmp_path: Path) -> None:
    secret = tmp_path / "operators.json"
    secret.write_text('{"ada": {}}')
    with pytest.raises(ConfigError, match="OPERATORS_FILE"):
        Operators.from_settings(Settings(console={"operators_file": str(secret)}))
    with pytest.raises(ConfigError, match="cannot read"):
        Operators.from_settings(Settings(console={"operators_file": str(tmp_path / "none")}))


def test_sessions_are_signed_and_expire() -> None:
    sessions = Sessions("key", max_age=60)
    session, cookie = sessions.new("ada")
    assert sessions.read(cookie) == session
    assert Sessions("other key", 60).read(cookie) is None
    assert sessions.read(cookie[:-2] + "xx") is None
    assert sessions.read(None) is None
    assert Sessions("key", max_age=-1).read(cookie) is None, "expired"


def test_cross_site_posts_are_named() -> None:
    own = "http://console.local"
    assert cross_site(None, None, own, frozenset()) is None
    assert cross_site(own, "same-origin", own, frozenset()) is None
    assert cross_site("https://proxy", None, own, frozenset({"https://proxy"})) is None
    assert cross_site("http://evil", None, own, frozenset()) is not None
    assert cross_site(None, "cross-site", own, frozenset()) is not None
    assert cross_site(own, "same-site", own, frozenset()) is not None


def test_hash_password_command_prints_a_hash_that_verifies() -> None:
    result = CliRunner().invoke(
        main, ["console", "hash-password", "--stdin"], input="long-password\n"
    )
    assert result.exit_code == 0, result.output
    assert verify_password("long-password", result.output.strip())
    short = CliRunner().invoke(main, ["console", "hash-password", "--stdin"], input="short\n")
    assert short.exit_code == 2
