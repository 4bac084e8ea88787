"""The forms a report is answered in: what each can carry, and the ETag of each.

An answer is computed, and kept by the result cache, once: as its JSON document. The CSV form
is derived from that document on the way out, so both forms share one cache entry and one
backend query. They must not share an ETag (a 304 for one must never satisfy a conditional
request for the other), so a form's tag is the answer's tag with the form's mark inside the
quotes, and a caller's `If-None-Match` counts only the tags of the form it asks for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from proxy.errors import NotAcceptable
from schemas.model import Query


@dataclass(frozen=True)
class Representation:
    """One form of an answer: its media type, its ETag mark, and the request keys it cannot carry."""

    media_type: str
    tag_mark: str  # empty: the stored form, whose tag is the answer's own
    refuses: tuple[str, ...] = ()


JSON = Representation("application/json", "")
# One table: the totals and the comparison are parts of an answer a table has no place for.
CSV = Representation("text/csv", "csv", refuses=("totals", "compare"))
# In the service's order of preference: JSON wins a tie, and is the answer when neither is acceptable.
OFFERED = (JSON, CSV)

# Request key → whether a validated query asks for it.
_ASKS: dict[str, Callable[[Query], bool]] = {
    "totals": lambda query: query.totals,
    "compare": lambda query: query.compare is not None,
}


def refused_keys(query: Query, representation: Representation) -> list[str]:
    """The request keys `query` asks for that `representation` cannot carry."""
    return [key for key in representation.refuses if _ASKS[key](query)]


def check_representable(query: Query, representation: Representation) -> None:
    """A 406 `not_acceptable` when the query asks for parts of an answer its form cannot carry."""
    refused = refused_keys(query, representation)
    if refused:
        message = f"Not available as {representation.media_type}; ask for {JSON.media_type}."
        raise NotAcceptable(
            f"A {representation.media_type} answer cannot carry {', '.join(refused)}.",
            {key: [message] for key in refused},
        )


def representation_tag(answer_tag: str | None, representation: Representation) -> str | None:
    """The form's ETag: the answer's (a quoted string) with the form's mark inside the quotes."""
    if answer_tag is None or not representation.tag_mark:
        return answer_tag
    return f'{answer_tag[:-1]}-{representation.tag_mark}"'


def answer_condition(if_none_match: str | None, representation: Representation) -> str | None:
    """A caller's `If-None-Match` as the answer's tags: only those of `representation` are kept.

    The stored form's header passes as it is: another form's tag never equals an answer's tag.
    """
    if not if_none_match or not representation.tag_mark:
        return if_none_match
    marked = f'-{representation.tag_mark}"'
    kept = []
    for part in (part.strip() for part in if_none_match.split(",")):
        tag = part.removeprefix("W/")
        if part == "*":
            kept.append(part)
        elif tag.endswith(marked):
            kept.append(tag[: -len(marked)] + '"')
    return ", ".join(kept) or None
