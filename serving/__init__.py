"""Serving: the HTTP API and web pages for campaign lists, recommendations and churn scores.

`serving.app.create_app` builds the FastAPI app; `retention serve` (`cli.serve.serve`) runs it.
"""
