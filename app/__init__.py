"""krakenflow's Faust application: ``faust -A app worker -l info``.

Faust finds the app as the attribute ``app`` of this package. It is built by
:func:`app.factory.create_app` from the environment on first access, so importing any module of this
package (settings, the profile) builds nothing, and ``krakenflow verify`` never imports Faust.
"""

from __future__ import annotations

from typing import Any

_app: Any = None


def __getattr__(name: str) -> Any:
    global _app
    if name == "app":
        if _app is None:
            from app.factory import create_app

            _app = create_app()
        return _app
    raise AttributeError(f"module 'app' has no attribute {name!r}")
