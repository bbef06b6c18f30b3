"""Browser pages: log-in, log-out, the user's own account page, and user management for portal admins."""
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import PasswordChangeForm, SetPasswordForm
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, resolve_url
from django.urls import NoReverseMatch, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.generic import FormView, ListView, TemplateView, View

from . import selectors, services, two_factor
from .forms import LoginForm, TwoFactorCodeForm, UserCreateForm, UserEditForm
from .models import User
from .permissions import PortalAdminRequiredMixin


def landing_url() -> str:
    """Where a log-in lands: the scans list (LOGIN_REDIRECT_URL), or the account page while it is not routed."""
    try:
        return resolve_url(settings.LOGIN_REDIRECT_URL)
    except NoReverseMatch:
        return reverse("accounts:me")


class LoginView(auth_views.LoginView):
    template_name = "accounts/login.html"
    authentication_form = LoginForm
    redirect_authenticated_user = True

    def get_default_redirect_url(self):
        return landing_url()


class LogoutView(auth_views.LogoutView):
    """POST only (Django refuses GET): a link cannot log a doctor out."""

    def post(self, request, *args, **kwargs):
        response = super().post(request, *args, **kwargs)
        messages.info(request, "You have been logged out.")
        return response


class AccountView(LoginRequiredMixin, TemplateView):
    template_name = "accounts/me.html"

    def get_context_data(self, **kwargs):
        user = self.request.user
        return super().get_context_data(**kwargs, two_factor=two_factor.device_for(user),
                                        two_factor_required=two_factor.required_for(user))


def next_url(request, default: str | None = None) -> str:
    """Where to go after a log-in step: ``next`` (GET or POST) when it is on this site, else ``default`` (the
    landing page)."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    safe = url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure())
    return target if target and safe else (landing_url() if default is None else default)


class TwoFactorVerifyView(LoginRequiredMixin, FormView):
    """The log-in's second step (accounts.middleware.TwoFactorMiddleware sends every page here until it is done)."""

    template_name = "accounts/two_factor_verify.html"
    form_class = TwoFactorCodeForm

    def dispatch(self, request, *args, **kwargs):
        user = request.user
        if user.is_authenticated and (user.is_verified() or not two_factor.enabled_for(user)):
            return redirect(self._next())
        return super().dispatch(request, *args, **kwargs)

    def _next(self) -> str:
        return next_url(self.request)

    def get_context_data(self, **kwargs):
        return super().get_context_data(**kwargs, next=self._next())

    def form_valid(self, form):
        try:
            left = two_factor.verify(request=self.request, token=form.cleaned_data["code"])
        except two_factor.TwoFactorError as exc:
            form.add_error("code", exc.message)
            return self.form_invalid(form)
        if left is not None:
            more = " Make new ones on your account page." if left <= 3 else ""
            messages.warning(self.request, f"You used a recovery code: {left} left.{more}")
        return redirect(self._next())


class TwoFactorView(LoginRequiredMixin, FormView):
    """The user's own two-factor authentication: set it up (a QR code, then a code from the app to confirm), turn it
    off (with a code, unless MFA_REQUIRED requires it), or move it to a new phone (set it up again)."""

    template_name = "accounts/two_factor.html"
    form_class = TwoFactorCodeForm

    def get_context_data(self, **kwargs):
        user = self.request.user
        device = two_factor.device_for(user)
        setting_up = (device is None or self.request.GET.get("new") == "1"
                      or self.request.POST.get("action") == "confirm")
        return super().get_context_data(
            **kwargs, device=device, required=two_factor.required_for(user), next=next_url(self.request, ""),
            setup=two_factor.start_setup(user) if setting_up else None,
            recovery_left=two_factor.recovery_codes_left(user), recovery_total=two_factor.RECOVERY_CODES)

    def form_valid(self, form):
        action = self.request.POST.get("action")
        try:
            if action == "disable":
                two_factor.disable(request=self.request, token=form.cleaned_data["code"])
                messages.success(self.request, "Two-factor authentication is off: your password alone signs you in.")
                return redirect("accounts:me")
            two_factor.confirm(request=self.request, token=form.cleaned_data["code"])
        except two_factor.TwoFactorError as exc:
            form.add_error("code", exc.message)
            return self.form_invalid(form)
        messages.success(self.request, "Two-factor authentication is on: each log-in will ask for a code from your "
                                       "authenticator app.")
        self.request.session[RECOVERY_SESSION_KEY] = two_factor.new_recovery_codes(request=self.request)
        target = next_url(self.request, "")
        return redirect(reverse("accounts:two_factor_codes") + (f"?{urlencode({'next': target})}" if target else ""))


RECOVERY_SESSION_KEY = "two_factor_recovery_codes"  # new codes, until the page that shows them once


class TwoFactorCodesView(LoginRequiredMixin, TemplateView):
    """The recovery codes, shown once after they were made (set-up, or POST here for a new set)."""

    template_name = "accounts/two_factor_codes.html"

    def get_context_data(self, **kwargs):
        user = self.request.user
        return super().get_context_data(
            **kwargs, codes=self.request.session.pop(RECOVERY_SESSION_KEY, None), enabled=two_factor.enabled_for(user),
            left=two_factor.recovery_codes_left(user), total=two_factor.RECOVERY_CODES,
            next=next_url(self.request, reverse("accounts:me")))

    def post(self, request, *args, **kwargs):
        if not two_factor.enabled_for(request.user):
            messages.error(request, "Turn two-factor authentication on first: recovery codes stand in for its app.")
            return redirect("accounts:two_factor")
        request.session[RECOVERY_SESSION_KEY] = two_factor.new_recovery_codes(request=request)
        return redirect("accounts:two_factor_codes")


