"""A minimal OpenAI-compatible chat-completions server on loopback, for the backend tests: each reply
comes from `answer(messages, body)`, a fault schedule can answer an attempt with a 429 (Retry-After), a
500, a timeout or a malformed body, and every request is counted (received, and answered with a 200)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image

FAULTS = ("429", "500", "400", "timeout", "malformed", "hold")


def conversation_key(messages: list[dict]) -> str:
    return hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:16]


def last_user_text(messages: list[dict]) -> str:
    return next(p["text"] for p in messages[-1]["content"] if p["type"] == "text")


def hf_conversation(messages: list[dict]) -> tuple[list[dict], list]:
    """The messages as a HF chat template reads them, and their images in order (what vLLM does)."""
    converted, images = [], []
    for message in messages:
        content = message["content"]
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else []
        for part in [] if isinstance(content, str) else content:
            if part["type"] == "text":
                parts.append({"type": "text", "text": part["text"]})
            else:
                encoded = part["image_url"]["url"].split(",", 1)[1]
                images.append(Image.open(io.BytesIO(base64.b64decode(encoded))).convert("RGB"))
                parts.append({"type": "image"})
        converted.append({"role": message["role"], "content": parts})
    return converted, images


class ChatServer:
    """`faults`: {substring of the query's text: [fault of attempt 1, of attempt 2, ...]}; `delay_s`:
    latency added to every answer; `timeout_sleep_s`: how long a `timeout` attempt stalls."""

    def __init__(
        self, answer, faults=None, delay_s=0.0, timeout_sleep_s=2.0, retry_after="0.05", schedule=None
    ) -> None:
        self.answer, self.faults, self.delay_s, self.schedule = answer, faults or {}, delay_s, schedule
        self.timeout_sleep_s, self.retry_after = timeout_sleep_s, retry_after
        self.received, self.answered, self.attempts = Counter(), Counter(), Counter()
        self.bodies, self.authorizations = [], []
        self.lock, self.release = threading.Lock(), threading.Event()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> ChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def fault(self, messages: list[dict], n: int) -> str | None:
        if self.schedule is not None:
            return self.schedule(n)
        text = last_user_text(messages)
        with self.lock:
            for marker, schedule in self.faults.items():
                if marker in text:
                    attempt = self.attempts[marker]
                    self.attempts[marker] += 1
                    return schedule[attempt] if attempt < len(schedule) else None
        return None

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def _send(self, status: int, body: str, headers: dict | None = None) -> None:
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body.encode())))
                self.end_headers()
                self.wfile.write(body.encode())

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                key = conversation_key(body["messages"])
                with server.lock:
                    server.received[key] += 1
                    n = sum(server.received.values())
                    server.bodies.append(body)
                    server.authorizations.append(self.headers.get("Authorization"))
                fault = server.fault(body["messages"], n)
                if fault == "hold":  # never answered: the client is killed meanwhile
                    server.release.wait()
                    return
                if fault == "timeout":
                    time.sleep(server.timeout_sleep_s)
                    return
                if fault in ("429", "500", "400"):
                    self._send(
                        int(fault),
                        json.dumps({"error": {"message": f"injected {fault}"}}),
                        {"Retry-After": server.retry_after} if fault == "429" else None,
                    )
                    return
                time.sleep(server.delay_s)
                if fault == "malformed":
                    self._send(200, "<html>502 Bad Gateway</html>")
                else:
                    reply, usage = server.answer(body["messages"], body)
                    choice = {
                        "index": 0,
                        "message": {"role": "assistant", "content": reply},
                        "finish_reason": "stop",
                    }
                    self._send(
                        200,
                        json.dumps(
                            {"id": "x", "object": "chat.completion", "choices": [choice], "usage": usage}
                        ),
                    )
                with server.lock:
                    server.answered[key] += 1

        return Handler


def model_answer(context, lock=None):
    """Replies from an in-process model (a DecodingContext): the messages through the processor's chat
    template, greedy `generate` up to the request's max_tokens, as a vLLM server holding it would."""
    from mmlearn.decoding.generation import generate_answers, stop_token_ids

    lock = lock or threading.Lock()

    def answer(messages, body):
        conversation, images = hf_conversation(messages)
        processor = context.processor
        text = processor.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
        inputs = processor(
            text=[text], images=images or None, padding=True, padding_side="left", return_tensors="pt"
        )
        with lock:
            new = generate_answers(context, dict(inputs), max_new_tokens=body["max_tokens"], decode=False)
        ids = new[0].tolist()
        ends = set(stop_token_ids(context.model.generation_config, context.tokenizer))
        used = next((i + 1 for i, t in enumerate(ids) if t in ends), len(ids))
        reply = context.tokenizer.decode(ids, skip_special_tokens=True)
        return reply, {"prompt_tokens": inputs["input_ids"].shape[1], "completion_tokens": used}

    return answer
