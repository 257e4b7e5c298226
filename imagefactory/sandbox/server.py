"""The sandbox EC2 emulator process: moto's server app, seeded, persisted, on 127.0.0.1.

    python -m imagefactory.sandbox.server --port N --state-dir D      (N = 0: any free port)

Started detached by `emulator.ensure_up`. At start it seeds Canonical's Ubuntu images into every region,
restores `D/state.json`, binds 127.0.0.1, serves moto's `DomainDispatcherApplication` threaded (several
Packer builds at once) and then writes `D/server.json` (pid, port) — so that file appearing means "ready".
A WSGI middleware saves the state after every successful mutating EC2/SSM request, before answering it
(`imagefactory.files.atomic_write`; concurrent requests share one write: `StateStore`). SIGTERM or
SIGINT: stop serving, save a last time, remove `server.json`, exit 0.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from imagefactory.files import atomic_write
from imagefactory.sandbox import contents, image_lifecycle, policy
from imagefactory.sandbox.emulator import (
    HEALTH_PATH,
    PUBLISH_PATH,
    SANDBOX_ACCOUNT_ID,
    SERVER_FILE,
    SERVER_MARKER,
    STATE_FILE,
)

log = logging.getLogger("imagefactory.sandbox.server")

# Requests after which the persisted state may differ (EC2 query `Action=`, or SSM `X-Amz-Target`).
MUTATING_ACTIONS = frozenset(
    {
        "CreateImage", "CopyImage", "RegisterImage", "DeregisterImage", "CreateTags", "DeleteTags",
        "ModifyImageAttribute", "ResetImageAttribute", "ImportKeyPair", "CreateKeyPair", "DeleteKeyPair",
        "ModifySnapshotAttribute", "ResetSnapshotAttribute", "DeleteSnapshot",
        "RunInstances", "StartInstances", "StopInstances", "TerminateInstances", "RebootInstances",
        "ModifyInstanceAttribute", "CreateSecurityGroup", "DeleteSecurityGroup",
        "AuthorizeSecurityGroupIngress", "RevokeSecurityGroupIngress",
        "PutParameter", "DeleteParameter", "DeleteParameters", "LabelParameterVersion",
        "UnlabelParameterVersion", "AddTagsToResource", "RemoveTagsFromResource",
        "CreateGrant", "RevokeGrant", "RetireGrant", "PutKeyPolicy",
    }
) | image_lifecycle.ACTIONS  # fmt: skip
_FORM = "application/x-www-form-urlencoded"
RESET_PATH = "/moto-api/reset"

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class StateStore:
    """`state.json`: loaded once at start, written whenever what users made has changed.

    A mutating request counts its change while it holds `lock` (`changed`), and answers once a state
    holding that change is on disk (`commit`): one writer at a time renders the state as it is then (under
    `lock`) and writes it (outside), so requests that finished meanwhile are in that write and return
    without one of their own (a group commit). The disk (two fsyncs per write) is never waited for under
    `lock`, so concurrent requests do not queue behind it.
    """

    def __init__(self, path: Path, seeded: dict[str, set[str]]) -> None:
        self.path = path
        self.seeded = seeded
        self.lock = threading.Lock()  # held across a mutating request, and while the state is rendered
        self._write_lock = threading.Lock()  # one writer at a time
        self._changes = 0  # changes made so far (under `lock`)
        self._written = 0  # changes on disk (under `_write_lock`)
        self._last = ""

    def load(self) -> None:
        from imagefactory.sandbox import state

        if not self.path.exists():
            return
        text = self.path.read_text(encoding="utf-8")
        state.restore_state(SANDBOX_ACCOUNT_ID, json.loads(text))
        self._last = self._render()
        log.info("restored sandbox state from %s", self.path)

    def reseed(self) -> None:
        from imagefactory.sandbox import seed

        self.seeded = seed.seed_canonical(SANDBOX_ACCOUNT_ID)

    def _render(self) -> str:
        from imagefactory.sandbox import state

        return json.dumps(state.dump_state(SANDBOX_ACCOUNT_ID, self.seeded), indent=1, sort_keys=True)

    def changed(self) -> int:
        """Count a change (the caller holds `lock`); its number, for `commit`."""
        self._changes += 1
        return self._changes

    def commit(self, number: int) -> None:
        """Return once the state on disk holds change `number` (and every one before it)."""
        with self._write_lock:
            if self._written >= number:
                return
            with self.lock:
                newest, text = self._changes, self._render()
            if text != self._last:
                atomic_write(self.path, text, mode=0o600)
                self._last = text
            self._written = newest

    def save(self) -> None:
        """Render and write the state now (the caller does not hold `lock`)."""
        with self.lock:
            number = self.changed()
        self.commit(number)


def request_action(environ: dict[str, Any]) -> str:
    """The API action of a request (`CreateImage`, `PutParameter`, …), or "" when it names none.

    Reads a form body and puts it back as `wsgi.input` so that moto still sees it.
    """
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        return target.rpartition(".")[2]
    fields = parse_qs(environ.get("QUERY_STRING", ""))
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length and environ.get("CONTENT_TYPE", "").startswith(_FORM):
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)
        fields = {**fields, **parse_qs(body.decode("utf-8", "replace"))}
    return fields.get("Action", [""])[0]


class SandboxApp:
    """WSGI middleware around moto: a health endpoint, and a state save after mutating requests."""

    def __init__(self, app: WsgiApp, store: StateStore) -> None:
        self.app = app
        self.store = store

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO")
        if path == HEALTH_PATH:
            return self._health(start_response)
        if path == contents.CONTENT_PATH:  # what an AMI holds, for the data plane (`sandbox.contents`)
            return self._json(start_response, *contents.answer(environ.get("QUERY_STRING", "")))
        if path == PUBLISH_PATH and environ.get("REQUEST_METHOD") == "POST":
            return self._publish(environ, start_response)
        if path == RESET_PATH:  # moto forgets everything, seeded images too: seed them again
            return self._mutate(environ, start_response, reseed=True)
        if request_action(environ) not in MUTATING_ACTIONS:
            return self.app(environ, start_response)
        return self._mutate(environ, start_response)

    def _health(self, start_response: StartResponse) -> list[bytes]:
        return self._json(start_response, "200 OK", {"service": SERVER_MARKER, "pid": os.getpid(),
                                                     "state_dir": str(self.store.path.parent)})

    @staticmethod
    def _json(start_response: StartResponse, status: str, data: dict[str, Any]) -> list[bytes]:
        body = json.dumps(data).encode()
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    def _publish(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        """A newer Canonical base image in every region (`seed.publish`), kept by the next save."""
        from imagefactory.sandbox import seed

        length = int(environ.get("CONTENT_LENGTH") or 0)
        try:
            asked = json.loads(environ["wsgi.input"].read(length) or b"{}")
            with self.store.lock:
                made = seed.publish(SANDBOX_ACCOUNT_ID, str(asked["version"]), str(asked["serial"]))
                number = self.store.changed()
            self.store.commit(number)
            status, body = "200 OK", json.dumps(made).encode()
        except (ValueError, KeyError, TypeError) as exc:
            status, body = "400 Bad Request", str(exc).encode()
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    def _mutate(self, environ: dict[str, Any], start_response: StartResponse, *, reseed: bool = False) -> list[bytes]:
        """Run a request that may change the state; once it succeeded, save (after reseeding if asked): rendered
        under the store's lock, on disk before the answer (`StateStore.commit`)."""
        statuses: list[str] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            statuses.append(status)
            return start_response(status, headers, exc_info)

        number = 0
        with self.store.lock:
            result = self.app(environ, capture)
            try:
                chunks = list(result)
            finally:
                close = getattr(result, "close", None)
                if close:
                    close()
            if statuses and statuses[-1].startswith("2"):
                try:
                    if reseed:
                        self.store.reseed()
                    number = self.store.changed()
                except Exception:  # a failed save must not fail the request; the log says why
                    log.exception("could not reseed the sandbox for %s", self.store.path)
        if number:
            try:
                self.store.commit(number)
            except Exception:
                log.exception("could not save sandbox state to %s", self.store.path)
        return chunks


