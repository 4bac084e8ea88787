"""Resolve the pinned Druid server classpath from Maven Central into a reusable jar cache."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from importlib.resources import as_file, files
from pathlib import Path
from typing import TextIO

# 33.0.0 is the newest release whose whole closure the project's Maven registry serves:
# druid-sql 35-37, druid-datasketches 37 and jackson-jaxrs-smile-provider 2.20.2 are absent.
DRUID_VERSION = "33.0.0"
_POM = "druid-runtime.pom.xml"
_SETTINGS = "maven-settings.xml"
_COMPLETE_MARKER = ".complete"
_PROGRESS_EVERY_SECS = 5.0

Echo = Callable[[str], None]


class JarResolutionError(RuntimeError):
    """Maven could not assemble the Druid classpath."""


def default_jar_dir() -> Path:
    """Where the jars of the pinned version are cached, outside any checkout."""
    return Path.home() / ".cache" / "reporting-proxy" / f"druid-{DRUID_VERSION}" / "lib"


def ensure_jars(lib_dir: Path, echo: Echo) -> Path:
    """Return `lib_dir` filled with the Druid runtime jars, resolving them only once."""
    if (lib_dir / _COMPLETE_MARKER).exists():
        echo(f"druid {DRUID_VERSION}: reusing {_jar_count(lib_dir)} jars in {lib_dir}")
        return lib_dir
    started = time.monotonic()
    partial = lib_dir.with_name(lib_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    log_path = lib_dir.with_name("mvn.log")
    echo(f"druid {DRUID_VERSION}: resolving jars with mvn (log: {log_path})")
    _run_maven(partial, log_path, echo)
    (partial / _COMPLETE_MARKER).write_text(DRUID_VERSION + "\n")
    shutil.rmtree(lib_dir, ignore_errors=True)
    partial.rename(lib_dir)
    elapsed = time.monotonic() - started
    echo(f"druid {DRUID_VERSION}: {_jar_count(lib_dir)} jars ready in {elapsed:.0f}s")
    return lib_dir


def _jar_count(lib_dir: Path) -> int:
    return sum(1 for _ in lib_dir.glob("*.jar"))


def _run_maven(output_dir: Path, log_path: Path, echo: Echo) -> None:
    devtools = files("proxyctl.druid")
    with as_file(devtools / _POM) as pom, as_file(devtools / _SETTINGS) as settings:
        with tempfile.TemporaryDirectory(prefix="druid-mvn-") as work:
            project = Path(work)
            shutil.copy(pom, project / "pom.xml")
            command = _maven_command(settings, output_dir)
            returncode = _stream_maven(command, project, log_path, echo)
    if returncode != 0:
        raise JarResolutionError(f"mvn exited with {returncode}; see {log_path}\n{_error_lines(log_path)}")


def _maven_command(settings: Path, output_dir: Path) -> list[str]:
    return [
        "mvn",
        "-B",
        "-s",
        str(settings),
        f"-Ddruid.version={DRUID_VERSION}",
        "dependency:copy-dependencies",
        f"-DoutputDirectory={output_dir}",
        "-DincludeScope=runtime",
    ]


def _stream_maven(command: list[str], cwd: Path, log_path: Path, echo: Echo) -> int:
    with (
        log_path.open("w") as log,
        subprocess.Popen(
            command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as process,
    ):
        _report_downloads(process.stdout or (), log, echo)
        return process.wait()


def _report_downloads(lines: Iterable[str], log: TextIO, echo: Echo) -> None:
    downloads = 0
    started = last_report = time.monotonic()
    for line in lines:
        log.write(line)
        downloads += line.startswith("[INFO] Downloaded from")
        now = time.monotonic()
        if now - last_report >= _PROGRESS_EVERY_SECS:
            echo(f"  ... {downloads} files downloaded ({now - started:.0f}s)")
            last_report = now


def _error_lines(log_path: Path) -> str:
    errors = [line for line in log_path.read_text().splitlines() if line.startswith("[ERROR]")]
    return "\n".join(errors[:5])
