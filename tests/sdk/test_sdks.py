"""The official `openai` and `anthropic` Python SDKs against the real `keygate` binary.

Keygate runs the seed guide's policy (gateway token checked against a vault secret, provider keys
from vaults) with `--provider-url` pointing OpenAI and Anthropic at `keygate-mock`.

Run: `cargo xtask test` runs this file (through crates/keygate/tests/sdk.rs) with the SDKs of
tests/sdk/requirements.txt. By hand: cargo build -p keygate -p keygate-mock, then
target/test-venv/bin/python3 -m unittest tests/sdk/test_sdks.py -v. KEYGATE_BIN / KEYGATE_MOCK_BIN
override the binaries' paths; KEYGATE_MOCK_URL points at an already running mock instead of
starting one (the Rust test runs this file that way).
"""

import json
import os
import subprocess
import tempfile
import unittest
from pathlib import Path

import anthropic
import openai

from tests.processes import free_port, wait_port

ROOT = Path(__file__).resolve().parents[2]
KEYGATE = os.environ.get("KEYGATE_BIN", str(ROOT / "target/debug/keygate"))
MOCK = os.environ.get("KEYGATE_MOCK_BIN", str(ROOT / "target/debug/keygate-mock"))

TOKEN = "kg-sdk-canary-token-5b2e8a17c4d9"
OPENAI_KEY = "sk-sdk-canary-openai-0f9e8d7c6b5a4"
ANTHROPIC_KEY = "sk-ant-sdk-canary-1a2b3c4d5e6f7"

# The providers both policies route to, with the provider keys from vaults.
PROVIDERS = """
          providers:
            - id: openai
              api_keys:
                - value: ${secrets.get('openai', 'api-key')}
            - id: anthropic
              api_keys:
                - value: ${secrets.get('anthropic', 'api-key')}
            - id: mock
"""

POLICY = """
on_http_request:
  - expressions:
      - req.headers['authorization'][0] != 'Bearer ' + secrets.get('gateway-auth', 'access-token')
    actions:
      - type: custom-response
        config:
          status_code: 401
          headers:
            content-type: application/json
          body: '{"error": {"message": "Invalid or missing authorization token", "type": "authentication_error"}}'
  - actions:
      - type: ai-gateway
        config:""" + PROVIDERS

# The same providers behind built-in authorization: clients send a `kg-` access key made with
# `keygate api ai-gateway-api-keys create`, and no policy rule checks tokens.
ACCESS_KEY_POLICY = """
on_http_request:
  - actions:
      - type: ai-gateway
        config:
          access_keys: required""" + PROVIDERS


