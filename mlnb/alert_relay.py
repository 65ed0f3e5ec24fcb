"""A tiny HTTP receiver for ``$MLNB_ALERT_WEBHOOK`` that turns an alert into a retraining run.

A served model posts each drift or accuracy alert to ``$MLNB_ALERT_WEBHOOK`` as one JSON
object (:mod:`mlnb.monitoring.alerts`, :mod:`mlnb.monitoring.feedback`), e.g.
``{"bento": "cancer:8da8a8d7d071", "alert": "drift", "feature": "mean area", "psi": 0.83,
...}``. Point the webhook at this relay; it starts ``templates/ci/retrain.sh`` one of two ways.

- **GitHub Actions** (the default). GitHub starts a workflow from outside only through its
  repository dispatch API, which wants an event type, a ``client_payload`` and a token; the
  relay makes that call, which starts ``templates/ci/retrain.yml``::

      POST $MLNB_DISPATCH_URL        e.g. https://api.github.com/repos/OWNER/REPO/dispatches
      Authorization: Bearer $MLNB_DISPATCH_TOKEN
      {"event_type": "mlnb-alert",   ($MLNB_DISPATCH_EVENT)
       "client_payload": {"alert": {the alert}, "notebook": $MLNB_RETRAIN_NOTEBOOK,
                          "parameter": $MLNB_RETRAIN_PARAMETER, "value": $MLNB_RETRAIN_VALUE,
                          "live": $MLNB_RETRAIN_LIVE, else the alert's "bento"}}

  The token needs write access to the repository's contents (a fine-grained token with
  "Contents: read and write", or a classic one with ``repo``). It is read from the
  environment, sent only to that URL (https, or http to this machine), and never logged.
- **On this machine** (``--run COMMAND``): COMMAND runs through ``sh -c`` with the alert in
  ``$MLNB_ALERT`` (JSON); its standard output is echoed to the relay's, the last lines kept.

One retraining at a time: an alert that comes while one is running, or less than
``--cooldown`` seconds after the last one started, is counted and coalesced (a drifting
service sends one alert per feature). Only the ``--kinds`` of alerts start one (default drift
and accuracy: a contract alert says the data is broken, and retraining would learn it). A
dispatch that fails (or a command that cannot start) does not hold the cooldown: the next
alert tries again; a command that ran and failed does, and ``GET /status`` shows why.

``python -m mlnb.alert_relay --port 8787 [--host 127.0.0.1] [--run COMMAND]`` listens on
127.0.0.1 unless told otherwise. ``POST /`` (or ``/alert``) takes a JSON object of at most
``MAX_BODY_BYTES`` and answers 202 with what it did; ``GET /status`` shows the counts and the
last runs. Every other request, and every body that is not such an object, gets a JSON error,
never a traceback. The standard library only, so it runs beside any service.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from mlnb import __version__
from mlnb.bounded_json import loads
from mlnb.errors import InputLimitError, MlnbError

MAX_BODY_BYTES = 16 * 1024  # an alert is well under 1 KiB
MAX_DEPTH = 8
DEFAULT_KINDS = ("drift", "accuracy")
DEFAULT_COOLDOWN_S = 600.0
DEFAULT_EVENT = "mlnb-alert"
ATTEMPTS_KEPT = 20
OUTPUT_LINES_KEPT = 20
DISPATCH_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 10.0
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
# The workflow inputs a dispatch carries, from the relay's environment.
INPUT_ENV = {
    "notebook": "MLNB_RETRAIN_NOTEBOOK",
    "parameter": "MLNB_RETRAIN_PARAMETER",
    "value": "MLNB_RETRAIN_VALUE",
    "live": "MLNB_RETRAIN_LIVE",
}


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def _say(message: str) -> None:
    print(f"mlnb alert relay: {message}", file=sys.stderr, flush=True)


@dataclass
class Attempt:
    """One retraining the relay started: a local command's run or one dispatch call."""

    alert: dict[str, Any]
    started: str = field(default_factory=_now)
    seconds: float | None = None  # None while it runs
    returncode: int | None = None  # the command's exit status; the dispatch's HTTP status
    output: list[str] = field(default_factory=list)  # the command's last lines of stdout
    error: str | None = None
    ok: bool = False  # set by whoever ran it: exit status 0, a 2xx from GitHub
    never_started: bool = False  # it failed before any retraining began: the next alert retries

    def to_json(self) -> dict[str, Any]:
        return {
            "alert": self.alert,
            "started": self.started,
            "seconds": self.seconds,
            "running": self.seconds is None,
            "returncode": self.returncode,
            "ok": self.ok if self.seconds is not None else None,
            "output": self.output,
            "error": self.error,
        }


