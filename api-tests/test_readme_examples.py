"""Every `curl http://127.0.0.1:8480/...` example in README.md, run against
the test server with the tiny model in place of the README's model."""

import json
import os
import re
import subprocess

import pytest

from conftest import TOP

README_URL = "http://127.0.0.1:8480"
README_MODEL = "smollm2-135m-instruct"


def readme_examples():
    """Return the README's sh blocks that are one curl command to the API."""
    text = (TOP / "README.md").read_text()
    return [
        block.strip()
        for block in re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL)
        if block.startswith("curl ") and f"{README_URL}/v1/" in block.splitlines()[0]
    ]


EXAMPLES = readme_examples()


def test_readme_has_inference_examples():
    paths = [re.search(rf"{README_URL}(\S*)", command).group(1) for command in EXAMPLES]

    for path in ("/v1/models", "/v1/chat/completions", "/v1/completions"):
        assert path in paths, f"no README example for {path}"


@pytest.mark.parametrize("command", EXAMPLES, ids=[f"example{index}" for index in range(len(EXAMPLES))])
def test_readme_example(server, model_id, command):
    runnable = command.replace(README_URL, server.url).replace(f'"{README_MODEL}"', f'"{model_id}"')
    # --fail-with-body makes an HTTP error a non-zero exit, and -sS keeps
    # the progress meter out of the output.
    runnable = runnable.replace("curl ", "curl -sS --fail-with-body ", 1)

    environment = {**os.environ, "API_KEY": server.api_key}
    result = subprocess.run(["bash", "-c", runnable], capture_output=True, text=True, timeout=60,
                            env=environment)

    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    output = result.stdout
    if output.startswith("data: "):
        events = output.strip("\n").split("\n\n")
        assert events[-1] == "data: [DONE]", output
        for event in events[:-1]:
            assert "error" not in json.loads(event.removeprefix("data: ")), event
    else:
        body = json.loads(output)
        assert "error" not in body, body
