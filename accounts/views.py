"""Browser pages: log-in, log-out, the user's own account page, and user management for portal admins."""
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import PasswordChangeForm, SetPasswordForm
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, resolve_url
from django.urls import NoReverseMatch, reverse
from django.views.generic import FormView, ListView, TemplateView, View

from . import selectors, services
from .forms import LoginForm, UserCreateForm, UserEditForm
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
            **kwargs, roles=User.Role.choices, filters=self.request.GET, query_string=query.urlencode()
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
        return super().get_context_data(**kwargs, subject=self.subject)


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
