#!/usr/bin/env python3
"""A small client of the faceauth HTTP API (see examples/clients/README.md).

As a library::

    from faceauth_client import FaceAuthClient
    client = FaceAuthClient("http://127.0.0.1:5000")
    answer = client.enroll("alice", "id_card.jpg")          # multipart field cin_file
    answer = client.authenticate("alice", "selfie.jpg")     # multipart field auth_video
    answer = client.reset()                                 # admin: loopback, or a token
    print(answer.status, answer.body, answer.outcome)

As a command::

    python3 faceauth_client.py --url http://127.0.0.1:5000 enroll alice id_card.jpg
    python3 faceauth_client.py --url http://127.0.0.1:5000 authenticate alice selfie.jpg
    python3 faceauth_client.py --url http://127.0.0.1:5000 reset

The command prints the server's JSON answer on stdout and exits with
0 approved (or reset DONE), 1 no answer from the API (connection refused, timeout,
a body that is not JSON), 2 usage error (bad arguments, unreadable file),
3 a decision REJECTED by the policy (HTTP 200), 4 a request the server refused
(HTTP 4xx/5xx with the API's JSON: UNKNOWN_USER, USERNAME_ALREADY_EXISTS,
SERVER_BUSY after the retries, 401/403 on reset, ...).

A 503 answer with a ``Retry-After`` header (SERVER_BUSY: every face-analysis worker
and the queue are full) is retried, after the time the header asks for (capped
at ``max_retry_wait``), up to ``retries`` times (3 by default).
"""

from __future__ import annotations

import argparse
import email.utils
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import requests

__all__ = ["Answer", "FaceAuthClient", "TransportError", "main"]

log = logging.getLogger("faceauth_client")

DEFAULT_URL = "http://127.0.0.1:5000"

# Exit codes of the command (documented in the module docstring and the README).
EXIT_APPROVED = 0
EXIT_TRANSPORT = 1
EXIT_USAGE = 2
EXIT_REJECTED = 3
EXIT_REFUSED = 4


class TransportError(Exception):
    """No answer of the API: the connection failed or timed out, or the answer is not JSON."""


@dataclass
class Answer:
    """One answer of the API: its HTTP status, its JSON body and the body's raw text."""

    status: int
    body: dict
    text: str = field(repr=False, default="")

    @property
    def reason(self) -> Optional[str]:
        """``DecisionReason`` (enroll, authenticate) or ``msg`` (reset)."""
        return self.body.get("DecisionReason", self.body.get("msg"))

    @property
    def outcome(self) -> str:
        """``"approved"`` (or reset DONE), ``"rejected"`` (a policy decision, HTTP 200)
        or ``"refused"`` (HTTP 4xx/5xx: the request was not processed)."""
        if self.status != 200:
            return "refused"
        verdict = self.body.get("EnrollStatus", self.body.get("Decision"))
        if verdict == "APPROVED" or self.body.get("msg") == "DONE":
            return "approved"
        return "rejected"

    @property
    def approved(self) -> bool:
        return self.outcome == "approved"


