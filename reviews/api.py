"""The reviews API: a scan's reviews, and recording one. Thin: the page's form and reviews.services.

Whoever may see the scan may read and record its reviews; another doctor's scan is a 404. Every 4xx answer has the
body {"error": "...", "detail": ...} (as the scans API): 400 for bad input, 409 when the scan has no finished
analysis or a newer one than the review names.
"""
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response

from reviews import selectors, services
from reviews.forms import ReviewForm
from reviews.serializers import ReviewCreateSerializer, ReviewSerializer
from scans.api import ERRORS, ScansErrorsMixin, error_response
from scans.selectors import scan_get_for
from scans.serializers import ErrorSerializer


class ScanReviewsApi(ScansErrorsMixin, GenericAPIView):
    serializer_class = ReviewSerializer
    pagination_class = None

    def _scan(self):
        """The scan of the URL (404 when not the user's), read once per request; annotated by
        scans.selectors with `latest_review_id`, the review in force."""
        if not hasattr(self, "_scan_cache"):
            self._scan_cache = scan_get_for(user=self.request.user, pk=self.kwargs["pk"])
        return self._scan_cache

    def get_queryset(self):
        return selectors.reviews_for_scan(scan=self._scan())

    def get_serializer_class(self):
        # the browsable API's form for POST shows what a review takes, not what it returns
        return ReviewCreateSerializer if self.request.method == "POST" else ReviewSerializer

    @extend_schema(summary="A scan's reviews", tags=["reviews"],
                   description="Every radiologist's review of the scan, newest first; `current` marks the one in "
                   "force (the newest review of the scan's newest analysis).",
                   responses={200: ReviewSerializer(many=True), 403: ERRORS[403], 404: ERRORS[404]})
    def get(self, request, pk: int):
        context = {**self.get_serializer_context(), "current_id": self._scan().latest_review_id}
        return Response(ReviewSerializer(self.get_queryset(), many=True, context=context).data)

    @extend_schema(summary="Record a review", tags=["reviews"],
                   description="Your verdict on the scan's newest analysis (which must have succeeded). Reviews "
                   "are never changed: a new one supersedes the last. Overruling the detector needs a note.",
                   request=ReviewCreateSerializer,
                   responses={201: ReviewSerializer, 400: ERRORS[400], 403: ERRORS[403], 404: ERRORS[404],
                              409: OpenApiResponse(ErrorSerializer, description=(
                                  "No finished analysis yet, or a newer analysis than `job`: look at it first."))})
    def post(self, request, pk: int):
        scan = self._scan()
        form = ReviewForm(request.data)
        if not form.is_valid():
            return error_response("Invalid review.", form.errors.get_json_data())
        try:
            review = services.review_record(scan=scan, job_id=form.cleaned_data["job"],
                                            verdict=form.cleaned_data["verdict"], note=form.cleaned_data["note"],
                                            reviewer=request.user, request=request)
        except services.ReviewRejected as exc:
            detail = {exc.field: [{"message": exc.message}]} if exc.field else None
            return error_response(exc.message, detail, status_code=(
                status.HTTP_409_CONFLICT if exc.conflict else status.HTTP_400_BAD_REQUEST))
        body = ReviewSerializer(review, context={**self.get_serializer_context(), "current_id": review.pk}).data
        return Response(body, status=status.HTTP_201_CREATED)
