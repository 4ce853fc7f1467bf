"""The out-of-stock model: trained from shopper signals into a new current version, and loaded
back (once per process and version) as the predictor a run uses."""

from __future__ import annotations

import io
from datetime import timedelta

from django.db import connection, transaction

from apps.core.errors import ApplicationError
from apps.inventory import conf, pipeline
from apps.inventory.models import OosModel

_TRAINING_SQL = """
SELECT COALESCE(merchant_available, true)::int, COALESCE(hours_since_in_stock, 0),
       count(*) FILTER (WHERE found) OVER w, count(*) FILTER (WHERE NOT found) OVER w,
       (NOT found)::int
FROM (SELECT * FROM inventory_shoppersignal ORDER BY id DESC LIMIT %(limit)s) s
WINDOW w AS (PARTITION BY store_id, sku ORDER BY created_at
             RANGE BETWEEN %(window)s PRECEDING AND CURRENT ROW EXCLUDE CURRENT ROW)
"""


def oos_model_train(*, min_samples: int = 40, limit: int = 200_000) -> OosModel:
    """Train a new out-of-stock classifier from shopper signals; make it current.

    Each signal is a labelled example (not found = out of stock) with the features prediction
    uses: merchant availability and hours since last in stock (snapshotted at signal time), and
    the store+SKU's found / not-found counts in the preceding window.
    """
    import joblib
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    with connection.cursor() as cursor:
        cursor.execute(_TRAINING_SQL, {"limit": limit, "window": timedelta(days=conf.signal_window_days())})
        data = np.asarray(cursor.fetchall(), dtype=np.float64)
    if len(data) < min_samples:
        raise ApplicationError(f"Not enough history to train: {len(data)} signals, need {min_samples}.")
    features, labels = data[:, :4], data[:, 4].astype(int)
    if labels.min() == labels.max() or min(np.bincount(labels)) < 2:
        raise ApplicationError("Not enough history to train: need both found and not-found signals.")
    x_train, x_test, y_train, y_test = train_test_split(
        features, labels, test_size=0.25, random_state=0, stratify=labels
    )
    model = LogisticRegression(max_iter=1000).fit(x_train, y_train)
    accuracy = float((model.predict(x_test) == y_test).mean())
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    with transaction.atomic():
        last = OosModel.objects.select_for_update().order_by("-version").first()
        OosModel.objects.filter(is_current=True).update(is_current=False)
        return OosModel.objects.create(
            version=(last.version + 1) if last else 1,
            algorithm="LogisticRegression",
            features=list(pipeline.FEATURES),
            blob=buffer.getvalue(),
            train_samples=len(y_train),
            test_samples=len(y_test),
            accuracy=accuracy,
            is_current=True,
        )


_predictors: dict[int, pipeline.Predictor] = {}


def oos_predictor(*, version: int | None) -> tuple[str, pipeline.Predictor]:
    """The current model, looked up once per run (and deserialised once per process and version)."""
    if version is None:
        return pipeline.HEURISTIC, pipeline.heuristic_scores
    if version not in _predictors:
        import joblib

        blob = bytes(OosModel.objects.values_list("blob", flat=True).get(version=version))
        model = joblib.load(io.BytesIO(blob))
        oos_column = list(model.classes_).index(1)
        _predictors.clear()
        _predictors[version] = lambda features, _m=model, _c=oos_column: _m.predict_proba(features)[:, _c]
    return f"model-v{version}", _predictors[version]
