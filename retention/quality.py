"""Great Expectations service: suites kept in `great_expectations/`, validations and Data Docs at run time.

The project's file context (`great_expectations/gx`) holds the expectation suites, which are
generated from code (`retention quality suites`) and committed. Validations run in a second file
context under `$RETENTION_HOME/gx`, so results and Data Docs never write into the source tree.
Thresholds that come from `params.yaml` or from the data interval reach the suites as
`$PARAMETER` values at validation time, so the committed suites hold no tunable number.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pandas as pd

if TYPE_CHECKING:  # great_expectations is imported lazily: it is slow to import
    from great_expectations.core.expectation_suite import ExpectationSuite
    from great_expectations.core.expectation_validation_result import ExpectationValidationResult
    from great_expectations.data_context import FileDataContext
    from great_expectations.data_context.types.resource_identifiers import ValidationResultIdentifier
    from great_expectations.datasource.fluent import PandasDatasource
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

SUITES_ROOT = Path(__file__).resolve().parents[1] / "great_expectations"
DATASOURCE = "retention_frames"
# where GX's file context keeps its site, under the runtime folder ($RETENTION_HOME/gx/<this>/index.html)
DATA_DOCS_SITE = Path("gx") / "uncommitted" / "data_docs" / "local_site"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """One expectation's result, in words a person can act on."""

    name: str  # e.g. "expect_column_values_to_not_be_null(event_id)"
    severity: str  # "critical", "warning" or "info"
    success: bool
    detail: str  # observed value or unexpected count and examples


@dataclass(frozen=True)
class Report:
    """The result of validating one frame against one suite."""

    suite: str
    outcomes: list[Outcome]
    result: dict[str, Any] = field(repr=False)  # the GX validation result, JSON-serialisable
    docs_url: str | None = None  # its Data Docs page, relative to the site (`data_docs_file`)

    @property
    def failed(self) -> list[Outcome]:
        """Critical expectations that failed: the frame must not be published."""
        return [o for o in self.outcomes if not o.success and o.severity == "critical"]

    @property
    def warnings(self) -> list[Outcome]:
        """Non-critical expectations that failed: recorded, not blocking."""
        return [o for o in self.outcomes if not o.success and o.severity != "critical"]

    @property
    def success(self) -> bool:
        """True when no critical expectation failed."""
        return not self.failed


def expectation_name(config: ExpectationConfiguration) -> str:
    """A short readable name of an expectation configuration: its type and column(s)."""
    kwargs = config.kwargs
    target = kwargs.get("column") or ", ".join(kwargs.get("column_list") or [])
    condition = kwargs.get("row_condition")
    if isinstance(condition, dict):  # a Condition object: column, operator, parameter
        condition = f"{condition['column']['name']} {condition['operator']} {condition['parameter']!r}"
    condition = f" where {condition}" if condition else ""
    return f"{config.type}({target}){condition}"


