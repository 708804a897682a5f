"""The events API: a merchant lists its events since one it names and asks for them again."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from orders.selectors import merchant_for_client
from outbox.serializers import EventListQuery, EventOutput, EventReplayInput, EventReplayOutput
from outbox.services.webhooks import events_after, webhook_replay
from paycore.api import ApiView, Pagination, validated, validated_query
from paycore.models import Scope


class EventCollectionApi(ApiView):
    """Events of the calling merchant key (a platform key: every merchant's, or one's)."""

    scopes = {"GET": Scope.EVENTS_READ}
    pagination_class = Pagination

    @extend_schema(responses=EventOutput(many=True), parameters=[EventListQuery])
    def get(self, request: Request) -> Response:
        query = validated_query(EventListQuery, request)
        code = query.get("merchant")
        merchant = merchant_for_client(client=self.client, code=code) if code or self.client.merchant_id else None
        after = str(query["after"]) if "after" in query else None
        events = events_after(merchant=merchant, after_event_id=after)
        if "type" in query:
            events = events.filter(topic=query["type"])
        paginator = Pagination()
        page = paginator.paginate_queryset(events, request, view=self)
        return paginator.get_paginated_response(EventOutput(page, many=True).data)


class EventReplayApi(ApiView):
    """Send again, from the start of the retry schedule, every event after the one named."""

    scopes = {"POST": Scope.EVENTS_WRITE}

    @extend_schema(request=EventReplayInput, responses={202: EventReplayOutput})
    def post(self, request: Request) -> Response:
        data = validated(EventReplayInput, request.data)
        merchant = merchant_for_client(client=self.client, code=data.get("merchant"))
        ids = webhook_replay(
            merchant=merchant,
            after_event_id=str(data["after"]),
            actor=f"api:{self.client.name}",
            limit=data["limit"],
        )
        body = EventReplayOutput({"replayed": len(ids), "event_ids": ids}).data
        return Response(body, status=status.HTTP_202_ACCEPTED)
