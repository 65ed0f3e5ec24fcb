"""The REST API under ``/mlnb/``: thin tornado handlers over :class:`MlnbService`.

Every route is authenticated, async, and answers errors in one JSON shape::

    {"error": CODE, "message": ..., "fix": ..., "notebook": ..., "cell": ...,
     "cell_first_line": ..., "stage": ..., "status": HTTP_STATUS}

(:func:`mlnb.errors.error_response`'s body plus the status; inspect errors add ``stages``,
the stages found before validation failed, as the error's ``details``.)

    GET  /mlnb/version                  {"version", "api"}
    GET  /mlnb/inspect?path=NB          the pipeline, as ``mlnb inspect --json``
    POST /mlnb/inspect                  {"path", "notebook": <nbformat JSON>}: the same, unsaved
    GET  /mlnb/runs?path=NB             {"runs": [...]} newest first
    POST /mlnb/runs                     {"path", "parameters", "kernel"?} -> 202 {"run_id", ...}
    GET  /mlnb/runs/ID?path=NB          the run record, live while it runs
    GET  /mlnb/runs/ID/importance?path=NB  {"status": "computed"|"not-computed", "importance"}
    POST /mlnb/runs/ID/importance       {"path"}: compute it (a subprocess), then as GET
    GET  /mlnb/runs/ID/report?path=NB   the run's HTML report (``mlnb report``), sandboxed
    GET  /mlnb/runs/ID/notebook?path=NB the executed notebook, as a download
    POST /mlnb/builds                   {"path", "run_id"?} -> 202 the build job
    GET  /mlnb/jobs/ID                  a build job: status, result (bento, model, format)

Cells are named by their 0-based index under explicit keys (``cell_index``, ``cell_indexes``);
the older ``cell``/``cells`` keys carry the same values. People read cell numbers 1-based.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping
from typing import Any

import tornado.web
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.utils import url_path_join

from mlnb import bounded_json
from mlnb.errors import BadRequestError, InputLimitError, MlnbError, error_response
from mlnb.server.service import MlnbService

MAX_BODY_BYTES = 32 * 1024 * 1024
# A notebook's JSON is a few levels deep; its outputs (application/json, widget state) may
# nest more, but not this much. Deeper bodies are a 400, never a RecursionError's 500.
MAX_BODY_DEPTH = 100


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def error_body(status: int, error: BaseException | None, reason: str | None) -> dict[str, Any]:
    """The one error shape (:func:`~mlnb.errors.error_response`) with its HTTP status, for an
    MlnbError (its own status and words), a tornado HTTPError (its message) or anything else
    (a 5xx says only that it happened)."""
    message = reason
    if isinstance(error, tornado.web.HTTPError) and error.log_message:
        message = error.log_message % error.args if error.args else error.log_message
    if status >= 500:
        message = "internal error in the mlnb server extension (see the server log)"
    fix = "log in to Jupyter again (reload the page)" if status == 403 else None
    status, body = error_response(error, status=status, message=message, fix=fix)
    body["status"] = status
    return body


def error_page(body: Mapping[str, Any]) -> str:
    """The error shape as a small HTML page (for routes a browser opens), every value escaped."""
    fix = body.get("fix")
    return (
        "<!doctype html><meta charset='utf-8'><title>mlnb: error</title>"
        f"<h1>{html.escape(str(body.get('status')))}: {html.escape(str(body.get('error')))}</h1>"
        f"<p class='mlnb-error-message'>{html.escape(str(body.get('message')))}</p>"
        + (f"<p class='mlnb-fix'>Fix: {html.escape(str(fix))}</p>" if fix else "")
    )


class MlnbRoute(JupyterHandler):
    """What every mlnb route shares: the service, and expected errors logged in one line."""

    @property
    def service(self) -> MlnbService:
        service: MlnbService = self.settings["mlnb_service"]
        return service

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, MlnbError):  # an expected 4xx: one line, no traceback
            self.log.info("mlnb: %s %s: %s", self.request.method, self.request.path, value)
            return
        super().log_exception(typ, value, tb)

    def error_of(self, status_code: int, exc_info: Any) -> dict[str, Any]:
        """The error body of what failed, its status set: an MlnbError's own status."""
        error = exc_info[1] if exc_info else None
        body = error_body(status_code, error, self._reason)
        if isinstance(error, MlnbError):
            self.set_status(body["status"])
        return body


