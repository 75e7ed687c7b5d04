"""The review web app: pages, JSON API, Server-Sent Events, and what keeps them private.

`create_app` builds the ASGI app over a `Taskerino`; `serve` runs it (`taskerino serve`).
The web layer holds the front door and nothing behind it.
"""

from .app import create_app
from .server import serve

__all__ = ["create_app", "serve"]
