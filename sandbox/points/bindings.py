"""Bindings: linking a user's points account, its balance and unbinding."""

from __future__ import annotations

import secrets
from typing import Any

from sandbox.points.common import INITIAL_POINTS, POOR_POINTS, _Refused, _text


class BindingsMixin:
    """Bindings of ``PointsSimulator``."""

    def _bind(self, account: dict[str, Any], data: dict[str, Any]) -> tuple[int, Any]:
        bind_no, user_ref = data.get("bind_request_no"), data.get("user_ref")
        user_id = data.get("our_user_id")
        if not (_text(bind_no) and _text(user_ref) and _text(user_id)):
            raise _Refused(400, "INVALID_REQUEST", "bind_request_no, user_ref and our_user_id are required")
        existing = self._bind_requests.get((account["app_id"], bind_no))
        if existing is not None:
            binding = self._bindings[existing]
            if (binding["user_ref"], binding["our_user_id"]) != (user_ref, user_id):
                raise _Refused(409, "REQUEST_NO_CONFLICT", "bind_request_no reused with different content")
            return 200, self._binding_json(binding)
        if user_ref.startswith("invalid-"):
            raise _Refused(422, "USER_REF_INVALID", "the partner does not know this user")
        binding_id = f"B{secrets.token_hex(10)}"
        binding = {
            "binding_id": binding_id,
            "app_id": account["app_id"],
            "user_ref": user_ref,
            "our_user_id": user_id,
            "status": "ACTIVE",
            "frozen_points": 0,
            "points": POOR_POINTS if user_ref.startswith("poor-") else INITIAL_POINTS,
        }
        self._bindings[binding_id] = binding
        self._bind_requests[(account["app_id"], bind_no)] = binding_id
        return 200, self._binding_json(binding)

    @staticmethod
    def _binding_json(binding: dict[str, Any]) -> dict[str, Any]:
        return {k: binding[k] for k in ("binding_id", "user_ref", "our_user_id", "status")}

    def _binding(self, account: dict[str, Any], binding_id: str) -> dict[str, Any]:
        binding = self._bindings.get(binding_id)
        if binding is None or binding["app_id"] != account["app_id"]:
            raise _Refused(404, "BINDING_NOT_FOUND", "no such binding")
        return binding