class MlnbHandler(MlnbRoute, APIHandler):
    """Shared JSON I/O and the error shape."""

    def send(self, payload: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(_finite(payload), allow_nan=False, default=str))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        body = self.error_of(status_code, kwargs.get("exc_info"))
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(_finite(body)))

    def path_argument(self) -> str:
        path = self.get_query_argument("path", default=None)
        if path is None:
            raise BadRequestError(
                "the query argument 'path' is missing",
                fix="add ?path=NOTEBOOK (relative to the server root)",
            )
        return path

    def json_body(self) -> dict[str, Any]:
        """The body, a JSON object of at most ``MAX_BODY_BYTES`` and ``MAX_BODY_DEPTH`` levels."""
        try:
            body = bounded_json.loads(
                self.request.body or b"null",
                max_bytes=MAX_BODY_BYTES,
                max_depth=MAX_BODY_DEPTH,
                what="the request body",
                fix='send a JSON object such as {"path": "dir/notebook.ipynb"}',
            )
        except InputLimitError as error:
            if error.reason != "invalid":
                raise BadRequestError(error.message, fix=error.fix) from None
            body = None
        if not isinstance(body, dict):
            raise BadRequestError(
                "the request body must be a JSON object",
                fix='send e.g. {"path": "dir/notebook.ipynb"}',
            )
        return body


class VersionHandler(MlnbHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        self.send(self.service.version())


class InspectHandler(MlnbHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        self.send(await self.service.inspect(self.path_argument()))

    @tornado.web.authenticated
    async def post(self) -> None:
        body = self.json_body()
        self.send(await self.service.inspect_content(body.get("path"), body.get("notebook")))


class RunsHandler(MlnbHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        self.send(await self.service.list_runs(self.path_argument()))

    @tornado.web.authenticated
    async def post(self) -> None:
        body = self.json_body()
        started = await self.service.start_run(
            body.get("path"), body.get("parameters"), body.get("kernel")
        )
        self.send(started, status=202)


class RunHandler(MlnbHandler):
    @tornado.web.authenticated
    async def get(self, run_id: str) -> None:
        self.send(await self.service.get_run(self.path_argument(), run_id))


class ImportanceHandler(MlnbHandler):
    @tornado.web.authenticated
    async def get(self, run_id: str) -> None:
        self.send(await self.service.get_importance(self.path_argument(), run_id))

    @tornado.web.authenticated
    async def post(self, run_id: str) -> None:
        body = self.json_body()
        self.send(await self.service.compute_importance(body.get("path"), run_id))


class ReportHandler(MlnbRoute):
    """The run's report as a page: its scripts confined to a unique origin, as Jupyter serves
    HTML files (``sandbox allow-scripts``), so the report cannot act on the server."""

    @property
    def content_security_policy(self) -> str:
        return super().content_security_policy + "; sandbox allow-scripts"

    @tornado.web.authenticated
    async def get(self, run_id: str) -> None:
        page = await self.service.run_report(self.get_query_argument("path", None), run_id)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(page)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        body = self.error_of(status_code, kwargs.get("exc_info"))
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(error_page(body))


class ExecutedNotebookHandler(MlnbHandler):
    @tornado.web.authenticated
    async def get(self, run_id: str) -> None:
        content, filename = await self.service.executed_notebook(self.path_argument(), run_id)
        self.set_header("Content-Type", "application/x-ipynb+json")
        self.set_header("Content-Disposition", f'attachment; filename="{filename}"')
        self.finish(content)


class BuildsHandler(MlnbHandler):
    @tornado.web.authenticated
    async def post(self) -> None:
        body = self.json_body()
        self.send(await self.service.start_build(body.get("path"), body.get("run_id")), 202)


class JobHandler(MlnbHandler):
    @tornado.web.authenticated
    async def get(self, job_id: str) -> None:
        self.send(self.service.get_job(job_id))


ROUTES: list[tuple[str, type[MlnbRoute]]] = [
    ("version", VersionHandler),
    ("inspect", InspectHandler),
    ("runs", RunsHandler),
    ("runs/([^/]+)", RunHandler),
    ("runs/([^/]+)/importance", ImportanceHandler),
    ("runs/([^/]+)/report", ReportHandler),
    ("runs/([^/]+)/notebook", ExecutedNotebookHandler),
    ("builds", BuildsHandler),
    ("jobs/([^/]+)", JobHandler),
]


def routes(base_url: str = "/") -> list[tuple[str, type[MlnbRoute]]]:
    return [(url_path_join(base_url, "mlnb", pattern), cls) for pattern, cls in ROUTES]
