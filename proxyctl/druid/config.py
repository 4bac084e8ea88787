"""Layout, ports, configuration files and JVM command lines of the local Druid cluster."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from string import Template

# Start order: ZooKeeper first, the coordinator next (it runs Derby), the rest after it.
SERVICES: tuple[str, ...] = ("zookeeper", "coordinator", "historical", "broker", "indexer")

DEFAULT_PORTS: dict[str, int] = {
    "zookeeper": 2181,
    "derby": 1527,
    "coordinator": 8081,
    "broker": 8082,
    "historical": 8083,
    "indexer": 8091,
}

# Heap and direct memory per JVM. Direct memory must cover buffer.sizeBytes (32 MiB) x
# (numMergeBuffers + numThreads + 1) on the historical and indexer (160 MiB), and
# x (numMergeBuffers + 1) on the broker (96 MiB), or the service refuses to start.
_MEMORY: dict[str, tuple[str, str | None]] = {
    "zookeeper": ("128m", None),
    "coordinator": ("384m", None),
    "broker": ("512m", "256m"),
    "historical": ("512m", "256m"),
    "indexer": ("512m", "256m"),
}

# Queries sent with context {"lane": "limited"} beyond this many at once are rejected (429).
LIMITED_LANE_SIZE = 2

_JAVA17_FLAGS: tuple[str, ...] = (
    "--add-exports=java.base/jdk.internal.misc=ALL-UNNAMED",
    "--add-exports=java.base/jdk.internal.ref=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.ref=ALL-UNNAMED",
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "--add-opens=jdk.management/com.sun.management.internal=ALL-UNNAMED",
)

# Five JVMs share two cores: one GC thread and one JIT-compiler pair each keep them calm.
_CALM_FLAGS: tuple[str, ...] = (
    "-XX:+UseSerialGC",
    "-XX:CICompilerCount=2",
    "-XX:+ExitOnOutOfMemoryError",
)

_TEMPLATES: dict[str, tuple[str, ...]] = {
    "_common": ("common.runtime.properties", "log4j2.xml"),
    "zookeeper": ("zoo.cfg",),
    "coordinator": ("coordinator.runtime.properties",),
    "broker": ("broker.runtime.properties",),
    "historical": ("historical.runtime.properties",),
    "indexer": ("indexer.runtime.properties",),
}


@dataclass(frozen=True)
class Layout:
    """Where one local cluster keeps its files, and which ports it uses."""

    state_dir: Path
    lib_dir: Path
    port_offset: int = 0

    def port(self, name: str) -> int:
        """The port of a service (or of Derby) after the offset."""
        return DEFAULT_PORTS[name] + self.port_offset

    def url(self, service: str) -> str:
        """Base HTTP URL of a Druid service."""
        return f"http://127.0.0.1:{self.port(service)}"

    @property
    def var_dir(self) -> Path:
        """Segments, segment cache, Derby, ZooKeeper data and task directories."""
        return self.state_dir / "var"

    @property
    def pid_file(self) -> Path:
        """JSON record of the processes `up` started."""
        return self.state_dir / "pids.json"

    @property
    def zk_base(self) -> str:
        """ZooKeeper path base, distinct per port offset so clusters never share znodes."""
        return "/druid" if self.port_offset == 0 else f"/druid-{self.port_offset}"

    def conf_dir(self, name: str) -> Path:
        """Configuration directory of a service (or `_common`)."""
        return self.state_dir / "conf" / name

    def log_path(self, service: str) -> Path:
        """File receiving the service's stdout and stderr."""
        return self.state_dir / "logs" / f"{service}.log"


def write_configs(layout: Layout, query_caches: bool = True) -> None:
    """Render every configuration file and create the directories the services expect."""
    values = _template_values(layout) | {"query_caches": str(query_caches).lower()}
    for name, templates in _TEMPLATES.items():
        conf = layout.conf_dir(name)
        conf.mkdir(parents=True, exist_ok=True)
        for template in templates:
            target = "runtime.properties" if template.startswith(f"{name}.") else template
            (conf / target).write_text(_render(template, values))
    for sub in ("tmp", "zk", "segments", "segment-cache", "task", "indexing-logs"):
        (layout.var_dir / sub).mkdir(parents=True, exist_ok=True)
    (layout.state_dir / "logs").mkdir(parents=True, exist_ok=True)


def _template_values(layout: Layout) -> dict[str, str]:
    values = {f"{name}_port": str(layout.port(name)) for name in DEFAULT_PORTS}
    values["zk_port"] = values["zookeeper_port"]
    values["zk_base"] = layout.zk_base
    values["var_dir"] = str(layout.var_dir)
    values["limited_lane_size"] = str(LIMITED_LANE_SIZE)
    return values


def _render(template: str, values: dict[str, str]) -> str:
    text = (files("proxyctl.druid") / "templates" / template).read_text()
    return Template(text).substitute(values)


def java_command(layout: Layout, service: str) -> list[str]:
    """The full command line that starts one service."""
    classpath = ":".join(
        (str(layout.conf_dir(service)), str(layout.conf_dir("_common")), f"{layout.lib_dir}/*")
    )
    return ["java", *_jvm_flags(layout, service), "-cp", classpath, *_main(layout, service)]


def _jvm_flags(layout: Layout, service: str) -> list[str]:
    heap, direct = _MEMORY[service]
    flags = ["-server", f"-Xms{heap}", f"-Xmx{heap}", *_CALM_FLAGS, *_JAVA17_FLAGS]
    if direct is not None:
        flags.append(f"-XX:MaxDirectMemorySize={direct}")
    return [
        *flags,
        "-Duser.timezone=UTC",
        "-Dfile.encoding=UTF-8",
        f"-Djava.io.tmpdir={layout.var_dir / 'tmp'}",
        "-Djava.util.logging.manager=org.apache.logging.log4j.jul.LogManager",
        f"-Dderby.stream.error.file={layout.var_dir / 'derby.log'}",
    ]


def _main(layout: Layout, service: str) -> list[str]:
    if service == "zookeeper":
        # Standalone mode: zoo.cfg has no server.N lines.
        return [
            "-Dzookeeper.jmx.log4j.disable=true",
            "org.apache.zookeeper.server.quorum.QuorumPeerMain",
            str(layout.conf_dir("zookeeper") / "zoo.cfg"),
        ]
    return ["org.apache.druid.cli.Main", "server", service]
