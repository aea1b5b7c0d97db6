"""The image build, pure parts: the host's pip settings as the build's pip.conf secret, the CA
bundle pip trusts, the tags."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

from killkrill.dev.image import (
    CA_SECRET_PATH,
    host_ca_bundle,
    image_tags,
    pip_conf_text,
    pip_settings,
)

# --- image build: the host's pip settings as a build secret -------------------------------------

LISTING = """\
:env:.cert='/etc/ssl/certs/ca-certificates.crt'
:env:.default-timeout='180'
:env:.disable-pip-version-check='1'
:env:.find-links='/opt/wheels'
global.cert='/etc/ssl/certs/old.crt'
global.index-url='https://user:tok3n@pypi.example/simple'
global.extra-index-url='https://a.example/simple\\nhttps://b.example/simple'
install.index-url='https://install.example/simple'
site.trusted-host='ignored.example'
"""


def test_pip_settings_take_the_winning_value_of_the_index_settings_only() -> None:
    assert pip_settings(LISTING, {}) == {
        "cert": "/etc/ssl/certs/ca-certificates.crt",  # PIP_CERT over [global]
        "timeout": "180",
        "index-url": "https://install.example/simple",  # [install] over [global]
        "extra-index-url": "https://a.example/simple\nhttps://b.example/simple",
    }


@pytest.mark.parametrize(
    ("environ", "listing", "proxy"),
    [
        ({"HTTPS_PROXY": "http://p:3128"}, "", "http://p:3128"),
        ({"https_proxy": "http://p:3128"}, "", "http://p:3128"),
        ({"HTTPS_PROXY": "http://p:3128"}, "global.proxy='http://q:8080'", "http://q:8080"),
        ({}, "", None),
    ],
)
def test_pip_proxy_comes_from_pip_or_https_proxy(
    environ: dict[str, str], listing: str, proxy: str | None
) -> None:
    assert pip_settings(listing, environ).get("proxy") == proxy


def test_pip_conf_points_cert_at_the_ca_secret_and_keeps_multi_line_values() -> None:
    settings = pip_settings(LISTING, {})
    text = pip_conf_text(settings, with_ca=True)
    parser = configparser.ConfigParser()
    parser.read_string(text)
    assert dict(parser["global"]) == {
        "cert": CA_SECRET_PATH,
        "extra-index-url": "\nhttps://a.example/simple\nhttps://b.example/simple",
        "index-url": "https://install.example/simple",
        "timeout": "180",
    }
    assert "cert" not in pip_conf_text(settings, with_ca=False)
    assert pip_conf_text({}, with_ca=False).splitlines()[1:] == ["[global]"]


def test_host_ca_bundle_prefers_pip_cert_then_the_environment(tmp_path: Path) -> None:
    pip_ca, env_ca = tmp_path / "pip.crt", tmp_path / "env.crt"
    pip_ca.write_text("x")
    env_ca.write_text("y")
    assert host_ca_bundle({"cert": str(pip_ca)}, {"SSL_CERT_FILE": str(env_ca)}) == pip_ca
    assert host_ca_bundle({"cert": "/gone"}, {"REQUESTS_CA_BUNDLE": str(env_ca)}) == env_ca


def test_image_tags_name_the_version_and_dev() -> None:
    assert image_tags("1.2.3") == ("killkrill/killkrill:1.2.3", "killkrill/killkrill:dev")
