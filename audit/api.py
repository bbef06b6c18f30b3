"""API: the audit log for portal admins (read-only; the same filters as the page)."""
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers

from accounts.permissions import IsPortalAdmin
from audit import actions
from audit.forms import AuditFilterForm
from audit.models import AuditEvent
from audit.selectors import audit_event_list
from audit.services import audit_record


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = ["seq", "created_at", "actor_id", "actor_username", "actor_role", "action", "outcome",
                  "object_type", "object_id", "object_label", "ip_address", "user_agent", "request_id", "details",
                  "prev_hash", "hash"]
        read_only_fields = fields


@extend_schema(parameters=[OpenApiParameter(name, str, required=False) for name in AuditFilterForm.base_fields])
class AuditEventListView(generics.ListAPIView):
    """Audit events, newest first. Filters: user, action, object_type, object_id, outcome, date_from, date_to."""

    permission_classes = [IsPortalAdmin]
    serializer_class = AuditEventSerializer

    def permission_denied(self, request, message=None, code=None):
        if request.user and request.user.is_authenticated:
            audit_record(action=actions.ACCESS_DENIED, request=request, outcome=actions.DENIED,
                         details={"path": request.path[:200]})
        super().permission_denied(request, message=message, code=code)

    def get_queryset(self):
        form = AuditFilterForm(self.request.query_params)
        if self.request.query_params and not form.is_valid():
            raise serializers.ValidationError(form.errors)
        return audit_event_list(filters=form.filters())
