"""Django admin for detector jobs: read-only records (results are written by the worker only), plus a retry action."""
from django.contrib import admin, messages

from inference import services
from inference.models import InferenceJob, SliceInstance, SliceResult
from portal.admin_base import NoEditAdmin


class SliceResultInline(admin.TabularInline):
    model = SliceResult
    fields = ["index", "verdict", "confidence", "tamper_score", "mask"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(InferenceJob)
class InferenceJobAdmin(NoEditAdmin):
    list_display = ["id", "scan", "status", "slices_done", "slices_total", "verdict", "confidence", "attempts",
                    "model_version", "created_at", "finished_at"]
    list_filter = ["status", "verdict", "model_version"]
    search_fields = ["=id", "=scan__id", "scan__original_name", "scan__owner__username", "celery_task_id"]
    date_hierarchy = "created_at"
    list_select_related = ["scan"]
    inlines = [SliceResultInline]
    actions = ["retry_failed"]

    @admin.action(description="Retry the selected failed jobs")
    def retry_failed(self, request, queryset):
        retried = 0
        for job in queryset.filter(status=InferenceJob.Status.FAILED):
            services.job_retry(job=job, user=request.user, request=request)
            retried += 1
        self.message_user(request, f"{retried} failed job(s) queued again.", messages.SUCCESS)


class SliceInstanceInline(admin.TabularInline):
    model = SliceInstance
    fields = ["label", "score", "box", "area"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(SliceResult)
class SliceResultAdmin(NoEditAdmin):
    list_display = ["id", "job", "index", "verdict", "confidence", "tamper_score"]
    list_filter = ["verdict"]
    search_fields = ["=job__id"]
    list_select_related = ["job"]
    inlines = [SliceInstanceInline]
