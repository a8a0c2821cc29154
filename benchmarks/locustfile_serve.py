"""The locust user of ``benchmarks/serve_locust.py``: posts the photos of ``$ELOPE_BENCH_IMAGES`` (a folder
of JPEG files) to ``POST /predict`` of the ``--host`` back to back, as raw ``image/jpeg`` bodies on one
keep-alive connection per user; anything but a 200 counts as a failure. Run by locust, not imported."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

from locust import FastHttpUser, constant, task

PHOTOS = [p.read_bytes() for p in sorted(Path(os.environ["ELOPE_BENCH_IMAGES"]).glob("*.jpg"))]
_NEXT = itertools.count()


class PredictUser(FastHttpUser):
    """One client: the next photo, as soon as the previous answer came."""

    wait_time = constant(0)

    @task
    def predict(self) -> None:
        body = PHOTOS[next(_NEXT) % len(PHOTOS)]
        headers = {"Content-Type": "image/jpeg"}
        with self.client.post("/predict", data=body, headers=headers, catch_response=True) as answer:
            if answer.status_code != 200:
                answer.failure(f"status {answer.status_code}")
