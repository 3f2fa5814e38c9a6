"""Serving: the FastAPI app for campaign lists, recommendations and churn scores.

Filled by the campaign/serving issue.
"""
