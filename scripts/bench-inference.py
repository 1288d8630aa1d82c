#!/usr/bin/env python3
"""Benchmark the inference API against a bare llama-cpp-2 decode loop.

In one run, with the same model, threads and prompt, and greedy decoding:

- decode tokens/s and time to first token through `appliance-agent serve`
  (streamed chat completions on loopback), through the bare loop
  (`bare_decode`, no server), and optionally through llama.cpp's own
  `llama-server`, built elsewhere and given with --llama-server;
- cold model load: the agent's time from the search for a model to a
  warmed-up engine, and the bare loop's load, against a sequential read of
  the file, each after evicting the file from the page cache.

Every contender runs with OMP_WAIT_POLICY=passive, as the appliance's
service unit sets it, unless the caller's environment sets another value.

Prints a table and the ratios; --json writes the raw figures.
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
PROMPT = "Write a long story about a lighthouse keeper who finds a message in a bottle."
START_TIMEOUT = 120


def evict(path):
    """Drop the file's pages from the page cache, so the next read is cold."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def sequential_read_ms(path):
    evict(path)
    started = time.perf_counter()
    with open(path, "rb", buffering=0) as file:
        while file.read(1 << 20):
            pass
    return (time.perf_counter() - started) * 1000


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_http(url, process, timeout=START_TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode} before {url} responded")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not return 200 within {timeout} s")


def stream_once(base_url, model, max_tokens):
    """Send one streamed chat completion; return TTFT, decode rate and token count."""
    body = json.dumps({
        "model": model, "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens, "temperature": 0, "stream": True,
        "stream_options": {"include_usage": True},
    }).encode()
    request = urllib.request.Request(f"{base_url}/v1/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
    sent = time.perf_counter()
    first = last = None
    usage = None
    with urllib.request.urlopen(request, timeout=600) as response:
        for raw in response:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[len("data: "):])
            if chunk.get("usage"):
                usage = chunk["usage"]
            for choice in chunk.get("choices", []):
                if (choice.get("delta") or {}).get("content"):
                    now = time.perf_counter()
                    first = first or now
                    last = now
    if first is None or usage is None:
        raise RuntimeError(f"{base_url} streamed no text or no usage")
    tokens = usage["completion_tokens"]
    rate = (tokens - 1) / (last - first) if tokens > 1 and last > first else 0.0
    return {"ttft_ms": (first - sent) * 1000, "decode_tokens_per_s": rate,
            "completion_tokens": tokens, "prompt_tokens": usage["prompt_tokens"]}


class Server:
    """A server process whose stderr is collected line by line."""

    def __init__(self, argv, environment=None):
        self.lines = []
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        text=True, env=environment)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    def field(self, needle, name, timeout=START_TIMEOUT):
        """Return the value of `name=` in the first log line containing `needle`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if needle in line and f"{name}=" in line:
                    return line.split(f"{name}=")[1].split()[0]
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"no log line with {needle!r} and {name}=:\n" + "\n".join(self.lines[-30:]))

    def stop(self):
        # Only this script's own child, by its handle.
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def run_agent_and_bare(args, scratch):
    """Measure the agent and the bare loop in alternating runs, so that both
    see the same machine load; return the agent's load time and both samples."""
    models = scratch / "models"
    models.mkdir(exist_ok=True)
    link = models / args.model.name
    if not link.exists():
        link.symlink_to(args.model.resolve())
    port = free_port()
    config = scratch / "appliance.yaml"
    config.write_text(json.dumps({
        "listen": [f"127.0.0.1:{port}"],
        "models": {"dir": str(models)},
        "inference": {"threads": args.threads, "context_tokens": args.context},
    }))
    environment = {key: value for key, value in os.environ.items() if key not in ("NOTIFY_SOCKET", "JOURNAL_STREAM")}
    environment["RUST_LOG"] = "info"
    evict(args.model)
    server = Server([str(args.agent), "serve", "--config", str(config), "--state-dir", str(scratch / "state")],
                    environment)
    try:
        load_ms = float(server.field("model ready", "load_ms"))
        url = f"http://127.0.0.1:{port}"
        wait_for_http(f"{url}/api/health", server.process)
        model = args.model.stem
        # Greedy decoding gives the same tokens every time, so this run
        # tells how many the bare loop must generate, even when the model
        # stops before max_tokens.
        tokens = stream_once(url, model, args.max_tokens)["completion_tokens"]
        api, bare = [], []
        for _ in range(args.runs):
            api.append(stream_once(url, model, tokens))
            bare.append(run_bare(args, tokens))
    finally:
        server.stop()
    return load_ms, api, bare


