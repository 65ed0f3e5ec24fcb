"""``MlnbExtension``: the extension app that owns the service, its options and its jobs."""

from __future__ import annotations

import sys
from typing import Any

from jupyter_server.extension.application import ExtensionApp
from traitlets import Int, Unicode

from mlnb.server.handlers import routes
from mlnb.server.service import MlnbService


class MlnbExtension(ExtensionApp):
    name = "mlnb"
    description = "mlnb: the notebook's pipeline, runs and builds for the JupyterLab sidebar"
    load_other_extensions = True

    store = Unicode(
        None,
        allow_none=True,
        config=True,
        help="The mlnb store for runs started from JupyterLab "
        "(default: $MLNB_STORE, else .mlnb beside each notebook).",
    )
    python = Unicode(
        sys.executable,
        config=True,
        help="The Python interpreter that runs `python -m mlnb run|build|runs`.",
    )
    max_jobs = Int(
        2,
        config=True,
        help="How many runs and builds may go at once on this server (one per notebook and kind).",
    )

    service: MlnbService

    def initialize_settings(self) -> None:
        assert self.serverapp is not None
        self.service = MlnbService(
            self.serverapp.root_dir,
            store=self.store,
            python=self.python,
            max_jobs=self.max_jobs,
            allow_hidden=bool(getattr(self.serverapp.contents_manager, "allow_hidden", False)),
        )
        self.settings["mlnb_service"] = self.service

    def initialize_handlers(self) -> None:
        handlers: list[Any] = routes("/")
        self.handlers.extend(handlers)

    async def stop_extension(self) -> None:
        await self.service.shutdown()
