"""The flat ``<xml>…</xml>`` documents of WeChat Pay API v2 (one element per parameter).

Hardening here is a byte search for ``<!DOCTYPE`` / ``<!ENTITY`` before parsing. It only sees
documents in an ASCII-compatible encoding: a UTF-16 or UTF-32 document carrying a DOCTYPE passes
the search, and ElementTree then expands its internal entities. External entities are never
fetched by ElementTree. Only the flat shape WeChat uses is accepted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from xml.etree import ElementTree
from xml.sax.saxutils import escape

_FORBIDDEN = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_MAX_BYTES = 1_000_000


class XmlError(ValueError):
    """The body is not a flat, safe WeChat v2 XML document."""


def build(params: Mapping[str, str]) -> bytes:
    parts = [f"<{k}>{escape(v)}</{k}>" for k, v in params.items()]
    return ("<xml>" + "".join(parts) + "</xml>").encode("utf-8")


def parse(body: bytes) -> dict[str, str]:
    """Top-level children of ``<xml>`` as strings (CDATA unwrapped, missing text as "")."""
    if len(body) > _MAX_BYTES:
        raise XmlError("XML body too large")
    if _FORBIDDEN.search(body):
        raise XmlError("XML with DOCTYPE or ENTITY declarations is refused")
    try:
        root = ElementTree.fromstring(body)  # noqa: S314 - see the module docstring
    except ElementTree.ParseError as exc:
        raise XmlError(f"malformed XML: {exc}") from exc
    if root.tag != "xml":
        raise XmlError(f"unexpected root element {root.tag!r}")
    result: dict[str, str] = {}
    for child in root:
        if len(child):
            raise XmlError(f"nested element under {child.tag!r}")
        result[child.tag] = child.text or ""
    return result
