"""``detseg serve``: a model behind an HTTP endpoint (FastAPI + uvicorn) and a page to look at it.

- :mod:`~detseg.serve.app` -- :func:`create_app` (routes, upload limits, timeout, thread pool) and
  the worker factory :func:`app_from_env`;
- :mod:`~detseg.serve.payload` -- decoding uploads, the JSON of predictions and of the model;
- ``static/index.html`` -- the page: vanilla JS, no external resources.

Needs ``pip install 'detseg[serve]'``.
"""

from detseg.serve.app import app_from_env, create_app

__all__ = ["app_from_env", "create_app"]
