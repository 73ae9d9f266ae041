"""Active seconds are summed from many rounded pieces; they must never exceed the wall span."""

from datetime import timedelta

from django.utils import timezone

from annotation import services

T0 = timezone.now().replace(microsecond=0)


def test_active_seconds_never_exceed_wall_seconds_after_rounding(project, examples, annotator):
    # given heartbeats whose gaps each round UP to the nearest millisecond (0.4996 s -> 0.500)
    attempt = services.claim_next(project=project, annotator=annotator, now=T0)
    services.attempt_heartbeat(attempt_id=attempt.pk, annotator=annotator, now=T0)  # shown
    services.attempt_heartbeat(attempt_id=attempt.pk, annotator=annotator, now=T0 + timedelta(microseconds=499_600))
    # when the annotator submits 0.9992 s after the text was shown
    services.annotation_submit(
        attempt_id=attempt.pk,
        annotator=annotator,
        label_ids=[project.labels.first().pk],
        now=T0 + timedelta(microseconds=999_200),
    )
    # then the summed active time is not larger than the wall-clock span
    attempt.refresh_from_db()
    assert attempt.wall_seconds == attempt.wall_seconds.quantize(services.MILLI)
    assert 0 < attempt.active_seconds <= attempt.wall_seconds
