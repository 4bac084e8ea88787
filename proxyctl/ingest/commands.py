"""`gen` writes a deterministic sample file; `load` validates files (strictly, or setting bad rows
aside with `--max-bad-rows`), then loads the backend."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import click

from proxy.settings import Settings, SettingsError, load_settings
from proxyctl.ingest.generator import DEFAULT_DAYS, generate
from proxyctl.ingest.ndjson import FileSummary, InvalidLine, combine, validate_file
from proxyctl.ingest.rejects import REJECTS_SUFFIX, RejectsClash, TooManyBadRows, screen

Echo = Callable[[str], None]


@click.command()
@click.argument("out", type=click.Path(dir_okay=False, writable=True, path_type=Path))
@click.option("--sessions", type=click.IntRange(min=1), default=100_000, show_default=True)
@click.option("--orgs", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--start", type=click.DateTime(["%Y-%m-%d"]), help="First UTC day  [default: 2018-12-31]")
@click.option("--days", type=click.IntRange(min=1), default=DEFAULT_DAYS, show_default=True)
def gen(out: Path, sessions: int, orgs: int, seed: int, start: datetime | None, days: int) -> None:
    """Write OUT.ndjson: SESSIONS deterministic sessions of ORGS organizations."""
    began = time.monotonic()
    first_day: date | None = start.date() if start else None
    organizations = generate(out, sessions, orgs, seed, start=first_day, days=days)
    elapsed = time.monotonic() - began
    click.echo(f"wrote {sessions} sessions to {out} in {elapsed:.1f} s")
    for organization in organizations:
        click.echo(f"organization {organization}")


@dataclass(frozen=True)
class _Input:
    """What a load reads after validation: the files, their summary, the rows rejected."""

    paths: tuple[Path, ...]
    summary: FileSummary
    rejected: int = 0
    rejects: tuple[Path, ...] = ()


@contextmanager
def _strict(paths: Sequence[Path]) -> Iterator[_Input]:
    summaries = []
    for path in paths:
        summary = validate_file(path)
        click.echo(f"{path}: {summary.rows} sessions")
        summaries.append(summary)
    yield _Input(tuple(paths), combine(summaries))


@contextmanager
def _forgiving(paths: Sequence[Path], limit: int, rejects: Path | None) -> Iterator[_Input]:
    # Clean copies live in $TMPDIR, as the Druid loader's month files do (docker/README.md).
    with tempfile.TemporaryDirectory(prefix="load-clean-") as workdir:
        try:
            screened = screen(paths, limit, rejects, Path(workdir))
        except OSError as exc:
            raise click.ClickException(f"cannot screen the input: {exc}; nothing was loaded") from exc
        for item in screened:
            rows = item.summary.rows if item.summary else 0
            click.echo(f"{item.source}: {rows} sessions, {item.rejected} rejected (in {item.rejects})")
        kept = [item for item in screened if item.summary]
        if not kept:
            raise click.ClickException("every row was rejected; nothing was loaded")
        rejected = sum(item.rejected for item in screened)
        where = tuple(sorted({item.rejects for item in screened}))
        summary = combine(item.summary for item in kept if item.summary)
        yield _Input(tuple(item.load_path for item in kept), summary, rejected, where)


def _validated(paths: Sequence[Path], limit: int, rejects: Path | None) -> AbstractContextManager[_Input]:
    """The inputs as the load reads them: strict by default, forgiving when asked."""
    if limit == 0 and rejects is None:
        return _strict(paths)
    return _forgiving(paths, limit, rejects)


def _describe(summary: FileSummary) -> str:
    return (
        f"{summary.rows} sessions from {summary.first_time.isoformat()} "
        f"to {summary.last_time.isoformat()}, {len(summary.organizations)} organizations"
    )


def _load_druid(paths: Sequence[Path], summary: FileSummary, settings: Settings, echo: Echo) -> Any:
    # Imported here so the embedded deployment never imports the Druid loader's dependencies.
    from proxyctl.ingest.druid_loader import DruidLoadError, load_into_druid

    if not settings.druid_overlord_url or not settings.druid_broker_url:
        raise click.ClickException(
            "loading into Druid needs PROXY_DRUID_OVERLORD_URL and PROXY_DRUID_BROKER_URL"
        )
    try:
        return load_into_druid(
            paths,
            summary,
            overlord_url=settings.druid_overlord_url,
            # The overlord runs inside the coordinator (asOverlord), so one URL serves both.
            coordinator_url=settings.druid_overlord_url,
            broker_url=settings.druid_broker_url,
            datasource=settings.druid_datasource,
            echo=echo,
        )
    except DruidLoadError as exc:
        raise click.ClickException(f"druid: {exc}") from exc


def _load_embedded(paths: Sequence[Path], summary: FileSummary, settings: Settings, echo: Echo) -> Any:
    # Imported here so `gen` and Druid loads never import DuckDB.
    from proxyctl.ingest.embedded_loader import EmbeddedLoadError, load_into_embedded

    try:
        return load_into_embedded(paths, summary, settings, echo)
    except EmbeddedLoadError as exc:
        raise click.ClickException(f"embedded: {exc}") from exc


_LOADERS: dict[str, Callable[[Sequence[Path], FileSummary, Settings, Echo], Any]] = {
    "druid": _load_druid,
    "embedded": _load_embedded,
}


@click.command()
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--max-bad-rows",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Load the good rows when at most this many rows break the contract (0: any bad row stops the load).",
)
@click.option(
    "--rejects",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"Write every bad row here  [default: beside each FILE, FILE{REJECTS_SUFFIX}]",
)
def load(files: tuple[Path, ...], max_bad_rows: int, rejects: Path | None) -> None:
    """Validate every FILE (NDJSON sessions), then load them all into the configured backend."""
    began = time.monotonic()
    try:
        settings = load_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        with _validated(files, max_bad_rows, rejects) as validated:
            click.echo(_describe(validated.summary))
            result = _LOADERS[settings.backend](validated.paths, validated.summary, settings, click.echo)
    except (InvalidLine, RejectsClash, TooManyBadRows) as exc:
        raise click.ClickException(f"{exc}; nothing was loaded") from exc
    ingested, rejected = result.rows_ingested, result.rows_rejected + validated.rejected
    where = f" (rejects in {', '.join(map(str, validated.rejects))})" if validated.rejects else ""
    click.echo(f"{ingested} rows ingested, {rejected} rejected{where} in {time.monotonic() - began:.1f} s")
