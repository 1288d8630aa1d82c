"""The official OpenAI Python client against `serve` with llama.cpp and the
tiny random-weight model: the same framing rules that the Rust tests check
with the scripted engine, on real tokens."""

import json
import socket
import urllib.request

import openai
import pytest

from conftest import CONTEXT_TOKENS

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say hello."},
]


def stream_chat(client, model_id, **options):
    """Return the chunks of a streamed chat completion."""
    return list(client.chat.completions.create(model=model_id, messages=MESSAGES, stream=True, **options))


def chunk_texts(chunks):
    return [chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices]


def test_models_lists_tiny_model(client):
    models = client.models.list().data

    assert [model.id for model in models] == ["tiny"]
    assert models[0].owned_by == "appliance"
    assert models[0].model_extra["scripted"] is False


def test_chat_without_streaming(client, model_id):
    completion = client.chat.completions.create(model=model_id, messages=MESSAGES, max_tokens=8, seed=5)

    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "tiny"
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    usage = completion.usage
    assert usage.prompt_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    if choice.finish_reason == "length":
        assert usage.completion_tokens == 8
    else:
        assert usage.completion_tokens < 8


def test_stream_matches_whole_response(client, model_id):
    options = {"max_tokens": 24, "seed": 11, "temperature": 0.8}
    whole = client.chat.completions.create(model=model_id, messages=MESSAGES, **options)

    chunks = stream_chat(client, model_id, stream_options={"include_usage": True}, **options)

    assert "".join(chunk_texts(chunks)) == whole.choices[0].message.content
    assert len({chunk.id for chunk in chunks}) == 1
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    reasons = [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices]
    assert [reason for reason in reasons if reason is not None] == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens


def test_same_seed_same_text(client, model_id):
    texts = [
        client.chat.completions.create(model=model_id, messages=MESSAGES, max_tokens=16, seed=42).choices[0].message.content
        for _ in range(2)
    ]

    assert texts[0] == texts[1]


def test_stop_string_across_tokens(client, model_id):
    options = {"max_tokens": 32, "seed": 7, "temperature": 1.0}
    texts = chunk_texts(stream_chat(client, model_id, **options))
    full = "".join(texts)
    # A stop string made of the end of one token and the start of the next.
    boundary = next(
        (index for index in range(1, len(texts) - 1) if texts[index] and texts[index + 1]),
        None,
    )
    if boundary is None:
        pytest.fail(f"seed 7 gave no two adjacent non-empty tokens: {texts!r}")
    stop = texts[boundary][-1] + texts[boundary + 1][0]
    expected = full[:full.index(stop)]

    completion = client.chat.completions.create(model=model_id, messages=MESSAGES, stop=[stop], **options)

    assert completion.choices[0].message.content == expected
    assert completion.choices[0].finish_reason == "stop"


def test_max_tokens_finishes_with_length(client, model_id):
    # The tiny model practically never ends a generation by itself.
    completion = client.chat.completions.create(model=model_id, messages=MESSAGES, max_tokens=3, temperature=0)

    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 3


def test_context_overflow_names_limit(client, model_id):
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model=model_id, messages=MESSAGES, max_tokens=CONTEXT_TOKENS)

    error = raised.value.body
    assert raised.value.status_code == 400
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "context_length_exceeded"
    assert f"{CONTEXT_TOKENS} tokens" in error["message"]


def test_long_prompt_rejected(client, model_id):
    long_message = [{"role": "user", "content": "hello " * CONTEXT_TOKENS}]

    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model=model_id, messages=long_message)

    assert raised.value.body["param"] == "messages"
    assert f"context window is {CONTEXT_TOKENS} tokens" in raised.value.body["message"]


def test_empty_messages_rejected(client, model_id):
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model=model_id, messages=[])

    assert raised.value.body["type"] == "invalid_request_error"
    assert raised.value.body["param"] == "messages"


def test_completions_stream_and_whole(client, model_id):
    whole = client.completions.create(model=model_id, prompt="Hello world", max_tokens=6, seed=3)
    streamed = list(client.completions.create(model=model_id, prompt="Hello world", max_tokens=6, seed=3, stream=True))

    assert whole.object == "text_completion"
    assert whole.choices[0].finish_reason in ("stop", "length")
    assert "".join(chunk.choices[0].text for chunk in streamed) == whole.choices[0].text
    assert whole.usage.completion_tokens <= 6


def test_stream_is_strict_utf8(server, model_id):
    # Random weights pick byte tokens freely, so characters often span
    # tokens and invalid sequences appear; every event must still be UTF-8.
    body = json.dumps({"model": model_id, "messages": MESSAGES, "max_tokens": 64, "seed": 99, "stream": True}).encode()
    request = urllib.request.Request(
        f"{server.url}/v1/chat/completions", data=body,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {server.api_key}"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        raw = response.read()

    text = raw.decode("utf-8", errors="strict")
    events = text.strip("\n").split("\n\n")
    assert events[-1] == "data: [DONE]"
    for event in events[:-1]:
        assert event.startswith("data: ")
        json.loads(event[len("data: "):])


def test_disconnect_cancels_generation(server, model_id):
    body = json.dumps({
        "model": model_id, "messages": MESSAGES, "stream": True,
        "max_tokens": CONTEXT_TOKENS - 128,
    })
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {server.api_key}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n{body}".encode()
        )
        assert connection.recv(4096).startswith(b"HTTP/1.1 200")

    line = server.wait_for_log("generation cancelled", timeout=30)
    assert "client disconnected" in line