class FaceAuthClient:
    """The three calls of the API. Each returns an :class:`Answer` (a rejection is an
    answer, not an exception) and raises :class:`TransportError` when there is none."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        admin_token: Optional[str] = None,
        timeout: float = 120.0,
        retries: int = 3,
        max_retry_wait: float = 30.0,
        session: Optional[requests.Session] = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.admin_token = admin_token
        # (connect, read): analysing a video may take a while; connecting may not.
        self.timeout = (min(10.0, timeout), timeout)
        self.retries = max(0, retries)
        self.max_retry_wait = max_retry_wait
        self.session = session or requests.Session()
        self._sleep = sleep

    def enroll(self, username: str, id_card_path: str) -> Answer:
        """``POST /api/enroll?username=U`` with the ID-card image as ``cin_file``."""
        return self._upload("/api/enroll", username, "cin_file", id_card_path)

    def authenticate(self, username: str, selfie_or_video_path: str) -> Answer:
        """``POST /api/authentificate?username=U`` (sic) with a selfie image or a short
        video as ``auth_video``."""
        return self._upload("/api/authentificate", username, "auth_video", selfie_or_video_path)

    def reset(self, admin_token: Optional[str] = None) -> Answer:
        """``POST /api/reset``: removes every user. Without a token the server answers
        loopback clients only; with ``--admin-token`` set on the server it wants
        ``Authorization: Bearer TOKEN`` (``admin_token`` here, else the client's)."""
        token = admin_token if admin_token is not None else self.admin_token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self._post("/api/reset", headers=headers)

    def _upload(self, path: str, username: str, field_name: str, file_path: str) -> Answer:
        # Read once: every retry sends the same bytes (the server detects the format
        # from them, not from the name or the content type).
        with open(file_path, "rb") as f:
            data = f.read()
        name = os.path.basename(file_path) or "upload"

        def files() -> dict:
            return {field_name: (name, data, "application/octet-stream")}

        return self._post(path, params={"username": username}, files=files)

    def _post(self, path: str, params: Optional[dict] = None, headers: Optional[dict] = None,
              files: Optional[Callable[[], dict]] = None) -> Answer:
        url = self.base_url + path
        attempts = self.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                r = self.session.post(url, params=params, headers=headers,
                                      files=files() if files else None, timeout=self.timeout)
            except requests.RequestException as e:
                raise TransportError(f"POST {url}: {e}") from e
            answer = _answer(r)
            wait = _retry_after(r)
            if r.status_code != 503 or wait is None or attempt == attempts:
                return answer
            wait = min(wait, self.max_retry_wait)
            log.warning("%s %s (HTTP 503): retrying in %g s (attempt %d of %d)",
                        path, answer.reason, wait, attempt + 1, attempts)
            self._sleep(wait)
        raise AssertionError("unreachable")


def _answer(r: requests.Response) -> Answer:
    try:
        body: Any = json.loads(r.text)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        snippet = r.text[:200].strip() or "an empty body"
        raise TransportError(f"HTTP {r.status_code} from {r.url} is not the API's JSON: {snippet}")
    return Answer(status=r.status_code, body=body, text=r.text.strip())


def _retry_after(r: requests.Response) -> Optional[float]:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or an HTTP date)."""
    value = r.headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def _non_negative_int(text: str) -> int:
    n = int(text)
    if n < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return n


def _positive_float(text: str) -> float:
    x = float(text)
    if not x > 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return x


EXIT_CODES = {"approved": EXIT_APPROVED, "rejected": EXIT_REJECTED, "refused": EXIT_REFUSED}


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="faceauth_client.py",
        description="Enroll, authenticate or reset against a faceauth server; prints its JSON answer.",
        epilog="Exit codes: 0 approved/DONE, 1 no answer from the API, 2 usage, "
               "3 REJECTED by the policy, 4 refused by the server (HTTP 4xx/5xx).",
    )
    parser.add_argument("--url", default=os.environ.get("FACEAUTH_URL", DEFAULT_URL),
                        help="the server (default: $FACEAUTH_URL or %(default)s)")
    parser.add_argument("--admin-token", default=os.environ.get("FACEAUTH_ADMIN_TOKEN"),
                        help="bearer token for reset (default: $FACEAUTH_ADMIN_TOKEN)")
    parser.add_argument("--retries", type=_non_negative_int, default=3,
                        help="retries of a 503 with Retry-After (SERVER_BUSY) (default: %(default)s)")
    parser.add_argument("--timeout", type=_positive_float, default=120.0,
                        help="seconds to wait for an answer (default: %(default)s)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    enroll = commands.add_parser("enroll", help="enroll USER from an ID-card image")
    enroll.add_argument("username", metavar="USER")
    enroll.add_argument("file", metavar="FILE", help="the ID-card image (JPEG, PNG, WebP, BMP)")
    auth = commands.add_parser("authenticate", aliases=["authentificate"],
                               help="authenticate USER with a selfie image or a short video")
    auth.add_argument("username", metavar="USER")
    auth.add_argument("file", metavar="FILE", help="a selfie image or video (MP4, MOV, WebM)")
    commands.add_parser("reset", help="remove every user (admin)")
    args = parser.parse_args(argv)

    logging.basicConfig(format="faceauth_client: %(message)s", level=logging.INFO, stream=sys.stderr)
    client = FaceAuthClient(args.url, admin_token=args.admin_token, timeout=args.timeout, retries=args.retries)
    try:
        if args.command == "enroll":
            answer = client.enroll(args.username, args.file)
        elif args.command == "reset":
            answer = client.reset()
        else:
            answer = client.authenticate(args.username, args.file)
    except OSError as e:
        print(f"faceauth_client: {e}", file=sys.stderr)
        return EXIT_USAGE
    except TransportError as e:
        print(f"faceauth_client: {e}", file=sys.stderr)
        return EXIT_TRANSPORT
    print(answer.text)
    if answer.status != 200:
        print(f"faceauth_client: HTTP {answer.status} {answer.reason}", file=sys.stderr)
    return EXIT_CODES[answer.outcome]


if __name__ == "__main__":
    sys.exit(main())
