"""The benchmark baseline: a bare Flask app with one tiny JSON endpoint, served like the real one.

`gunicorn -c gunicorn.conf.py bench.bare_app:app` runs it with the gateway's own gunicorn settings
(worker class, worker count, recycling, logging), so the ratio of an endpoint's throughput to this
one's is what the gateway's own code costs on top of Flask and gunicorn.
"""

from __future__ import annotations

from flask import Flask

app = Flask(__name__)


@app.get("/bare")
def bare():
    return {"success": True}
