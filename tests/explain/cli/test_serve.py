"""``python -m explain serve``: argument errors, and one real uvicorn process on a free loopback port."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from explain.__main__ import main
from explain.cli import serve

ROOT = Path(__file__).resolve().parents[3]


def error_line(capsys, argv) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(lines) == 1 and "Traceback" not in lines[0]
    return lines[0]


def test_other_hosts_need_a_token_file(capsys, tmp_path):
    line = error_line(capsys, ["serve", "--model", "digits_cnn", "--host", "0.0.0.0"])
    assert "--host 0.0.0.0 accepts connections from other machines: give --token-file" in line
    (tmp_path / "empty").write_text("\n")
    line = error_line(capsys, ["serve", "--model", "digits_cnn", "--token-file", str(tmp_path / "empty")])
    assert "must hold one token" in line
    line = error_line(capsys, ["serve", "--model", "digits_cnn", "--token-file", str(tmp_path / "missing")])
    assert "cannot read" in line


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("::1", True), ("localhost", True),
                                            ("0.0.0.0", False), ("10.1.2.3", False), ("example.com", False)])  # fmt: skip
def test_is_loopback(host, loopback):
    assert serve.is_loopback(host) is loopback


def test_two_models_of_one_name_are_refused(capsys):
    line = error_line(capsys, ["serve", "--model", "digits_cnn", "--model", "digits_cnn"])
    assert "two models are named 'digits_cnn'" in line


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 5.0, data: bytes | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_a_real_server_answers_and_exits_0_on_sigterm(tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "explain", "serve", "--model", "digits_cnn", "--port", str(port), "--max-batch", "2"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if get(f"{base}/readyz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.2)
        body = {"instances": [[[[0.5]] * 8] * 8], "parameters": {"method": "integrated_gradients", "steps": 4}}
        status, reply = get(f"{base}/v1/models/digits_cnn:explain", timeout=60, data=json.dumps(body).encode())
        assert status == 200 and len(reply["explanations"]) == 1 and "convergence_delta" in reply["explanations"][0]
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        assert "Traceback" not in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def parsed(argv):
    import argparse

    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    return parser.parse_args(argv)


def test_the_flags_defaults_are_the_settings_defaults_and_every_cap_has_a_flag():
    from explain.serve.settings import CAPS, Settings

    assert serve.make_settings(parsed(["--model", "m"]), None) == Settings()
    flags = [a for flag in CAPS.values() for a in (flag, "7")]
    settings = serve.make_settings(parsed(["--model", "m", *flags, "--max-body-mb", "1"]), "t")
    assert [getattr(settings, cap) for cap in CAPS] == [7] * len(CAPS)
    assert settings.max_body_bytes == 2**20 and settings.token == "t"


def test_a_cap_below_one_is_a_usage_error(capsys):
    assert "argument --max-steps" in error_line(capsys, ["serve", "--model", "digits_cnn", "--max-steps", "0"])