class SdkTests(unittest.TestCase):
    """The seed guide's policy: a gateway token kept in a vault, checked by a policy rule."""

    POLICY = POLICY

    @classmethod
    def client_token(cls, data, env):
        """Stores the token clients send and returns it."""
        subprocess.run([KEYGATE, "api", "vaults", "create", "--name", "gateway-auth", "--data-dir", str(data)],
                       check=True, capture_output=True, env=env)
        subprocess.run([KEYGATE, "api", "secrets", "create", "--name", "access-token", "--value", "-",
                        "--vault-name", "gateway-auth", "--data-dir", str(data)],
                       input=TOKEN.encode(), check=True, capture_output=True, env=env)
        return TOKEN

    @classmethod
    def setUpClass(cls):
        os.environ["NO_PROXY"] = "*"
        cls.tmp = tempfile.TemporaryDirectory()
        data = Path(cls.tmp.name) / "data"
        env = {k: v for k, v in os.environ.items() if k != "KEYGATE_MASTER_KEY"}
        for vault, name, value in [
            ("openai", "api-key", OPENAI_KEY),
            ("anthropic", "api-key", ANTHROPIC_KEY),
        ]:
            subprocess.run([KEYGATE, "api", "vaults", "create", "--name", vault, "--data-dir", str(data)],
                           check=True, capture_output=True, env=env)
            subprocess.run([KEYGATE, "api", "secrets", "create", "--name", name, "--value", "-",
                            "--vault-name", vault, "--data-dir", str(data)],
                           input=value.encode(), check=True, capture_output=True, env=env)
        cls.token = cls.client_token(data, env)
        policy = Path(cls.tmp.name) / "policy.yml"
        policy.write_text(cls.POLICY)
        gw_port, admin_port = free_port(), free_port()
        if os.environ.get("KEYGATE_MOCK_URL"):
            cls.mock = None
            mock_port = int(os.environ["KEYGATE_MOCK_URL"].rsplit(":", 1)[1].strip("/"))
        else:
            mock_port = free_port()
            cls.mock = subprocess.Popen([MOCK, "--listen", f"127.0.0.1:{mock_port}"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_port(mock_port, cls.mock, "keygate-mock")
        cls.log = open(Path(cls.tmp.name) / "gateway.log", "w+")
        cls.gateway = subprocess.Popen(
            [KEYGATE, "serve", "--policy", str(policy), "--listen", f"127.0.0.1:{gw_port}",
             "--admin-listen", f"127.0.0.1:{admin_port}", "--data-dir", str(data),
             "--provider-url", f"openai=http://127.0.0.1:{mock_port}/v1",
             "--provider-url", f"anthropic=http://127.0.0.1:{mock_port}/v1"],
            stdout=cls.log, stderr=subprocess.STDOUT, env=env)
        wait_port(gw_port, cls.gateway, "keygate")
        cls.mock_url = f"http://127.0.0.1:{mock_port}"
        cls.base = f"http://127.0.0.1:{gw_port}"
        cls.openai = openai.OpenAI(base_url=cls.base + "/v1", api_key=cls.token, max_retries=0)
        cls.anthropic = anthropic.Anthropic(base_url=cls.base, api_key=cls.token, max_retries=0)

    @classmethod
    def tearDownClass(cls):
        for proc in (cls.gateway, cls.mock):
            if proc is None:
                continue
            proc.terminate()
            proc.wait(timeout=10)
        cls.log.seek(0)
        output = cls.log.read()
        cls.log.close()
        cls.tmp.cleanup()
        for key in (OPENAI_KEY, ANTHROPIC_KEY, cls.token):
            assert key not in output, "a provider key or client token reached the gateway log"

    def mock_requests(self):
        import urllib.request
        with urllib.request.urlopen(self.mock_url + "/_mock/requests") as response:
            return json.loads(response.read())

    def test_openai_chat(self):
        reply = self.openai.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hello from the openai sdk"}])
        self.assertIn("hello from the openai sdk", reply.choices[0].message.content)
        self.assertGreater(reply.usage.prompt_tokens, 0)

    def test_openai_stream_without_and_with_usage(self):
        chunks = list(self.openai.chat.completions.create(
            model="gpt-4o", stream=True, messages=[{"role": "user", "content": "stream me please"}]))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        self.assertIn("stream me please", text)
        self.assertTrue(all(c.choices for c in chunks), "the usage chunk Keygate added reached the client")
        chunks = list(self.openai.chat.completions.create(
            model="gpt-4o", stream=True, stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "with usage"}]))
        self.assertIsNotNone(chunks[-1].usage)

    def test_openai_embeddings_responses_and_models(self):
        embedding = self.openai.embeddings.create(model="text-embedding-3-small", input="embed this")
        self.assertGreater(len(embedding.data[0].embedding), 0)
        response = self.openai.responses.create(model="gpt-4o", input="respond to this")
        self.assertIn("respond to this", response.output_text)
        ids = [m.id for m in self.openai.models.list()]
        self.assertIn("gpt-4o", ids)
        self.assertIn("claude-sonnet-4-6", ids)

    def test_openai_sdk_to_claude_and_mock(self):
        reply = self.openai.chat.completions.create(
            model="claude-haiku-4-5", messages=[{"role": "user", "content": "openai format to claude"}])
        self.assertIn("openai format to claude", reply.choices[0].message.content)
        reply = self.openai.chat.completions.create(
            model="mock:echo", messages=[{"role": "user", "content": "offline"}])
        self.assertEqual(reply.choices[0].message.content, "offline")

    def test_anthropic_messages(self):
        message = self.anthropic.messages.create(
            model="claude-sonnet-4-6", max_tokens=64,
            messages=[{"role": "user", "content": "hello from the anthropic sdk"}])
        self.assertIn("hello from the anthropic sdk", message.content[0].text)
        with self.anthropic.messages.stream(
                model="claude-sonnet-4-6", max_tokens=64,
                messages=[{"role": "user", "content": "stream from anthropic"}]) as stream:
            text = "".join(stream.text_stream)
        self.assertIn("stream from anthropic", text)
        count = self.anthropic.messages.count_tokens(
            model="claude-sonnet-4-6", messages=[{"role": "user", "content": "count me"}])
        self.assertGreater(count.input_tokens, 0)

    def test_anthropic_sdk_on_gpt_streams_a_tool_round_trip(self):
        """Messages to a model OpenAI serves: translated to chat completions and back."""
        tools = [{"name": "lookup", "description": "Looks things up",
                  "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}}]
        ask = {"role": "user", "content": 'mock-tool: lookup {"q": "keygate"}'}
        with self.anthropic.messages.stream(model="gpt-4o", max_tokens=200, tools=tools,
                                            messages=[ask]) as stream:
            final = stream.get_final_message()
        self.assertEqual(final.stop_reason, "tool_use")
        call = next(block for block in final.content if block.type == "tool_use")
        self.assertEqual(call.name, "lookup")
        self.assertEqual(call.input, {"q": "keygate"})
        self.assertGreater(final.usage.output_tokens, 0)
        answer = self.anthropic.messages.create(
            model="gpt-4o", max_tokens=200, tools=tools,
            messages=[ask, {"role": "assistant", "content": final.content},
                      {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                                    "content": "a gateway"}]}])
        self.assertIn("tool result: a gateway", answer.content[0].text)
        self.assertEqual(answer.stop_reason, "end_turn")

    def test_openai_responses_on_claude_streams_a_tool_round_trip(self):
        """Responses to a Claude model: translated to Anthropic Messages and back."""
        tools = [{"type": "function", "name": "lookup", "description": "Looks things up",
                  "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}]
        ask = {"role": "user", "content": 'mock-tool: lookup {"q": "gw"}'}
        with self.openai.responses.stream(model="claude-sonnet-4-6", input=[ask], tools=tools) as stream:
            response = stream.get_final_response()
        call = next(item for item in response.output if item.type == "function_call")
        self.assertEqual(call.name, "lookup")
        self.assertEqual(json.loads(call.arguments), {"q": "gw"})
        self.assertGreater(response.usage.output_tokens, 0)
        answer = self.openai.responses.create(model="claude-sonnet-4-6", tools=tools, input=[
            ask,
            {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
            {"type": "function_call_output", "call_id": call.call_id, "output": "found it"},
        ])
        self.assertIn("tool result: found it", answer.output_text)
        sent = [r for r in self.mock_requests() if r["path"] == "/v1/messages"][-1]
        body = json.loads(sent["body"])
        self.assertEqual(body["messages"][1]["content"][0]["id"], call.call_id)

    def test_errors_surface_in_the_sdks(self):
        with self.assertRaises(openai.UnprocessableEntityError) as caught:
            self.openai.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
        self.assertEqual(caught.exception.code, "ERR_KEYGATE_3804")
        with self.assertRaises(anthropic.UnprocessableEntityError) as caught:
            self.anthropic.messages.count_tokens(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
        self.assertIn("ERR_KEYGATE_3813", str(caught.exception))
        bad = openai.OpenAI(base_url=self.base + "/v1", api_key="wrong-token", max_retries=0)
        with self.assertRaises(openai.AuthenticationError):
            bad.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])

    def test_provider_sees_server_keys_only(self):
        self.openai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "whose key"}])
        self.anthropic.messages.create(model="claude-haiku-4-5", max_tokens=8,
                                       messages=[{"role": "user", "content": "whose key"}])
        seen = json.dumps(self.mock_requests())
        self.assertNotIn(self.token, seen, "the client's token reached the provider")
        self.assertIn(OPENAI_KEY, seen)
        self.assertIn(ANTHROPIC_KEY, seen)


