"""Feature engineering shared by the churn notebooks (imported by their train stage)."""

from __future__ import annotations

import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin


class TenureFeatures(BaseEstimator, TransformerMixin):
    """Account age in days and charges per month of tenure; drops the raw signup date."""

    def __init__(self, reference_date: str = "2024-06-30", date_column: str = "signup_date"):
        self.reference_date = reference_date
        self.date_column = date_column

    def fit(self, X: pd.DataFrame, y=None) -> TenureFeatures:
        self.feature_names_in_ = list(X.columns)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        out = X.copy()
        signed_up = pd.to_datetime(out[self.date_column])
        out["account_days"] = (pd.Timestamp(self.reference_date) - signed_up).dt.days
        out["charges_per_month"] = out["total_charges"] / out["tenure_months"].clip(lower=1)
        return out.drop(columns=[self.date_column])
