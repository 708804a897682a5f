"""Where accounts' RSA keys come from: fresh by default, a reusable pool for the test suite."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from sandbox.core import Sandbox
from sandbox.keys import FreshKeys, KeyPool


def _public_der(key) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_a_pool_hands_out_distinct_keys_until_it_wraps_then_reuses_them():
    pool = KeyPool(size=4)
    first = pool.rsa_keys(3)
    assert len({_public_der(k.public_key()) for k in first}) == 3
    second = pool.rsa_keys(3)
    assert len({_public_der(k.public_key()) for k in second}) == 3  # one account: always distinct
    assert second[1] is first[0] and second[2] is first[1]  # wrapped: keys 4 and 5 are keys 0 and 1
    assert pool.handed_out == 6


def test_a_pool_refuses_more_distinct_keys_than_it_holds():
    with pytest.raises(ValueError):
        KeyPool(size=2)
    with pytest.raises(ValueError):
        KeyPool(size=3).rsa_keys(4)


def test_without_a_pool_the_sandbox_generates_fresh_keys():
    sandbox = Sandbox(time_factor=1)
    try:
        assert isinstance(sandbox.keys, FreshKeys)
    finally:
        sandbox.close()


def test_the_three_keys_of_a_wechat_account_from_the_pool_differ(sandbox):
    account = sandbox.create_account("wechat")
    merchant = serialization.load_pem_private_key(account["credentials"]["merchant_private_key"].encode(), None)
    (platform_pem,) = account["options"]["platform_certificates"].values()
    platform = x509.load_pem_x509_certificate(platform_pem.encode()).public_key()
    pubkey = serialization.load_pem_public_key(account["options"]["wechatpay_public_key"].encode())
    ders = {_public_der(merchant.public_key()), _public_der(platform), _public_der(pubkey)}
    assert len(ders) == 3


def test_two_accounts_created_one_after_the_other_share_no_key(sandbox):
    def keys(account) -> list[bytes]:
        app = serialization.load_pem_private_key(account["credentials"]["app_private_key"].encode(), None)
        platform = serialization.load_pem_public_key(account["options"]["alipay_public_key"].encode())
        return [_public_der(app.public_key()), _public_der(platform)]

    assert len(set(keys(sandbox.create_account("alipay")) + keys(sandbox.create_account("alipay")))) == 4
