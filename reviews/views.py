"""The review form of the scan page. Thin: the form reads, reviews.services records."""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from reviews import services
from reviews.forms import ReviewForm
from scans.selectors import scan_get_for


@login_required
@require_POST
def review_create(request, pk: int):
    from scans.views import render_scan_detail

    scan = scan_get_for(user=request.user, pk=pk)
    form = ReviewForm(request.POST)
    if form.is_valid():
        try:
            review = services.review_record(scan=scan, job_id=form.cleaned_data["job"],
                                            verdict=form.cleaned_data["verdict"], note=form.cleaned_data["note"],
                                            reviewer=request.user, request=request)
        except services.ReviewRejected as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
            return render_scan_detail(request, scan, review_form=form, status=409 if exc.conflict else 400)
        messages.success(request, f"Review recorded: {review.decision_label.lower()}, {review.verdict_label}.")
        return redirect(reverse("scans:detail", args=[scan.pk]) + "#review")
    return render_scan_detail(request, scan, review_form=form, status=400)
