"""core.secrets on its own: what is encrypted, round trips, key rotation, refusals, and the
`secrets.keys` setting. The end-to-end guarantees are in tests/test_secrets.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.fernet import Fernet
from hypothesis import given
from hypothesis import strategies as st

from config import ConfigError, Settings, load_settings
from config.settings import SecretsSettings
from core.masking import map_secrets, mask_secrets
from core.secrets import (
    PREFIX,
    CiphertextGiven,
    SecretBox,
    SecretsNotConfigured,
    SecretUndecryptable,
    secret_box,
)

KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()


def stored_event(**overrides: Any) -> dict[str, Any]:
    """An event as the gateway dumps it, with a secret in each place one can be."""
    body: dict[str, Any] = {
        "event_id": "evt-1",
        "occurred_at": "2026-11-22T10:15:00Z",
        "user": {"id": "emp-42", "external_ids": {"fleet-eu": "42"}},
        "changes": {"email": "ada@example.com", "password": "Changes-Pw-1!"},
        "vendor_fields": {
            "fleet-eu": {"password": "Fleet-Pw-2!", "nested": {"deeper": {"Password": "Deep-3!"}}},
            "plaspy": [
                {"op": "add", "path": "/password", "value": "Plaspy-Pw-4!"},
                {"op": "add", "path": "/email", "value": "ada@example.com"},
            ],
        },
    }
    body.update(overrides)
    return body


SECRETS = ("Changes-Pw-1!", "Fleet-Pw-2!", "Deep-3!", "Plaspy-Pw-4!")


def test_seal_encrypts_every_secret_and_nothing_else() -> None:
    """changes.password, a password at any depth of a vendor_fields object (any case) and the
    value of a JSON Patch op on /password become enc:v1: values; the rest is untouched."""
    sealed = SecretBox([KEY_A]).seal(stored_event())
    text = orjson.dumps(sealed)
    for secret in SECRETS:
        assert secret.encode() not in text
    assert sealed["changes"]["email"] == "ada@example.com"
    assert sealed["changes"]["password"].startswith(PREFIX)
    fleet = sealed["vendor_fields"]["fleet-eu"]
    assert fleet["password"].startswith(PREFIX)
    assert fleet["nested"]["deeper"]["Password"].startswith(PREFIX)
    add_password, add_email = sealed["vendor_fields"]["plaspy"]
    assert add_password["value"].startswith(PREFIX)
    assert add_password["path"] == "/password" and add_password["op"] == "add"
    assert add_email == {"op": "add", "path": "/email", "value": "ada@example.com"}
    assert sealed["user"] == stored_event()["user"]
    assert text.count(PREFIX.encode()) == len(SECRETS)


def test_open_gives_back_the_event_with_types_and_nulls_kept() -> None:
    box = SecretBox([KEY_A])
    event = stored_event()
    event["vendor_fields"]["partoo"] = {"password": 12345678, "other": {"password": None}}
    sealed = box.seal(event)
    assert sealed["vendor_fields"]["partoo"]["password"].startswith(PREFIX)
    assert sealed["vendor_fields"]["partoo"]["other"] == {"password": None}  # nothing to hide
    assert box.open(sealed) == event


def test_equal_passwords_encrypt_differently() -> None:
    """A fresh IV per value: two users with one password cannot be told apart at rest."""
    box = SecretBox([KEY_A])
    assert box.encrypt("same") != box.encrypt("same")


def test_masking_hides_the_sealed_event_as_it_hides_the_clear_one() -> None:
    """Dead letters mask the stored (sealed) event: the same places read ***."""
    box = SecretBox([KEY_A])
    assert mask_secrets(box.seal(stored_event())) == mask_secrets(stored_event())
    assert "***" in orjson.dumps(mask_secrets(stored_event())).decode()


def test_rotation_first_key_encrypts_every_key_decrypts() -> None:
    old = SecretBox([KEY_A]).seal(stored_event())
    rotated = SecretBox([KEY_B, KEY_A])
    assert rotated.open(old) == stored_event()
    new = rotated.seal(stored_event())
    assert SecretBox([KEY_B]).open(new) == stored_event()  # encrypted with the first key
    with pytest.raises(SecretUndecryptable) as caught:
        SecretBox([KEY_A]).open(new)
    assert caught.value.path == "changes.password"
    with pytest.raises(SecretUndecryptable, match="no configured key decrypts it"):
        SecretBox([KEY_B]).open(old)


def test_undecryptable_values_are_refused_not_crashed_on() -> None:
    box = SecretBox([KEY_A])
    sealed = box.seal(stored_event())
    token = sealed["changes"]["password"]
    for broken in (token[:-4] + "AAAA", PREFIX + "not-a-token", PREFIX + "ünïcode", PREFIX):
        sealed["changes"]["password"] = broken
        with pytest.raises(SecretUndecryptable):
            box.open(sealed)
    with pytest.raises(SecretUndecryptable, match=r"no secrets\.keys"):
        SecretBox([]).open(box.seal(stored_event()))


def test_a_secret_stored_in_clear_before_encryption_is_taken_as_it_is() -> None:
    assert SecretBox([KEY_A]).open(stored_event()) == stored_event()


def test_an_incoming_secret_that_looks_encrypted_is_refused() -> None:
    box = SecretBox([KEY_A])
    sealed = box.seal(stored_event())
    with pytest.raises(CiphertextGiven) as caught:
        box.seal(sealed)  # a stored event posted back
    assert caught.value.paths == [
        "changes.password",
        "vendor_fields.fleet-eu.password",
        "vendor_fields.fleet-eu.nested.deeper.Password",
        "vendor_fields.plaspy.0.value",
    ]
    with pytest.raises(CiphertextGiven):
        box.check(stored_event(changes={"password": PREFIX + "anything"}))


def test_without_keys_an_event_with_a_secret_is_refused_and_one_without_passes() -> None:
    box = SecretBox([])
    assert not box.configured
    with pytest.raises(SecretsNotConfigured) as caught:
        box.seal(stored_event())
    assert caught.value.paths[0] == "changes.password"
    plain = stored_event(changes={"email": "ada@example.com"}, vendor_fields={})
    assert box.seal(plain) == plain
    assert box.check(plain) == []


def test_secret_box_is_built_once_per_set_of_keys() -> None:
    settings = SecretsSettings.model_validate({"keys": [KEY_A, KEY_B]})
    assert secret_box(settings) is secret_box(
        SecretsSettings.model_validate({"keys": [KEY_A, KEY_B]})
    )
    assert secret_box(settings) is not secret_box(SecretsSettings.model_validate({"keys": [KEY_B]}))


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["password", "Password", "op", "path", "value", "x"]), inner, max_size=4
        )
    ),
    max_leaves=20,
)


@given(JSON)
def test_any_json_round_trips_and_sealing_leaves_no_clear_secret(value: Any) -> None:
    box = SecretBox([KEY_A])
    try:
        sealed = box.seal(value)
    except CiphertextGiven:
        return
    assert box.open(sealed) == value

    def no_clear_secret(path: str, secret: Any) -> Any:
        assert isinstance(secret, str) and secret.startswith(PREFIX), path
        return secret

    map_secrets(sealed, no_clear_secret)


@given(JSON)
def test_seal_json_is_the_sealed_events_json(value: Any) -> None:
    """The shortcut for texts that never say `password` changes nothing: decrypted, the
    stored text is the sealed event, and no secret is left in clear in it."""
    box = SecretBox([KEY_A])
    try:
        sealed = box.seal(value)
    except CiphertextGiven:
        return
    stored = orjson.loads(box.seal_json(value))
    assert box.open(stored) == box.open(sealed) == value
    map_secrets(stored, lambda path, secret: _assert_sealed(path, secret))


def _assert_sealed(path: str, secret: Any) -> Any:
    assert isinstance(secret, str) and secret.startswith(PREFIX), path
    return secret


def test_seal_json_skips_the_walk_only_without_a_secret_word() -> None:
    box = SecretBox([KEY_A])
    plain = {"changes": {"email": "a@example.com"}}
    assert box.seal_json(plain) == orjson.dumps(plain)
    with_secret = {"changes": {"PassWord": "hunter2"}}
    assert b"hunter2" not in box.seal_json(with_secret)
    as_patch = {"vendor_fields": {"plaspy": [{"op": "add", "path": "/password", "value": "x1"}]}}
    assert orjson.loads(box.seal_json(as_patch))["vendor_fields"]["plaspy"][0]["value"].startswith(
        PREFIX
    )


# -- the setting ---------------------------------------------------------------------------


def write(tmp_path: Path, keys: Any) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(orjson.dumps({"secrets": {"keys": keys}}).decode())
    return path


def test_keys_are_checked_at_load_and_the_error_names_the_key_path(tmp_path: Path) -> None:
    bad = "not-a-fernet-key-but-a-secret-anyway"
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, [KEY_A, bad]))
    message = str(caught.value)
    assert "secrets.keys[1]" in message and "Fernet key" in message
    assert bad not in message  # a mistyped key is still a secret
    short = Fernet.generate_key().decode()[:-8]
    with pytest.raises(ConfigError, match=r"secrets\.keys\[0\]"):
        load_settings(write(tmp_path, [short]))
    settings = load_settings(write(tmp_path, [KEY_B, KEY_A]))
    assert [key.get_secret_value() for key in settings.secrets.keys] == [KEY_B, KEY_A]


def test_a_key_from_an_unset_variable_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"secrets\.keys"):
        load_settings(write(tmp_path, ["${USERSYNC_SECRET_KEY_NOT_SET_1234}"]), env={})
    settings = load_settings(write(tmp_path, ["${K}"]), env={"K": KEY_A})
    assert settings.secrets.keys[0].get_secret_value() == KEY_A


def test_no_keys_is_a_valid_configuration() -> None:
    assert Settings.model_validate({}).secrets.keys == []
