"""Secrets at rest: an event's secrets are encrypted before it is written to Redis.

What a secret is comes from `core.masking` (a `password` key in any ASCII case at any
depth, the `value` of any object whose `path` ends in `/password`, a JSON Patch operation with
or without `op`), so what is encrypted is exactly what dead letters mask.
The gateway seals an event just before storing it; a worker opens it in memory, just before
translation. Nothing else ever sees a secret in clear: status answers, dead letters and logs
read the stored (sealed) form, and dead letters mask it on top.

An encrypted secret is the string `enc:v1:<Fernet token>`. The token (AES-128-CBC with
HMAC-SHA256, from `cryptography`) encrypts the JSON text of the value, so a secret that is not
a string (a number in `vendor_fields`, say) is covered too and comes back with its type. The
keys are `secrets.keys`, under a `MultiFernet`: the first encrypts, every one decrypts, so a
new key goes first and the old one stays until the events stored under it have expired.

Incoming secrets that start with `enc:v1:` are refused (`CiphertextGiven`): a value that looks
like our ciphertext is a stored event posted back by mistake, and passing it to a vendor as a
password would be wrong either way. So a stored value starting with the prefix is always ours.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from config.settings import SecretsSettings
from core.masking import SECRET_KEYS, map_secrets

_SECRET_WORDS = tuple(word.encode() for word in SECRET_KEYS)

PREFIX = "enc:v1:"
"""What an encrypted secret starts with; `v1` names the scheme (Fernet over the JSON value)."""
_PREFIX_BYTES = PREFIX.encode()


class SecretsNotConfigured(Exception):
    """An event carries secrets but `secrets.keys` is empty: it cannot be stored safely."""

    def __init__(self, paths: Sequence[str]) -> None:
        super().__init__(f"no secrets.keys configured to encrypt {', '.join(paths)}")
        self.paths = list(paths)


class CiphertextGiven(ValueError):
    """An incoming secret starts with `enc:v1:`, the mark of usersync's own ciphertext."""

    def __init__(self, paths: Sequence[str]) -> None:
        super().__init__(f"{', '.join(paths)} start with {PREFIX}")
        self.paths = list(paths)


class SecretUndecryptable(Exception):
    """A stored secret that no configured key decrypts (or that is not a valid token)."""

    def __init__(self, path: str, why: str) -> None:
        super().__init__(f"{path}: {why}")
        self.path = path


def may_hold_secret(text: bytes) -> bool:
    """Whether a JSON text names a secret (`SECRET_KEYS`, compared ASCII-case-insensitively
    as `bytes.lower()` lowers); False means it has nothing to seal."""
    lowered = text.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def is_encrypted(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


class SecretBox:
    """Encrypts and decrypts the secrets of events with the configured keys."""

    def __init__(self, keys: Sequence[str]) -> None:
        self._fernet = MultiFernet([Fernet(key) for key in keys]) if keys else None

    @property
    def configured(self) -> bool:
        return self._fernet is not None

    def encrypt(self, value: Any) -> str:
        """`enc:v1:<token>` of one secret value (any JSON value)."""
        if self._fernet is None:
            raise SecretsNotConfigured(["(value)"])
        return PREFIX + self._fernet.encrypt(orjson.dumps(value)).decode("ascii")

    def decrypt(self, text: str, path: str = "(value)") -> Any:
        """The value `encrypt` was given; SecretUndecryptable if no key opens it."""
        if self._fernet is None:
            raise SecretUndecryptable(path, "no secrets.keys are configured")
        if not is_encrypted(text):
            raise SecretUndecryptable(path, f"not an {PREFIX} value")
        try:
            return orjson.loads(self._fernet.decrypt(text[len(PREFIX) :].encode("ascii")))
        except (InvalidToken, UnicodeEncodeError, orjson.JSONDecodeError) as exc:
            raise SecretUndecryptable(
                path, "no configured key decrypts it (was its key removed from secrets.keys?)"
            ) from exc

    def check(self, event: Any) -> list[str]:
        """The paths of the event's secrets; CiphertextGiven or SecretsNotConfigured if they
        cannot be stored (see `seal`)."""
        return self._walk(event, encrypt=False)[1]

    def seal(self, event: Any) -> Any:
        """A copy of a JSON event with every secret encrypted: what is stored. Refuses with
        CiphertextGiven a secret that already starts with `enc:v1:`, and with
        SecretsNotConfigured an event carrying a secret when there are no keys."""
        return self._walk(event, encrypt=True)[0]

    def seal_json(self, event: Any) -> bytes:
        """The JSON text of `seal(event)`. Every secret sits under a key or a patch path
        named by `SECRET_KEYS` (`core.masking`), which orjson writes as it is, and names
        are compared ASCII-case-insensitively, as `bytes.lower()` lowers: a text without
        such a word, in any case, has nothing to seal and skips the walk (most events)."""
        text = orjson.dumps(event)
        if not may_hold_secret(text):
            return text
        return orjson.dumps(self.seal(event))

    def seal_text(self, text: bytes) -> bytes:
        """`seal_json` of the event whose JSON text (written as orjson would: keys and their
        words as they are) is `text`: the text itself when it holds no secret, the common
        case, so the event need not be a dict first."""
        if not may_hold_secret(text):
            return text
        return orjson.dumps(self.seal(orjson.loads(text)))

    @staticmethod
    def holds_ciphertext(stored_json: bytes) -> bool:
        """Whether a stored event's JSON text has an encrypted value in it: one without any
        needs no `open` (orjson writes the `enc:v1:` prefix as it is)."""
        return _PREFIX_BYTES in stored_json

    def open(self, stored: Any) -> Any:
        """A copy of a stored event with its secrets decrypted, for use in memory only. A
        secret stored in clear (by a version before encryption at rest) is taken as it is."""

        def decrypt(path: str, value: Any) -> Any:
            return self.decrypt(value, path) if is_encrypted(value) else value

        return map_secrets(stored, decrypt)

    def _walk(self, event: Any, *, encrypt: bool) -> tuple[Any, list[str]]:
        paths: list[str] = []
        lookalikes: list[str] = []

        def visit(path: str, value: Any) -> Any:
            paths.append(path)
            if is_encrypted(value):
                lookalikes.append(path)
            if encrypt and self._fernet is not None and not lookalikes:
                return self.encrypt(value)
            return value

        sealed = map_secrets(event, visit)
        if lookalikes:
            raise CiphertextGiven(lookalikes)
        if paths and self._fernet is None:
            raise SecretsNotConfigured(paths)
        return sealed, paths


def secret_box(settings: SecretsSettings) -> SecretBox:
    """The box of the configured keys (built once per set of keys)."""
    return _box(tuple(key.get_secret_value() for key in settings.keys))


@lru_cache(maxsize=8)
def _box(keys: tuple[str, ...]) -> SecretBox:
    return SecretBox(keys)
