"""The verifier's web application: the JSON API (verifier/http/) and the pages people read
(verifier/web/) on one Flask app, which `wattproof serve` runs (verifier/http/server.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from verifier import web
from verifier.http.app import create_api


def create_app(test_config: Mapping[str, Any] | None = None, loaded: Mapping[str, Any] | None = None) -> Flask:
    """Application factory. Settings: loaded, when the caller has read them already (once,
    whole: `wattproof serve`); else verifier.settings.load: defaults, then the TOML file named
    by CONFIG in test_config or WATTPROOF_CONFIG, then WATTPROOF_* environment variables, then
    test_config."""
    app = create_api(test_config, loaded)
    web.init_app(app, app.extensions["wattproof.log_signer"])
    return app