def _configure_moto() -> None:
    """Before moto builds any backend: only our seeded images, and the sandbox account."""
    os.environ["MOTO_EC2_LOAD_DEFAULT_AMIS"] = "false"
    os.environ.pop("MOTO_AMIS_PATH", None)
    os.environ["MOTO_ACCOUNT_ID"] = SANDBOX_ACCOUNT_ID


def build_app(state_dir: Path) -> tuple[SandboxApp, StateStore]:
    """Seed, restore, and wrap moto's dispatcher; the returned store is already loaded."""
    _configure_moto()
    policy.install()
    image_lifecycle.install()
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    started = time.monotonic()
    store = StateStore(state_dir / STATE_FILE, {})
    store.reseed()
    log.info("seeded %d Ubuntu images in %d regions in %.2f s", sum(map(len, store.seeded.values())),
             len(store.seeded), time.monotonic() - started)  # fmt: skip
    store.load()
    return SandboxApp(DomainDispatcherApplication(create_backend_app), store), store


def _write_server_file(state_dir: Path, port: int) -> None:
    info = {
        "pid": os.getpid(),
        "port": port,
        "endpoint": f"http://127.0.0.1:{port}",
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    atomic_write(state_dir / SERVER_FILE, json.dumps(info, indent=1) + "\n", mode=0o600)


def _remove_server_file(state_dir: Path) -> None:
    path = state_dir / SERVER_FILE
    try:
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def _wait_for_signal() -> None:
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass


def serve(port: int, state_dir: Path) -> None:
    """Run until SIGTERM/SIGINT; the last state save happens after serving has stopped."""
    from werkzeug.serving import make_server

    started = time.monotonic()
    app, store = build_app(state_dir)
    httpd = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.1,), name="serve", daemon=True)
    thread.start()
    _write_server_file(state_dir, httpd.server_port)
    log.info("serving on http://127.0.0.1:%d (pid %d), ready in %.2f s", httpd.server_port, os.getpid(),
             time.monotonic() - started)  # fmt: skip
    try:
        _wait_for_signal()
        log.info("stopping")
        httpd.shutdown()
        thread.join(timeout=5)
        store.save()
    finally:
        _remove_server_file(state_dir)
    log.info("stopped; state saved to %s", store.path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m imagefactory.sandbox.server", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--state-dir", type=Path, required=True, help="holds server.json and state.json")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args.state_dir.mkdir(parents=True, exist_ok=True)
    try:
        serve(args.port, args.state_dir)
    except (OSError, ValueError, KeyError) as exc:  # bad state.json, port in use, …: say so in the log
        log.exception("sandbox emulator failed: %s", exc)
        return 1
    return 0


def _exit(code: int) -> None:
    """Exit without tearing down moto's many module globals (0.3 s): the state is saved, logs flushed."""
    logging.shutdown()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    _exit(main())
