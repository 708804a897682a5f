"""WeChat Pay: API v3 for app / jsapi / native / h5, API v2 micropay for payment codes.

The adapter lives in ``channels.wechat.adapter``; the pure protocol pieces (signatures, AES-GCM,
v2 XML, bill parsing) sit in private sibling modules so they can be tested without a network.
"""

from channels.wechat.adapter import WechatAdapter

__all__ = ["WechatAdapter"]