@dataclass(frozen=True)
class Dispatch:
    """GitHub's repository dispatch call, configured from the environment."""

    url: str
    token: str
    event_type: str = DEFAULT_EVENT
    inputs: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Dispatch:
        url = env.get("MLNB_DISPATCH_URL", "").strip()
        token = env.get("MLNB_DISPATCH_TOKEN", "").strip()
        missing = [
            n for n, v in (("MLNB_DISPATCH_URL", url), ("MLNB_DISPATCH_TOKEN", token)) if not v
        ]
        if missing:
            raise MlnbError(
                f"the relay forwards alerts to GitHub, and {' and '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not set",
                fix="set MLNB_DISPATCH_URL=https://api.github.com/repos/OWNER/REPO/dispatches "
                "and MLNB_DISPATCH_TOKEN (a token that may write the repository's contents), "
                "or run a command here with --run COMMAND",
            )
        parts = urlsplit(url)
        if parts.scheme != "https" and not (
            parts.scheme == "http" and parts.hostname in LOCAL_HOSTS
        ):
            raise MlnbError(
                f"MLNB_DISPATCH_URL {url!r} is not an https URL: the token would travel in clear",
                fix="use https://api.github.com/repos/OWNER/REPO/dispatches",
            )
        inputs = {name: env[var] for name, var in INPUT_ENV.items() if env.get(var)}
        return cls(url, token, env.get("MLNB_DISPATCH_EVENT") or DEFAULT_EVENT, inputs)

    def body(self, alert: Mapping[str, Any]) -> dict[str, Any]:
        """The request body: the event type, and the alert with the workflow's inputs (GitHub
        takes at most 10 top-level properties in ``client_payload``)."""
        payload: dict[str, Any] = {"alert": dict(alert), **self.inputs}
        if "live" not in payload and isinstance(alert.get("bento"), str):
            payload["live"] = alert["bento"]
        return {"event_type": self.event_type, "client_payload": payload}

    def send(self, alert: Mapping[str, Any]) -> int:
        """POST the dispatch; GitHub's status (204 when the workflow is started)."""
        request = urllib.request.Request(
            self.url,
            data=json.dumps(self.body(alert)).encode(),
            method="POST",
            headers={
                "Accept": "application/vnd.github+json",
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/json",
                "User-Agent": f"mlnb-alert-relay/{__version__}",
                "X-GitHub-Api-Version": "2022-11-28",
            },
        )
        with urllib.request.urlopen(request, timeout=DISPATCH_TIMEOUT_S) as response:
            response.read(MAX_BODY_BYTES)
            return int(response.status)

    def describe(self) -> str:
        return f"a {self.event_type!r} dispatch to {self.url}"


