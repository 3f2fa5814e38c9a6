"""Feature tasks of the extraction DAG: score new reviews' sentiment, then refresh the online store."""

from __future__ import annotations

import logging
from datetime import datetime

from retention.clock import naive_utc
from retention.context import platform_session
from retention.settings import Settings

log = logging.getLogger(__name__)


def task_score_reviews(as_of: datetime, settings: Settings | None = None) -> int:
    """Score the sentiment of published reviews not scored yet; returns rows written.

    The first run that finds enough labelled reviews before `as_of` trains the sentiment head,
    which then stays frozen (retraining is explicit: `retention sentiment train`), so scores of
    past reviews never change when new data arrives.
    """
    from feature_store.sentiment import SentimentError, load_model, score_reviews, train
    from pipelines.simulate.tone import tone_agreement

    with platform_session(settings) as (settings, params, engine):
        try:
            load_model(settings)
        except SentimentError:
            try:
                result = train(
                    engine, settings, params.sentiment, naive_utc(as_of), judge_tone=tone_agreement
                )
            except SentimentError as error:  # too few reviews so far: sentiment stays unknown for now
                log.warning("sentiment model not trained yet: %s", error)
                return 0
            log.info("trained sentiment model %s", result.model_version)
        return score_reviews(engine, settings, params.sentiment)


def task_refresh_online(as_of: datetime, settings: Settings | None = None) -> int:
    """Validate every active customer's features as of `as_of`, then make them the online store.

    Raises:
        FeatureValidationError: the feature suite failed; the online store is left as it was.
    """
    from feature_store import refresh_online
    from feature_store.checks import checked_features
    from retention.quality import QualityService

    with platform_session(settings) as (settings, params, engine):
        when = naive_utc(as_of)
        features = checked_features(engine, when, params.features, QualityService(settings.gx_dir))
        return refresh_online(engine, when, params.features, features=features)
