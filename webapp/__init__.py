"""SSL Manager: `create_app()` for standalone use, `SSLManager().init_app(host_app)` to embed.

The names are loaded on first use (PEP 562), so that `import webapp.<module>` and the
`sslmanager` console script do not pay for Flask and SQLAlchemy before they need them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .version import __version__

__all__ = ["SSLManager", "State", "create_app", "include_object", "mount_web", "__version__"]

if TYPE_CHECKING:
    from .extension import SSLManager, State, create_app, include_object, mount_web


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import extension  # on first use: see the module docstring
        return getattr(extension, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
