"""The WeChat v2 simulator reads XML with defusedxml only: no DOCTYPE, entity or external
reference gets through, whatever the document's encoding, and nothing is processed.

Each hostile document below is otherwise a correctly signed micropay request: had the parser
expanded its entity, the sandbox would have charged the code.
"""

from __future__ import annotations

import secrets
import time

import pytest

from sandbox.wechat.v2 import V2XmlError, parse_v2_xml
from tests.channels.test_sandbox_wechat import _hand_sign, new_no, v2


@pytest.fixture
def wx(sandbox_account):
    return sandbox_account("wechat")


def _signed_fields(acct, out_trade_no: str) -> dict[str, str]:
    params = {
        "appid": acct.ids["appid"],
        "mch_id": acct.ids["mchid"],
        "nonce_str": secrets.token_hex(8),
        "sign_type": "HMAC-SHA256",
        "body": "coffee",
        "out_trade_no": out_trade_no,
        "total_fee": "1",
        "spbill_create_ip": "10.0.0.8",
        "auth_code": "134567890123456789",
    }
    params["sign"] = _hand_sign(params, acct.credentials["api_v2_key"], "HMAC-SHA256")
    return params


def _document(params: dict[str, str], *, declaration: str, doctype: str, body_text: str) -> str:
    cells = "".join(f"<{k}>{body_text if k == 'body' else v}</{k}>" for k, v in params.items())
    return f"{declaration}{doctype}<xml>{cells}</xml>"


INTERNAL = '<!DOCTYPE xml [<!ENTITY e "coffee">]>'
EXTERNAL = '<!DOCTYPE xml [<!ENTITY e SYSTEM "file:///etc/hostname">]>'
LAUGHS = (
    '<!DOCTYPE xml [<!ENTITY a "coffee">'
    + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(9))
    + "]>"
)
HOSTILE = {
    "utf16_doctype": ('<?xml version="1.0" encoding="UTF-16"?>', INTERNAL, "&e;", "utf-16"),
    "utf16be_doctype": ('<?xml version="1.0" encoding="UTF-16"?>', INTERNAL, "&e;", "utf-16-be-bom"),
    "utf32_doctype": ('<?xml version="1.0" encoding="UTF-32"?>', INTERNAL, "&e;", "utf-32"),
    "external_entity": ('<?xml version="1.0" encoding="UTF-8"?>', EXTERNAL, "&e;", "utf-8"),
    "billion_laughs": ('<?xml version="1.0"?>', LAUGHS, "&j;", "utf-8"),
    "utf16_external_entity": ('<?xml version="1.0" encoding="UTF-16"?>', EXTERNAL, "&e;", "utf-16"),
}


def _encode(text: str, encoding: str) -> bytes:
    if encoding == "utf-16-be-bom":
        return b"\xfe\xff" + text.encode("utf-16-be")
    return text.encode(encoding)  # Python's utf-16 / utf-32 codecs write a BOM


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_document_is_refused_and_nothing_is_charged(sandbox, wx, case):
    declaration, doctype, body_text, encoding = HOSTILE[case]
    no = new_no("X")
    raw = _encode(
        _document(_signed_fields(wx, no), declaration=declaration, doctype=doctype, body_text=body_text), encoding
    )
    started = time.monotonic()
    out = v2(wx, "/pay/micropay", raw=raw)
    assert time.monotonic() - started < 5  # no entity was expanded
    assert (out["return_code"], out["return_msg"]) == ("FAIL", "XML 格式错误")
    assert "result_code" not in out
    assert not [t for t in sandbox.trades() if t.get("out_trade_no") == no]
    assert v2(wx, "/pay/orderquery", out_trade_no=no)["err_code"] == "ORDERNOTEXIST"


def test_the_same_request_without_a_doctype_is_charged(wx):
    """Control for the test above: the documents differ from a valid request only by the DTD."""
    no = new_no("X")
    raw = _document(_signed_fields(wx, no), declaration='<?xml version="1.0"?>', doctype="", body_text="coffee")
    out = v2(wx, "/pay/micropay", raw=raw.encode())
    assert (out["return_code"], out["result_code"]) == ("SUCCESS", "SUCCESS")


def test_a_utf16_document_without_a_doctype_is_refused_as_not_utf8(sandbox, wx):
    no = new_no("X")
    text = _document(
        _signed_fields(wx, no), declaration='<?xml version="1.0" encoding="UTF-16"?>', doctype="", body_text="coffee"
    )
    out = v2(wx, "/pay/micropay", raw=text.encode("utf-16"))
    assert out["return_code"] == "FAIL"
    assert v2(wx, "/pay/orderquery", out_trade_no=no)["err_code"] == "ORDERNOTEXIST"


@pytest.mark.parametrize(
    ("case", "refused_by"),
    [
        ("utf16_doctype", "DTDForbidden"),
        ("utf16be_doctype", "DTDForbidden"),
        ("external_entity", "DTDForbidden"),
        ("billion_laughs", "DTDForbidden"),
        ("utf16_external_entity", "DTDForbidden"),
        ("utf32_doctype", "ParseError"),  # expat cannot even read UTF-32
    ],
)
def test_the_parser_is_defusedxml_and_refuses_before_reading_the_dtd(case, refused_by):
    declaration, doctype, body_text, encoding = HOSTILE[case]
    raw = _encode(_document({"appid": "wx1"}, declaration=declaration, doctype=doctype, body_text=body_text), encoding)
    with pytest.raises(V2XmlError, match=refused_by):
        parse_v2_xml(raw)
