"""The flat ``<xml>…</xml>`` documents of WeChat Pay API v2 (one element per parameter).

Parsed only with ``defusedxml``, which refuses any DOCTYPE, entity declaration or external
reference at the parser level, whatever the document's encoding (UTF-8, UTF-16, ...): no entity
is ever expanded and nothing is ever fetched. Only the flat shape WeChat uses is accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from xml.etree.ElementTree import ParseError
from xml.sax.saxutils import escape

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

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
    try:
        root = fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise XmlError(f"XML with a DOCTYPE, entity or external reference is refused ({type(exc).__name__})") from None
    except (ParseError, ValueError, LookupError) as exc:
        raise XmlError(f"malformed XML: {exc}") from None
    if root.tag != "xml":
        raise XmlError(f"unexpected root element {root.tag!r}")
    result: dict[str, str] = {}
    for child in root:
        if len(child):
            raise XmlError(f"nested element under {child.tag!r}")
        result[child.tag] = child.text or ""
    return result
