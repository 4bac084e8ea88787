"""The `reporting-proxy` command line: serving, access administration, data and dev tooling."""

from __future__ import annotations

import click


@click.group()
def main() -> None:
    """Visitor-session reporting service."""


def _register_commands() -> None:
    # Each role module owns its click commands; this module only assembles them.
    from proxyctl.access import access, orgs, tokens
    from proxyctl.druid.commands import druid
    from proxyctl.ingest.commands import gen, load
    from proxyctl.postgres.commands import postgres
    from proxyctl.serve import serve

    for command in (serve, orgs, tokens, access, druid, postgres, gen, load):
        main.add_command(command)


_register_commands()


if __name__ == "__main__":
    main()