class PasswordChangeView(LoginRequiredMixin, FormView):
    template_name = "accounts/password_change.html"
    form_class = PasswordChangeForm

    def get_form_kwargs(self):
        return {**super().get_form_kwargs(), "user": self.request.user}

    def form_valid(self, form):
        user = services.user_set_password(actor=self.request.user, user=self.request.user,
                                          password=form.cleaned_data["new_password1"], request=self.request)
        update_session_auth_hash(self.request, user)  # stay logged in here; other sessions end
        messages.success(self.request, "Your password has been changed.")
        return redirect("accounts:me")


# --- User management (portal admins only)


def _apply_errors(form, error: ValidationError):
    """Put a service's ValidationError onto the form (field errors where the field exists)."""
    if hasattr(error, "error_dict"):
        for field, errors in error.error_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, error)


class UserListView(PortalAdminRequiredMixin, ListView):
    template_name = "accounts/user_list.html"
    context_object_name = "users"
    paginate_by = 25

    def get_queryset(self):
        return selectors.user_list(filters=self.request.GET)

    def get_context_data(self, **kwargs):
        query = self.request.GET.copy()
        query.pop("page", None)
        return super().get_context_data(
            **kwargs, roles=User.Role.choices, filters=self.request.GET, query_string=query.urlencode(),
            two_factor_users=two_factor.users_with_two_factor(), mfa_required=settings.MFA_REQUIRED,
            two_factor_summary=selectors.two_factor_summary(),
        )


class UserCreateView(PortalAdminRequiredMixin, FormView):
    template_name = "accounts/user_form.html"
    form_class = UserCreateForm

    def form_valid(self, form):
        data = form.cleaned_data
        try:
            user = services.user_create(
                actor=self.request.user, username=data["username"], password=data["password1"], role=data["role"],
                email=data["email"], first_name=data["first_name"], last_name=data["last_name"],
                request=self.request,
            )
        except ValidationError as error:
            _apply_errors(form, error)
            return self.form_invalid(form)
        messages.success(self.request, f"User “{user.username}” created. Give them the initial password securely.")
        return redirect("accounts:user_list")


class UserObjectMixin(PortalAdminRequiredMixin):
    def dispatch(self, request, *args, **kwargs):
        # Permission first (403 for doctors), then the object (404 when absent).
        if not self.test_func():
            return self.handle_no_permission()
        self.subject = selectors.user_get(user_id=kwargs["pk"])
        return super().dispatch(request, *args, **kwargs)

    def get_context_data(self, **kwargs):
        return super().get_context_data(**kwargs, subject=self.subject,
                                        subject_two_factor=two_factor.device_for(self.subject))


class UserUpdateView(UserObjectMixin, FormView):
    template_name = "accounts/user_form.html"
    form_class = UserEditForm

    def get_form_kwargs(self):
        return {**super().get_form_kwargs(), "instance": self.subject}

    def form_valid(self, form):
        try:
            services.user_update(actor=self.request.user, user=self.subject, data=form.cleaned_data,
                                 request=self.request)
        except ValidationError as error:
            _apply_errors(form, error)
            return self.form_invalid(form)
        messages.success(self.request, f"User “{self.subject.username}” saved.")
        return redirect("accounts:user_list")


class UserPasswordResetView(UserObjectMixin, FormView):
    template_name = "accounts/user_password.html"
    form_class = SetPasswordForm

    def get_form_kwargs(self):
        return {**super().get_form_kwargs(), "user": self.subject}

    def form_valid(self, form):
        services.user_set_password(actor=self.request.user, user=self.subject,
                                   password=form.cleaned_data["new_password1"], request=self.request)
        if self.subject.pk == self.request.user.pk:
            update_session_auth_hash(self.request, self.subject)
        messages.success(self.request, f"New password set for “{self.subject.username}”; any lockout is lifted.")
        return redirect("accounts:user_list")


class UserTwoFactorResetView(UserObjectMixin, View):
    """POST only: remove a user's authenticator app (a lost phone)."""

    http_method_names = ["post"]

    def post(self, request, *args, **kwargs):
        if two_factor.reset(actor=request.user, user=self.subject, request=request):
            again = " They will set it up again at their next log-in." if two_factor.required_for(self.subject) else ""
            messages.success(request, f"Two-factor authentication of “{self.subject.username}” reset: their "
                                      f"authenticator app no longer signs them in.{again}")
        else:
            messages.info(request, f"“{self.subject.username}” has no two-factor authentication to reset.")
        return redirect("accounts:user_edit", pk=self.subject.pk)


class UserActiveView(UserObjectMixin, View):
    """POST only: deactivate or reactivate (the URL says which)."""

    http_method_names = ["post"]
    activate = False

    def post(self, request, *args, **kwargs):
        service = services.user_reactivate if self.activate else services.user_deactivate
        try:
            service(actor=request.user, user=self.subject, request=request)
        except ValidationError as error:
            messages.error(request, " ".join(error.messages))
        else:
            state = "reactivated" if self.activate else "deactivated"
            messages.success(request, f"User “{self.subject.username}” {state}.")
        return redirect("accounts:user_list")