class QualityService:
    """Opens the GX contexts lazily and validates data frames against named suites.

    Args:
        runtime_dir: where validation results and Data Docs are written.
        suites_root: the project folder whose `gx/expectations` holds the committed suites.
    """

    def __init__(self, runtime_dir: Path, suites_root: Path = SUITES_ROOT) -> None:
        self.runtime_dir = runtime_dir
        self.suites_root = suites_root
        self._runtime: FileDataContext | None = None
        self._loaded: set[str] = set()

    # -- suites ------------------------------------------------------------------------------

    def project_context(self) -> FileDataContext:
        """The committed file context that holds the suites."""
        return _file_context(self.suites_root)

    def write_suites(self, suites: Mapping[str, Iterable[Any]]) -> list[str]:
        """Write suites (name -> expectations) into the committed context; returns names that changed."""
        import great_expectations as gx

        changed = self.stale_suites(suites)
        context = self.project_context()
        for name in changed:
            context.suites.add_or_update(gx.ExpectationSuite(name=name, expectations=list(suites[name])))
        return changed

    def stale_suites(self, suites: Mapping[str, Iterable[Any]]) -> list[str]:
        """Names of suites whose committed version is missing or differs from `suites`."""
        import great_expectations as gx

        context = self.project_context()
        return [
            name
            for name, expectations in suites.items()
            if _suite_content(_stored_suite(context, name))
            != _suite_content(gx.ExpectationSuite(name=name, expectations=list(expectations)))
        ]

    # -- validation --------------------------------------------------------------------------

    def validate(
        self, suite_name: str, frame: pd.DataFrame, parameters: Mapping[str, Any] | None = None
    ) -> Report:
        """Validate `frame` against a committed suite and store the result.

        Args:
            suite_name: e.g. "extract.events".
            frame: the rows to check.
            parameters: values of the suite's `$PARAMETER` placeholders.

        Returns:
            The report; `report.failed` lists failed critical expectations.
        """
        import great_expectations as gx

        context = self._runtime_context(suite_name)
        asset_name = suite_name.replace(".", "_")
        datasource = cast("PandasDatasource", context.data_sources.get(DATASOURCE))  # see _runtime_context
        try:
            asset = datasource.get_asset(asset_name)
        except LookupError:
            asset = datasource.add_dataframe_asset(asset_name)
        try:
            batch = asset.get_batch_definition("whole")
        except KeyError:
            batch = asset.add_batch_definition_whole_dataframe("whole")
        definition = context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=suite_name, data=batch, suite=context.suites.get(suite_name))
        )
        checkpoint = context.checkpoints.add_or_update(
            gx.Checkpoint(name=suite_name, validation_definitions=[definition], result_format="SUMMARY")
        )
        outcome = checkpoint.run(
            batch_parameters={"dataframe": frame}, expectation_parameters=dict(parameters or {})
        )
        (identifier, result), *_ = outcome.run_results.items()
        outcomes = [_outcome(r) for r in result.results]
        # every validation gets its page (about 0.7 s): a reviewer reads what passed, not only failures
        return Report(
            suite=suite_name,
            outcomes=sorted(outcomes, key=lambda o: (o.success, o.severity != "critical", o.name)),
            # parse_constant: an infinite value it reports becomes "Infinity", which PostgreSQL's JSON takes
            result=json.loads(json.dumps(result.to_json_dict(), default=str), parse_constant=str),
            docs_url=self._docs_page(context, identifier),
        )

    def _runtime_context(self, suite_name: str) -> FileDataContext:
        if self._runtime is None:
            self._runtime = _file_context(self.runtime_dir)
            if DATASOURCE not in [d.name for d in self._runtime.data_sources.all().values()]:
                self._runtime.data_sources.add_pandas(DATASOURCE)
        if suite_name not in self._loaded:  # copy the committed suite: the code's version wins
            stored = _stored_suite(self.project_context(), suite_name)
            if stored is None:
                raise LookupError(
                    f"GX suite {suite_name!r} is not in {self.suites_root}; run `retention quality suites`"
                )
            self._runtime.suites.add_or_update(stored)
            self._loaded.add(suite_name)
        return self._runtime

    def _docs_page(self, context: FileDataContext, identifier: ValidationResultIdentifier) -> str | None:
        """Render the validation's Data Docs page; returns it relative to the site (where it is
        stored: a moved or copied RETENTION_HOME keeps its links), or None if rendering failed."""
        try:
            # only this page: GX's index re-reads every result (and needs CDN scripts); ours lists the pages
            context.build_data_docs(resource_identifiers=[identifier], build_index=False)
        except Exception as error:  # Data Docs are a convenience; a rendering bug must not fail a run
            log.warning("could not build GX Data Docs: %s", error)
            return None
        page = context.get_docs_sites_urls(resource_identifier=identifier)
        url = page[0].get("site_url") if page else None
        site = (self.runtime_dir / DATA_DOCS_SITE).resolve().as_uri() + "/"
        return url[len(site) :] if url and url.startswith(site) else None


def data_docs_file(runtime_dir: Path, page: str | None) -> str:
    """A stored Data Docs page (relative to the site) as the file it is now, for messages."""
    return str(runtime_dir / DATA_DOCS_SITE / page) if page else "(no page rendered)"


def _file_context(root: Path) -> FileDataContext:
    from great_expectations.data_context.types.base import ProgressBarsConfig

    import great_expectations as gx

    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    logging.getLogger("great_expectations").setLevel(logging.WARNING)  # per-store INFO lines are noise
    root.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="file", project_root_dir=str(root))
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return context


def _stored_suite(context: FileDataContext, name: str) -> ExpectationSuite | None:
    try:
        return context.suites.get(name)
    except Exception:  # DataContextError when absent; GX raises no narrower type
        return None


def _suite_content(suite: ExpectationSuite | None) -> list[dict[str, Any]] | None:
    if suite is None:
        return None
    return [
        {"type": e.expectation_type, "kwargs": e.configuration.kwargs, "severity": str(e.severity.value)}
        for e in suite.expectations
    ]


def _outcome(result: ExpectationValidationResult) -> Outcome:
    config = result.expectation_config
    assert config is not None, "a suite run reports the configuration of every expectation"
    details = result.result or {}
    exception = (result.exception_info or {}).get("exception_message")
    if not exception:  # failures of metric computations are keyed by metric id
        nested = [v for v in (result.exception_info or {}).values() if isinstance(v, dict)]
        exception = next((v.get("exception_message") for v in nested if v.get("raised_exception")), None)
    if exception:
        detail = f"could not be evaluated: {exception}"
    elif details.get("unexpected_count"):
        examples = ", ".join(str(v) for v in (details.get("partial_unexpected_list") or [])[:3])
        detail = (
            f"{details['unexpected_count']} unexpected of {details.get('element_count')} (e.g. {examples})"
        )
    else:
        detail = f"observed {details.get('observed_value')!s}"
    return Outcome(
        name=expectation_name(config),
        severity=str(config.severity.value),
        success=bool(result.success),
        detail=detail,
    )
