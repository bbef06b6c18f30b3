"""Gives every request an id (`request.id`): the client's X-Request-ID when well-formed, else a new
one. Audit events carry it, and the response echoes it so a user can quote it."""
from audit.services import request_id_for


class RequestIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = request_id_for(request)
        response = self.get_response(request)
        response.headers.setdefault("X-Request-ID", request_id)
        return response