class Relay:
    """What to do with each alert: start a retraining, coalesce it, or ignore it."""

    def __init__(
        self,
        start: Callable[[Attempt], None],
        *,
        kinds: tuple[str, ...] = DEFAULT_KINDS,
        cooldown: float = DEFAULT_COOLDOWN_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._start = start  # runs the attempt to its end (in a thread the relay starts)
        self.kinds = kinds
        self.cooldown = cooldown
        self.clock = clock
        self.counts = collections.Counter[str]()
        self.attempts: collections.deque[Attempt] = collections.deque(maxlen=ATTEMPTS_KEPT)
        self._lock = threading.Lock()
        self._running: Attempt | None = None
        self._last_start: float | None = None

    def receive(self, alert: dict[str, Any]) -> dict[str, Any]:
        """The answer to one alert (already checked to be a JSON object with a kind)."""
        kind = str(alert.get("alert"))
        with self._lock:
            self.counts["received"] += 1
            if kind not in self.kinds:
                self.counts["ignored"] += 1
                return {"status": "ignored", "why": f"{kind!r} alerts do not start a retraining"}
            now = self.clock()
            if self._running is not None:
                self.counts["coalesced"] += 1
                return {"status": "coalesced", "why": "a retraining is running"}
            if self._last_start is not None and now - self._last_start < self.cooldown:
                self.counts["coalesced"] += 1
                left = self.cooldown - (now - self._last_start)
                return {"status": "coalesced", "why": f"cooling down for {left:.0f} s more"}
            attempt = Attempt(alert)
            self._running = attempt
            self._last_start = now
            self.attempts.append(attempt)
            self.counts["started"] += 1
        threading.Thread(target=self._run, args=(attempt,), daemon=True).start()
        return {"status": "started", "started": attempt.started}

    def _run(self, attempt: Attempt) -> None:
        began = time.monotonic()
        try:
            self._start(attempt)
        except Exception as exc:  # a failed retraining is reported, never raised
            attempt.ok, attempt.error = False, f"{type(exc).__name__}: {exc}"[:300]
            attempt.never_started = True
        attempt.seconds = round(time.monotonic() - began, 3)
        with self._lock:
            self._running = None
            if not attempt.ok:
                self.counts["failed"] += 1
            if attempt.never_started:
                self._last_start = None  # the next alert tries again
        how = "succeeded" if attempt.ok else f"failed ({attempt.error or attempt.returncode})"
        _say(f"the retraining started at {attempt.started} {how} in {attempt.seconds:.1f} s")

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "kinds": list(self.kinds),
                "cooldown": self.cooldown,
                "running": self._running is not None,
                **{k: self.counts[k] for k in ("received", "started", "coalesced", "ignored")},
                "failed": self.counts["failed"],
                "attempts": [a.to_json() for a in self.attempts],
            }


class Command:
    """``--run COMMAND``: run it with ``sh -c``, the alert in ``$MLNB_ALERT``."""

    def __init__(self, command: str) -> None:
        self.command = command
        self._lock = threading.Lock()
        self.process: subprocess.Popen[str] | None = None

    def __call__(self, attempt: Attempt) -> None:
        env = {**os.environ, "MLNB_ALERT": json.dumps(attempt.alert)}
        _say(f"{_alert_line(attempt.alert)}: running {self.command}")
        kept: collections.deque[str] = collections.deque(maxlen=OUTPUT_LINES_KEPT)
        with self._lock:
            process = subprocess.Popen(
                ["/bin/sh", "-c", self.command],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                text=True,
                errors="replace",
                start_new_session=True,  # stopped as a group with the relay
            )
            self.process = process
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            kept.append(line.rstrip("\n")[:1000])
            attempt.output = list(kept)
        attempt.returncode = process.wait()
        attempt.ok = attempt.returncode == 0
        with self._lock:
            self.process = None

    def stop(self) -> None:
        """End the running command's process group (started by this relay)."""
        with self._lock:
            process = self.process
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=20)
            except (OSError, subprocess.TimeoutExpired):
                process.kill()

    def describe(self) -> str:
        return f"`{self.command}` here"


def dispatcher(target: Dispatch) -> Callable[[Attempt], None]:
    def send(attempt: Attempt) -> None:
        _say(f"{_alert_line(attempt.alert)}: {target.describe()}")
        try:
            attempt.returncode = target.send(attempt.alert)
            attempt.ok = 200 <= attempt.returncode < 300
        except urllib.error.HTTPError as error:
            attempt.returncode = error.code
            attempt.error = f"GitHub answered {error.code} {error.reason}"
        except (OSError, ValueError) as error:
            attempt.error = f"the dispatch failed: {error}"[:300]
        attempt.never_started = not attempt.ok

    return send


def _alert_line(alert: Mapping[str, Any]) -> str:
    what = [str(alert.get(k)) for k in ("feature", "metric") if alert.get(k) is not None]
    return f"{alert.get('alert')} alert from {alert.get('bento')} {' '.join(what)}".rstrip()


