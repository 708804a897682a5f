"""Partner loyalty points: HMAC-signed deductions from a bound points account.

The adapter lives in ``channels.points.adapter``; signing, unit conversion and the daily
statement sit in private sibling modules so they can be tested without a network.
"""

from channels.points.adapter import PointsAdapter, PointsBalance

__all__ = ["PointsAdapter", "PointsBalance"]