def run_bare(args, max_tokens):
    evict(args.model)
    output = subprocess.run(
        [str(args.bare), "--model", str(args.model), "--prompt", PROMPT, "--threads", str(args.threads),
         "--context", str(args.context), "--max-tokens", str(max_tokens)],
        check=True, capture_output=True, text=True).stdout
    return json.loads(output)


def run_llama_server(args, runs, max_tokens):
    port = free_port()
    server = Server([str(args.llama_server), "-m", str(args.model), "-t", str(args.threads),
                     "-c", str(args.context), "--host", "127.0.0.1", "--port", str(port)])
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_http(f"{url}/health", server.process)
        stream_once(url, args.model.stem, 4)
        return [stream_once(url, args.model.stem, max_tokens) for _ in range(runs)]
    finally:
        server.stop()


def median(samples, key):
    return statistics.median(sample[key] for sample in samples)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="GGUF model file")
    parser.add_argument("--agent", type=Path, default=TOP / "build/agent/appliance-agent",
                        help="appliance-agent built with the llama feature (default: build/agent/appliance-agent)")
    parser.add_argument("--bare", type=Path, default=TOP / "target/release/examples/bare_decode",
                        help="the bare_decode example binary")
    parser.add_argument("--llama-server", type=Path, help="a llama-server binary built outside this repository")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for every contender (default 2)")
    parser.add_argument("--context", type=int, default=4096, help="context window in tokens (default 4096)")
    parser.add_argument("--max-tokens", type=int, default=128, help="tokens to generate per run (default 128)")
    parser.add_argument("--runs", type=int, default=3, help="measured runs per contender; medians are reported")
    parser.add_argument("--json", type=Path, help="also write the raw figures to this file")
    args = parser.parse_args()
    # libgomp reads it when it loads, so it must be in each child's environment.
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    for path in (args.model, args.agent, args.bare) + ((args.llama_server,) if args.llama_server else ()):
        if not path.exists():
            parser.error(f"{path} does not exist")

    with tempfile.TemporaryDirectory(prefix="bench-inference-") as scratch:
        read_ms = [sequential_read_ms(args.model) for _ in range(args.runs)]
        agent_load_ms, api, bare = run_agent_and_bare(args, Path(scratch))
        tokens = api[0]["completion_tokens"]
        server = run_llama_server(args, args.runs, tokens) if args.llama_server else None

    figures = {
        "model": str(args.model), "threads": args.threads, "completion_tokens": tokens,
        "prompt_tokens": {"api": api[0]["prompt_tokens"], "bare": bare[0]["prompt_tokens"]},
        "read_ms": statistics.median(read_ms), "agent_load_ms": agent_load_ms,
        "bare_load_ms": median(bare, "load_ms"),
        "api": {"decode_tokens_per_s": median(api, "decode_tokens_per_s"), "ttft_ms": median(api, "ttft_ms")},
        "bare": {"decode_tokens_per_s": median(bare, "decode_tokens_per_s"), "ttft_ms": median(bare, "ttft_ms")},
    }
    if server:
        figures["llama_server"] = {"decode_tokens_per_s": median(server, "decode_tokens_per_s"),
                                   "ttft_ms": median(server, "ttft_ms")}
    figures["ratios"] = {
        "decode_api_over_bare": figures["api"]["decode_tokens_per_s"] / figures["bare"]["decode_tokens_per_s"],
        "ttft_api_over_bare": figures["api"]["ttft_ms"] / figures["bare"]["ttft_ms"],
        "load_agent_over_read": figures["agent_load_ms"] / figures["read_ms"],
    }

    figures["omp_wait_policy"] = os.environ["OMP_WAIT_POLICY"]
    print(f"OMP_WAIT_POLICY={figures['omp_wait_policy']}, load average {os.getloadavg()[0]:.1f}")
    print(f"model {args.model.name}, {args.threads} threads, {tokens} tokens, "
          f"prompt {figures['prompt_tokens']['api']} tokens (bare loop: {figures['prompt_tokens']['bare']}), "
          f"medians of {args.runs} runs")
    print(f"{'':14} {'decode tok/s':>12} {'TTFT ms':>9}")
    rows = [("API", figures["api"]), ("bare loop", figures["bare"])]
    if server:
        rows.append(("llama-server", figures["llama_server"]))
    for name, row in rows:
        print(f"{name:14} {row['decode_tokens_per_s']:12.1f} {row['ttft_ms']:9.1f}")
    print(f"cold load: agent {agent_load_ms:.0f} ms, bare loop {figures['bare_load_ms']:.0f} ms, "
          f"sequential read {figures['read_ms']:.0f} ms")
    ratios = figures["ratios"]
    print(f"ratios: decode API/bare {ratios['decode_api_over_bare']:.3f}, "
          f"TTFT API/bare {ratios['ttft_api_over_bare']:.3f}, load agent/read {ratios['load_agent_over_read']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