class AccessKeySdkTests(SdkTests):
    """Every test above again, with a Keygate access key as the SDKs' API key."""

    POLICY = ACCESS_KEY_POLICY

    @classmethod
    def client_token(cls, data, env):
        def create(*flags):
            created = subprocess.run([KEYGATE, "api", "ai-gateway-api-keys", "create", *flags,
                                      "--data-dir", str(data)], check=True, capture_output=True, env=env)
            return json.loads(created.stdout)["token"]
        # One key per SDK with a budget that a long streamed answer outgrows.
        cls.budgeted = [create("--token-limit", "700/day") for _ in range(2)]
        return create("--description", "sdk tests")

    def test_a_budget_spent_mid_stream_is_an_api_error_in_both_sdks(self):
        # About 400 tokens in and 400 out against 700: the stream starts, then its budget runs out.
        prompt = [{"role": "user", "content": " ".join(["abc"] * 400)}]
        chunks = {"x-mock-chunks": "200"}
        client = openai.OpenAI(base_url=self.base + "/v1", api_key=self.budgeted[0], max_retries=0)
        received = []
        with self.assertRaises(openai.APIError) as caught:
            for chunk in client.chat.completions.create(model="gpt-4o", messages=prompt, stream=True,
                                                         extra_headers=chunks):
                received.extend(c.delta.content or "" for c in chunk.choices)
        self.assertIn("has reached its token budget (700/day)", caught.exception.message)
        self.assertTrue(received, "the stream started before the budget ran out")
        with self.assertRaises(openai.RateLimitError) as caught:
            client.chat.completions.create(model="gpt-4o", messages=prompt)
        self.assertEqual(caught.exception.code, "ERR_KEYGATE_27009")

        client = anthropic.Anthropic(base_url=self.base, api_key=self.budgeted[1], max_retries=0)
        with self.assertRaises(anthropic.APIError) as caught:
            with client.messages.stream(model="claude-haiku-4-5", max_tokens=1000, messages=prompt,
                                        extra_headers=chunks) as stream:
                for _ in stream.text_stream:
                    pass
        self.assertIn("has reached its token budget (700/day)", str(caught.exception))
        with self.assertRaises(anthropic.RateLimitError):
            client.messages.create(model="claude-haiku-4-5", max_tokens=8, messages=prompt)

    def test_unknown_access_keys_are_authentication_errors_in_both_sdks(self):
        unknown = "kg-" + "x" * 54
        with self.assertRaises(openai.AuthenticationError) as caught:
            openai.OpenAI(base_url=self.base + "/v1", api_key=unknown, max_retries=0).chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "x"}])
        self.assertEqual(caught.exception.code, "ERR_KEYGATE_27007")
        with self.assertRaises(anthropic.AuthenticationError):
            anthropic.Anthropic(base_url=self.base, api_key=unknown, max_retries=0).messages.create(
                model="claude-haiku-4-5", max_tokens=8, messages=[{"role": "user", "content": "x"}])


if __name__ == "__main__":
    unittest.main()
