"""The one HOST:PORT parser (danet-client, the Triton client, danet-eval --server): checked up front."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from danet_deploy.errors import ConfigError
from danet_deploy.serve.address import Address, parse_address


@pytest.mark.parametrize(
    "text, host, port",
    [
        ("127.0.0.1:8000", "127.0.0.1", 8000),
        ("localhost:1", "localhost", 1),
        ("triton-0.cluster.local:65535", "triton-0.cluster.local", 65535),
        ("[::1]:18999", "::1", 18999),
        ("[2001:DB8::1]:8001", "2001:db8::1", 8001),
    ],
)
def test_addresses_parse(text, host, port):
    address = parse_address(text)
    assert address == Address(host, port)
    assert parse_address(str(address)) == address


@pytest.mark.parametrize(
    "text, words",
    [
        ("127.0.0.1:99999", "1..65535"),
        ("localhost:65536", "1..65535"),
        ("localhost:0", "1..65535"),
        ("localhost:-1", "1..65535"),
        ("localhost:８０", "1..65535"),  # noqa: RUF001 full-width digits on purpose: they pass str.isdigit
        ("::1:18999", "in brackets"),
        ("[::1]", "]:PORT"),
        ("[nothost]:80", "not an IPv6 address"),
        (":8001", "no host"),
        ("localhost", "no port"),
        ("", "HOST:PORT"),
        (" ", "HOST:PORT"),
        ("local host:80", "HOST:PORT"),
        ("a/b:80", "not a host name"),
        ("-bad-:80", "not a host name"),
    ],
)
def test_bad_addresses_are_refused_naming_the_form(text, words):
    with pytest.raises(ConfigError, match="--http") as info:
        parse_address(text, "--http")
    assert words in str(info.value)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_any_text_parses_or_is_a_config_error(text):
    try:
        address = parse_address(text)
    except ConfigError:
        return
    assert 1 <= address.port <= 65535 and address.host
    assert parse_address(str(address)) == address


@pytest.mark.parametrize(
    "flags",
    [
        ["--http", "127.0.0.1:99999"],
        ["--http", "localhost:65536"],
        ["--http", "::1:18999"],
        ["--http", "", "--grpc", ":8001"],
        ["--http", "", "--grpc", " "],
    ],
)
def test_danet_client_refuses_bad_addresses_up_front(flags, capsys):
    """Each of these printed nine "Exception ignored" tracebacks from tritonclient, waited for
    --wait, then blamed the server ("is danet-serve running there?")."""
    pytest.importorskip("tritonclient.http", reason="tritonclient (serve extra) not installed")
    from danet_deploy.cli.client import main

    start = time.monotonic()
    assert main([*flags, "--wait", "30", "--clients", "1", "--requests", "1"]) == 2
    assert time.monotonic() - start < 10
    err = capsys.readouterr().err
    assert err.startswith("error: --") and err.count("\n") == 1
    assert "Traceback" not in err and "Exception ignored" not in err and "running there" not in err


def test_the_triton_client_checks_its_address():
    pytest.importorskip("tritonclient.http", reason="tritonclient (serve extra) not installed")
    from danet_deploy.serve.client import SegmentationClient, split_url

    assert split_url("grpc://[::1]:8001") == ("grpc", "[::1]:8001")
    assert split_url("127.0.0.1:8000/", "http") == ("http", "127.0.0.1:8000")
    with pytest.raises(ConfigError, match="1..65535"):
        SegmentationClient("127.0.0.1:99999", "http")
