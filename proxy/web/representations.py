"""Content negotiation of a report (`Accept`), and its CSV form (RFC 4180).

The `Accept` header never refuses a report: JSON is the answer unless the header prefers CSV,
so every caller that asked for no form, or for another one (`text/html`), is answered as before.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any

import orjson
from flask import Response
from werkzeug.datastructures import MIMEAccept

from proxy.service.representation import CSV, JSON, OFFERED, Representation
from proxy.web.responses import encoded_json

CSV_CONTENT_TYPE = "text/csv; charset=utf-8"


def negotiated(accept: MIMEAccept) -> Representation:
    """The offered form the header gives the highest quality (JSON on a tie); JSON if it takes none.

    Each form's quality is that of the most specific range naming it (RFC 9110 12.5.1), so
    `application/json;q=0, */*` takes CSV. werkzeug's `best_match` is not used: there a wildcard
    outranks an explicit `q=0`. Media-type parameters are dropped before matching: CSV is always
    UTF-8 with a header line, and `text/csv; charset=utf-8` must not miss `text/csv`.
    """
    bare = MIMEAccept([(value.split(";", 1)[0].strip(), quality) for value, quality in accept])
    quality, best = max(((bare.quality(form.media_type), form) for form in OFFERED), key=lambda pair: pair[0])
    return best if quality > 0 else JSON


def _number(value: float) -> str:
    return orjson.dumps(value).decode()


# A cell's text by its JSON type: numbers exactly as the JSON answer prints them (`0.00001`,
# `1e-7`; Python's own are `1e-05`, `1e-07`), null as an empty field. The data holds no empty
# strings (docs/data-and-loading.md), so an empty field is always null.
_CELL_TEXT: dict[type, Callable[[Any], str]] = {
    str: str,
    int: _number,
    float: _number,
    type(None): lambda _: "",
}


def csv_table(body: bytes) -> bytes:
    """A JSON answer `{fields, data}` as RFC 4180 CSV: the field names, then one line per row."""
    answer = orjson.loads(body)
    text = io.StringIO()
    # The default dialect is RFC 4180's: CRLF line ends, fields with `,` `"` CR or LF quoted,
    # quotes doubled.
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow([field["name"] for field in answer["fields"]])
    writer.writerows([_CELL_TEXT[type(cell)](cell) for cell in row] for row in answer["data"])
    return text.getvalue().encode()


def _csv_response(body: bytes) -> Response:
    return Response(csv_table(body), content_type=CSV_CONTENT_TYPE)


_ENCODERS: dict[Representation, Callable[[bytes], Response]] = {JSON: encoded_json, CSV: _csv_response}


def report_response(body: bytes, representation: Representation) -> Response:
    """The 200 response of an encoded JSON answer, in the form the caller asked for."""
    return _ENCODERS[representation](body)
