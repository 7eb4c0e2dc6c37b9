"""krakenflow's Faust application and command line.

``faust -A app worker -l info`` finds the Faust app as the attribute ``app`` of this package; it is
imported lazily so that ``krakenflow verify`` and the pure domain never pay for importing Faust.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "app":
        from app.main import app

        return app
    raise AttributeError(f"module 'app' has no attribute {name!r}")
