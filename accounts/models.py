from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    """A portal user. Doctors see their own scans; admins manage users and see everything."""

    class Role(models.TextChoices):
        DOCTOR = "doctor", "Doctor"
        ADMIN = "admin", "Admin"

    role = models.CharField(max_length=16, choices=Role.choices, default=Role.DOCTOR)

    @property
    def is_portal_admin(self) -> bool:
        return self.is_active and (self.role == self.Role.ADMIN or self.is_superuser)

    def save(self, *args, **kwargs):
        # A Django superuser (createsuperuser) is a portal admin.
        if self.is_superuser:
            self.role = self.Role.ADMIN
        super().save(*args, **kwargs)
