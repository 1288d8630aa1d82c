"""Shared set-up of the API tests: a real `appliance-agent serve` with
llama.cpp and the tiny model, on a free loopback port."""

import json
import os
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parent.parent
# The Makefile passes both; the defaults are where it builds them.
AGENT = Path(os.environ.get("APPLIANCE_AGENT", TOP / "build/agent/appliance-agent"))
TINY_MODEL = Path(os.environ.get("TINY_MODEL", TOP / "build/models/tiny.gguf"))

# The tests' context window: smaller than the default, so that overflowing
# it is cheap, but long enough that a generation runs while a test
# disconnects.
CONTEXT_TOKENS = 2048
START_TIMEOUT = 60


class Server:
    """A running `serve` process and the lines of its log."""

    def __init__(self, process, url, log):
        self.process = process
        self.url = url
        self.log = log

    def wait_for_log(self, needle, timeout=10):
        """Return the first log line containing `needle`, waiting up to `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.log):
                if needle in line:
                    return line
            time.sleep(0.05)
        raise AssertionError(f"no log line with {needle!r} in {timeout} s:\n" + "\n".join(self.log))


def read_log(stream, lines):
    for line in stream:
        lines.append(line.rstrip("\n"))


def wait_until_ready(process, log, url):
    """Poll /api/health until it returns 200; fail with the log otherwise."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"serve exited with {process.returncode}:\n" + "\n".join(log))
        try:
            with urllib.request.urlopen(f"{url}/api/health", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.1)
    pytest.fail(f"/api/health not 200 after {START_TIMEOUT} s:\n" + "\n".join(log))


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """Start serve with the tiny model and return it once the model is loaded."""
    missing = [str(path) for path in (AGENT, TINY_MODEL) if not path.exists()]
    if missing:
        pytest.fail(f"missing {missing}; run `make api-test`, which builds them")

    scratch = tmp_path_factory.mktemp("serve")
    models = scratch / "models"
    models.mkdir()
    shutil.copy(TINY_MODEL, models / "tiny.gguf")
    config = scratch / "appliance.yaml"
    tokens = scratch / "tokens.json"
    config.write_text(json.dumps({
        "listen": ["127.0.0.1:0"],
        "auth": {"token_store": str(tokens)},
        "models": {"dir": str(models)},
        "inference": {"threads": 2, "context_tokens": CONTEXT_TOKENS, "queue_size": 4},
    }))

    # The /v1 routes take a bearer token of the inference scope.
    api_key = subprocess.run(
        [str(AGENT), "token", "create", "--store", str(tokens), "--name", "api-tests", "--scope", "inference"],
        check=True, capture_output=True, text=True).stdout.strip()

    environment = {key: value for key, value in os.environ.items() if key not in ("NOTIFY_SOCKET", "JOURNAL_STREAM")}
    environment["RUST_LOG"] = "info"
    process = subprocess.Popen(
        [str(AGENT), "serve", "--config", str(config), "--state-dir", str(scratch / "state"),
         "--console", str(scratch / "console"), "--host-channel-check-seconds", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=environment,
    )
    log = []
    threading.Thread(target=read_log, args=(process.stderr, log), daemon=True).start()
    try:
        server = Server(process, None, log)
        server.api_key = api_key
        line = server.wait_for_log("listening address=", timeout=START_TIMEOUT)
        address = line.split("address=")[1].split()[0]
        server.url = f"http://{address}"
        wait_until_ready(process, log, server.url)
        yield server
    finally:
        # Only this fixture's own child is stopped, by its handle.
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def client(server):
    """Return the official OpenAI client pointed at the test server."""
    from openai import OpenAI

    return OpenAI(base_url=f"{server.url}/v1", api_key=server.api_key, max_retries=0, timeout=60)


@pytest.fixture(scope="session")
def model_id(client):
    return client.models.list().data[0].id
