"""Feature store: feature definitions as code, point-in-time materialisation, the online store.

Filled by the feature-store issue; the source tables it reads are defined in `retention.db.models`.
"""
