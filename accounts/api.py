"""API: token log-in and revocation, the current user, and the user list for admins."""
from axes.helpers import get_lockout_message
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from . import selectors, services, two_factor
from .models import User
from .permissions import IsPortalAdmin


class UserSerializer(serializers.ModelSerializer):
    is_portal_admin = serializers.BooleanField(read_only=True)

    class Meta:
        model = User
        fields = ["id", "username", "first_name", "last_name", "email", "role", "is_portal_admin", "is_active",
                  "last_login", "date_joined"]
        read_only_fields = fields


TokenSerializer = inline_serializer("Token", {"token": serializers.CharField()})


class TokenRequestSerializer(AuthTokenSerializer):
    otp_token = serializers.CharField(required=False, write_only=True, label="Two-factor code", help_text=(
        "the 6-digit code from the authenticator app, for an account with two-factor authentication on"))


class TokenView(APIView):
    """POST: exchange a username and password (and the two-factor code, for an account that uses one) for the user's
    API token (the lockout applies).
    DELETE: revoke the token of the authenticated user."""

    throttle_classes = ()

    def get_permissions(self):
        return [AllowAny()] if self.request.method == "POST" else [IsAuthenticated()]

    @extend_schema(
        request=TokenRequestSerializer, auth=[],
        responses={200: TokenSerializer,
                   400: OpenApiResponse(description="Wrong username or password, or a missing or wrong two-factor "
                                                    "code (otp_token)"),
                   429: OpenApiResponse(description="Locked out after repeated failures")},
    )
    def post(self, request):
        serializer = TokenRequestSerializer(data=request.data, context={"request": request})
        valid = serializer.is_valid()
        # axes refused the attempt (it marks the request it was given, this DRF request): say so, as JSON.
        if getattr(request, "axes_locked_out", False):
            return Response({"detail": get_lockout_message()}, status=status.HTTP_429_TOO_MANY_REQUESTS)
        if not valid:
            raise ValidationError(serializer.errors)
        user = serializer.validated_data["user"]
        try:
            two_factor.check_for_token(user=user, token=request.data.get("otp_token"), request=request)
        except two_factor.TwoFactorError as exc:
            raise ValidationError({"otp_token": [exc.message]}) from None
        token = services.token_issue(user=user, request=request)
        return Response({"token": token.key})

    @extend_schema(request=None, responses={204: OpenApiResponse(description="Token revoked")})
    def delete(self, request):
        services.token_revoke(user=request.user, request=request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeView(generics.RetrieveAPIView):
    serializer_class = UserSerializer

    def get_object(self):
        return self.request.user


class UserListView(generics.ListAPIView):
    """All users (portal admins only). Filters: q, role, status=active|inactive."""

    serializer_class = UserSerializer
    permission_classes = [IsPortalAdmin]

    def get_queryset(self):
        return selectors.user_list(filters=self.request.query_params)


class UserDetailView(generics.RetrieveAPIView):
    serializer_class = UserSerializer
    permission_classes = [IsPortalAdmin]

    def get_object(self):
        return selectors.user_get(user_id=self.kwargs["pk"])
