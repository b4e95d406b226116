"""Configuration loading: interpolation, validation, and errors that name the key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import ConfigError, load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


VENDOR = "kind: fleet, base_url: 'http://127.0.0.1:1/api', auth: {token: flt_sk_x}"


def test_interpolates_environment_variables_and_defaults(tmp_path: Path) -> None:
    """`${VAR}` takes the environment's value and `${VAR:-default}` falls back to the default."""
    path = write(
        tmp_path, "sources: [{name: hris, token: '${TOKEN}'}]\ngateway: {port: '${PORT:-9090}'}\n"
    )
    settings = load_settings(path, {"TOKEN": "t" * 20})
    assert settings.sources[0].token.get_secret_value() == "t" * 20
    assert settings.gateway.port == 9090


def test_secrets_do_not_appear_in_settings_repr(tmp_path: Path) -> None:
    """A loaded secret is masked when the settings are printed or logged."""
    path = write(tmp_path, "sources: [{name: hris, token: '${TOKEN}'}]\n")
    settings = load_settings(path, {"TOKEN": "very-secret-token-123"})
    assert "very-secret-token-123" not in repr(settings)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("gateway: {port: 99999}", "gateway.port"),
        ("gateway: {prot: 8080}", "gateway.prot"),
        ("sources: [{name: hris, token: short}]", "sources[hris].token"),
        ("sources: [{name: Bad Name, token: " + "x" * 20 + "}]", "sources[Bad Name].name"),
        (f"vendors: {{v: {{{VENDOR}, timeout_s: 500}}}}", "vendors.v.timeout_s"),
        (
            f"vendors: {{v: {{{VENDOR}}}}}\nsources: [{{name: s, token: {'x' * 20}, allowed_targets: [w]}}]",
            "sources[s].allowed_targets",
        ),
        ("redis: {url: 'http://x'}", "redis.url"),
        (
            f"vendors: {{v: {{{VENDOR}, circuit_breaker: {{failure_threshold: 0}}}}}}",
            "failure_threshold",
        ),
        (f"vendors: {{v: {{{VENDOR}, max_in_flight: 0}}}}", "vendors.v.max_in_flight"),
        ("worker: {max_batch: 0}", "worker.max_batch"),
        ("- a list", "top level must be a mapping"),
        ("gateway: [unclosed", "not valid YAML"),
    ],
)
def test_invalid_config_names_the_key_path(tmp_path: Path, text: str, expected: str) -> None:
    """Each invalid setting is reported with its key path."""
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text), {})
    assert expected in str(caught.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """A config path that cannot be read is a ConfigError naming the file."""
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "nope.yaml", {})


def test_in_flight_limit_defaults_to_half_the_concurrency(tmp_path: Path) -> None:
    """A vendor without max_in_flight may use half the worker's slots; a set value wins."""
    text = f"worker: {{concurrency: 9}}\nvendors: {{a: {{{VENDOR}}}, b: {{{VENDOR}, max_in_flight: 7}}}}"
    settings = load_settings(write(tmp_path, text), {})
    assert settings.in_flight_limit("a") == 4
    assert settings.in_flight_limit("b") == 7
