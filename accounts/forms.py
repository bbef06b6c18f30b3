"""Forms of the log-in page and of the user-management pages. They validate input; services do the writing."""
from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.password_validation import password_validators_help_text_html, validate_password

from .models import User


class LoginForm(AuthenticationForm):
    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "Wrong username or password. Note that both fields may be case-sensitive.",
        "inactive": "This account is deactivated. Ask a portal administrator.",
    }

    def __init__(self, request=None, *args, **kwargs):
        super().__init__(request, *args, **kwargs)
        self.fields["username"].widget.attrs.update({"autocomplete": "username", "autocapitalize": "none"})
        self.fields["password"].widget.attrs.update({"autocomplete": "current-password"})


class UserEditForm(forms.ModelForm):
    class Meta:
        model = User
        fields = ["first_name", "last_name", "email", "role"]


class UserCreateForm(forms.ModelForm):
    password1 = forms.CharField(
        label="Initial password", strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=password_validators_help_text_html(),
    )
    password2 = forms.CharField(
        label="Initial password (again)", strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    class Meta:
        model = User
        fields = ["username", "first_name", "last_name", "email", "role"]

    def clean_username(self):
        username = self.cleaned_data["username"].strip()
        if User.objects.filter(username__iexact=username).exists():
            raise forms.ValidationError(f"A user named “{username}” already exists.")
        return username

    def clean(self):
        cleaned = super().clean()
        password1, password2 = cleaned.get("password1"), cleaned.get("password2")
        if password1 and password2 and password1 != password2:
            self.add_error("password2", "The two passwords differ.")
        elif password1:
            candidate = User(**{f: cleaned.get(f, "") for f in ("username", "first_name", "last_name", "email")})
            try:
                validate_password(password1, user=candidate)
            except forms.ValidationError as error:
                self.add_error("password1", error)
        return cleaned



class TwoFactorCodeForm(forms.Form):
    """A six-digit code from the user's authenticator app, or a recovery code ("abcd-efgh-ijkl", typed with or
    without its dashes and spaces); accounts.two_factor checks it."""

    code = forms.CharField(label="Code from your authenticator app", max_length=20, strip=True, widget=forms.TextInput(
        attrs={"autocomplete": "one-time-code", "autocapitalize": "none", "autofocus": True, "size": 16}))
