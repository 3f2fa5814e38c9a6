"""Property-based run of the OpenAPI schema (schemathesis, in process over ASGI): every built-in check (no
server error, documented status codes, content types and headers, responses valid against their
schemas, e.g. `date-time` with a zone, invalid data rejected, authentication enforced).

Every operation gets generated path and query parameters, valid ones and deliberately invalid ones
(ids of any characters and lengths, k of any integer or none), sent with the admin token so
every route is reached past authentication. Generated ids are almost never real, so a second
pass fixes the ids to a real customer and campaign and generates the rest.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from sqlalchemy import text

from serving.ratelimit import FailureLimiter
from tests.serving.conftest import ADMIN_TOKEN, CAMPAIGN_ID, Served, auth

EXAMPLES_PER_OPERATION = 25  # per pass: enough to hit the edges within the suite's time budget
EXAMPLES_WITH_REAL_IDS = 10  # a churn call costs ~0.2 s and has nothing else to vary


@pytest.fixture
def without_failure_limit(served: Served) -> Iterator[None]:
    """The served app without its limit on wrong tokens, for the duration of a test.

    The auth check probes every operation with a wrong token: past the limit, every later case would be
    answered 429 (documented, so no check fails) and its response would go unchecked. The limit itself
    is tested in test_serving_security.py. Swapped by hand: pytest's monkeypatch cannot restore an
    attribute of starlette's `State`.
    """
    limiter = served.app.state.auth_failures
    served.app.state.auth_failures = FailureLimiter(max_failures=1_000_000)
    yield
    served.app.state.auth_failures = limiter


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("real_ids", [False, True], ids=["generated-ids", "real-ids"])
def test_the_api_keeps_its_schema(
    served: Served, without_failure_limit: None, mode: GenerationMode, real_ids: bool
) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", served.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8  # health, 4 campaign routes, 2 customer routes, admin
    with served.engine.connect() as connection:
        customer = connection.execute(text("SELECT min(customer_id) FROM online_features")).scalar_one()
    known = {"customer_id": customer, "campaign_id": CAMPAIGN_ID}

    for operation in operations:
        names = [parameter.name for parameter in operation.path_parameters]
        if real_ids and not names:
            continue  # nothing to fix: covered by the generated-ids pass
        if mode is GenerationMode.NEGATIVE and not (operation.query or (names and not real_ids)):
            continue  # no parameter left to make invalid
        fixed = {name: known[name] for name in names} if real_ids else None

        @given(case=operation.as_strategy(generation_mode=mode, path_parameters=fixed))
        @settings(
            max_examples=EXAMPLES_WITH_REAL_IDS if real_ids else EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,  # the same cases every run: a failure here is reproducible
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def conforms(case: schemathesis.Case) -> None:
            response = case.call(headers=auth(ADMIN_TOKEN))
            case.validate_response(response)  # every built-in check

        conforms()