class Receiver(BaseHTTPRequestHandler):
    """``POST /`` or ``/alert`` with an alert; ``GET /status``; JSON errors for the rest."""

    server: RelayServer
    timeout = READ_TIMEOUT_S  # a client that stops sending does not hold a thread
    server_version = f"mlnb-alert-relay/{__version__}"
    error_content_type = "application/json"

    def do_POST(self) -> None:
        if self.path.split("?")[0] not in ("/", "/alert"):
            self._answer(404, _error("not-found", f"no {self.path}: POST alerts to /"))
            return
        problem = self._body_problem()
        if problem is not None:
            status, body = problem
            self.close_connection = True
            self._answer(status, body)
            return
        length = int(self.headers["Content-Length"])
        try:
            alert = loads(
                self.rfile.read(length),
                max_bytes=MAX_BODY_BYTES,
                max_depth=MAX_DEPTH,
                what="the alert",
                constants=False,
            )
        except InputLimitError as exc:
            self._answer(400, _error(exc.reason, exc.message))
            return
        if not isinstance(alert, dict) or not isinstance(alert.get("alert"), str):
            self._answer(
                422,
                _error("not-an-alert", 'an alert is a JSON object with "alert": "drift"|...'),
            )
            return
        self._answer(202, self.server.relay.receive(alert))

    def _body_problem(self) -> tuple[int, dict[str, Any]] | None:
        kind = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if kind != "application/json":
            return 415, _error("not-json", "send the alert as Content-Type: application/json")
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return 411, _error("no-length", "send the alert with a Content-Length")
        text = self.headers.get("Content-Length")
        if text is None:
            return 411, _error("no-length", "send the alert with a Content-Length")
        if not text.strip().isdigit():
            return 400, _error("bad-length", f"Content-Length {text[:40]!r} is not a size")
        if int(text) > MAX_BODY_BYTES:
            return 413, _error(
                "too-large", f"the alert has {int(text):,} bytes, more than {MAX_BODY_BYTES:,}"
            )
        return None

    def do_GET(self) -> None:
        if self.path.split("?")[0] in ("/status", "/healthz"):
            self._answer(200, self.server.relay.status())
        else:
            self._answer(404, _error("not-found", f"no {self.path}: GET /status"))

    def do_PUT(self) -> None:
        self._answer(405, _error("method-not-allowed", "POST alerts to /; GET /status"))

    do_DELETE = do_PATCH = do_HEAD = do_PUT

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (a bad request line, an unknown method) as JSON."""
        self.close_connection = True
        self._answer(code, _error("bad-request", message or explain or "bad request"))

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        if os.environ.get("MLNB_RELAY_ACCESS_LOG", "").lower() in ("1", "on", "true"):
            _say(format % args)


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": code, "message": message}


class RelayServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], relay: Relay) -> None:
        self.relay = relay
        super().__init__(address, Receiver)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection that broke: one line, not a traceback."""
        error = sys.exc_info()[1]
        _say(f"a request from {client_address[0]} failed: {type(error).__name__}: {error}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mlnb.alert_relay",
        description="Receive mlnb's alerts ($MLNB_ALERT_WEBHOOK) and start a retraining: "
        "a GitHub repository dispatch ($MLNB_DISPATCH_URL, $MLNB_DISPATCH_TOKEN), or a "
        "command here (--run).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8787, help="port (default 8787)")
    parser.add_argument(
        "--run", metavar="COMMAND", help="run COMMAND (sh -c) with the alert in $MLNB_ALERT"
    )
    parser.add_argument(
        "--kinds",
        default=",".join(DEFAULT_KINDS),
        help="the alerts that start a retraining (default drift,accuracy; also contract)",
    )
    parser.add_argument(
        "--cooldown",
        type=float,
        default=DEFAULT_COOLDOWN_S,
        metavar="SECONDS",
        help=f"alerts this soon after a retraining started are coalesced "
        f"(default {DEFAULT_COOLDOWN_S:g})",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    command: Command | None = None
    try:
        if args.run:
            command = Command(args.run)
            start: Callable[[Attempt], None] = command
            how = command.describe()
        else:
            target = Dispatch.from_env(os.environ)
            start, how = dispatcher(target), target.describe()
        relay = Relay(start, kinds=kinds, cooldown=max(0.0, args.cooldown))
        server = RelayServer((args.host, args.port), relay)
    except (MlnbError, OSError) as exc:
        print(f"mlnb alert relay: error: {exc}", file=sys.stderr)
        return 2

    def stop(signum: int, frame: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    port = server.server_address[1]
    _say(
        f"listening on http://{args.host}:{port} (POST / an alert; GET /status); "
        f"{', '.join(kinds)} alerts start {how}"
    )
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        if command is not None:
            command.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
