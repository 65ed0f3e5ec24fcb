"""Write the real-style corpus: the notebooks of this folder and data/passengers.csv.

The committed .ipynb files are the corpus; this script is how they were written, kept so a
change to one is a reviewed change of its source here. Run it from anywhere:

    python tests/notebooks/real/make_corpus.py

Every notebook must also run top to bottom in plain Jupyter, from this folder:

    python -m jupyter nbconvert --to notebook --execute --stdout NOTEBOOK >/dev/null
"""

# The cells below are notebook code, written to the width their notebooks have (ruff skips
# *.ipynb), not to this file's.
# ruff: noqa: E501

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}
LANGUAGE_INFO = {"name": "python"}
JUPYTEXT = {  # what `jupytext --to ipynb` writes: no kernelspec
    "jupytext": {
        "cell_metadata_filter": "-all",
        "main_language": "python",
        "notebook_metadata_filter": "-all",
    }
}


def md(text: str) -> dict[str, Any]:
    return {"cell_type": "markdown", "metadata": {}, "source": textwrap.dedent(text).strip()}


def code(text: str, *tags: str, mlnb: dict[str, Any] | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    if tags:
        metadata["tags"] = list(tags)
    if mlnb is not None:
        metadata["mlnb"] = mlnb
    return {
        "cell_type": "code",
        "execution_count": None,
        "metadata": metadata,
        "outputs": [],
        "source": textwrap.dedent(text).strip(),
    }


def notebook(stem: str, cells: list[dict[str, Any]], metadata: dict[str, Any]) -> None:
    for number, cell in enumerate(cells):
        cell["id"] = f"{stem.replace('_', '-')}-{number:02d}"
    nb = nbformat.from_dict(
        {"cells": cells, "metadata": metadata, "nbformat": 4, "nbformat_minor": 5}
    )
    nbformat.validate(nb)
    nbformat.write(nb, HERE / f"{stem}.ipynb")


def passengers_csv() -> None:
    """A Titanic-shaped passenger list: some ages and fares missing, two ports missing."""
    rng = np.random.default_rng(1912)
    n = 240
    pclass = rng.choice([1, 2, 3], size=n, p=[0.25, 0.25, 0.5])
    sex = rng.choice(["female", "male"], size=n, p=[0.4, 0.6])
    age = rng.normal(30, 13, size=n).clip(1, 75).round()
    sibsp = rng.choice([0, 1, 2, 3], size=n, p=[0.65, 0.25, 0.07, 0.03])
    fare = (rng.lognormal(2.5, 0.6, size=n) * (4 - pclass)).round(2)
    embarked = rng.choice(["S", "C", "Q"], size=n, p=[0.7, 0.2, 0.1]).astype(object)
    logit = 1.2 * (sex == "female") - 0.8 * (pclass - 2) - 0.02 * (age - 30) + 0.1
    survived = (rng.random(n) < 1 / (1 + np.exp(-2 * logit))).astype(int)
    frame = pd.DataFrame(
        {
            "passenger_id": np.arange(1, n + 1),
            "pclass": pclass,
            "sex": sex,
            "age": age,
            "sibsp": sibsp,
            "fare": fare,
            "embarked": embarked,
            "survived": survived,
        }
    )
    frame.loc[rng.choice(n, size=24, replace=False), "age"] = np.nan
    frame.loc[rng.choice(n, size=9, replace=False), "fare"] = np.nan
    frame.loc[[61, 229], "embarked"] = np.nan
    (HERE / "data").mkdir(exist_ok=True)
    frame.to_csv(HERE / "data" / "passengers.csv", index=False)


def titanic() -> None:
    notebook(
        "titanic_cleaning",
        [
            md("""
            # Who survived?

            A passenger list in the Titanic's shape (`data/passengers.csv`), cleaned and fitted
            with a logistic regression. The cleaning happens in its own stage, on the frame the
            load stage made.
            """),
            code("""
            %matplotlib inline
            import matplotlib.pyplot as plt
            import numpy as np
            import pandas as pd
            from sklearn.base import BaseEstimator, TransformerMixin
            from sklearn.compose import make_column_transformer
            from sklearn.linear_model import LogisticRegression
            from sklearn.metrics import accuracy_score
            from sklearn.model_selection import train_test_split
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import OneHotEncoder, StandardScaler
            """),
            code(
                """
                test_size = 0.25
                seed = 7
                C = 0.5
                solver = "lbfgs"
                """,
                "parameters",
            ),
            md("## Load"),
            code(
                """
                !echo "reading data/passengers.csv"
                passengers = pd.read_csv("data/passengers.csv", index_col="passenger_id")
                passengers["embarked"] = passengers["embarked"].astype("category")
                X = passengers.drop(columns="survived")
                y = passengers["survived"]
                display(X.head())
                """,
                "mlnb:data:load",
            ),
            code("X.isna().sum()"),
            code("""
            ax = X["fare"].plot.hist(bins=30, figsize=(6, 3))
            ax.set_xlabel("fare")
            plt.show()
            """),
            md("""
            ## Clean

            Two passengers have no port of embarkation: drop them. Missing fares and ages get
            the median.
            """),
            code(
                """
                X.dropna(subset=["embarked"], inplace=True)
                y = y.loc[X.index]
                X["fare"] = X["fare"].fillna(X["fare"].median())
                X["age"] = X["age"].fillna(X["age"].median())
                print(f"{len(X)} passengers after cleaning")
                """,
                "mlnb:data:clean",
            ),
            code("""
            X_train, X_test, y_train, y_test = train_test_split(
                X, y, test_size=test_size, random_state=seed, stratify=y
            )
            """),
            md("""
            ## Model

            Fares are skewed: bin them at quantiles learnt on the training rows.
            """),
            code(
                """
                class FareBinner(BaseEstimator, TransformerMixin):
                    def __init__(self, n_bins=4):
                        self.n_bins = n_bins

                    def fit(self, X, y=None):
                        values = np.asarray(X, dtype=float).ravel()
                        self.edges_ = np.quantile(values, np.linspace(0, 1, self.n_bins + 1)[1:-1])
                        return self

                    def transform(self, X):
                        values = np.asarray(X, dtype=float).ravel()
                        return np.digitize(values, self.edges_).reshape(-1, 1)
                """,
                "mlnb:train:fit",
                mlnb={"version": 1, "model": "model", "metrics": ["accuracy", "n_rows"]},
            ),
            code("""
            encode = make_column_transformer(
                (OneHotEncoder(handle_unknown="ignore"), ["sex", "embarked"]),
                (FareBinner(n_bins=4), ["fare"]),
                (StandardScaler(), ["age", "sibsp"]),
                ("passthrough", ["pclass"]),
            )
            model = make_pipeline(encode, LogisticRegression(C=C, solver=solver, max_iter=1000))
            """),
            code("%time model.fit(X_train, y_train)"),
            code("""
            metrics = {
                "accuracy": accuracy_score(y_test, model.predict(X_test)),
                "n_rows": len(X),
            }
            metrics
            """),
            md("""
            ## Serve

            `predict` takes a DataFrame of passengers with the training columns.
            """),
            code(
                """
                def predict(frame):
                    proba = model.predict_proba(frame)[:, 1]
                    return [{"survived": bool(p >= 0.5), "probability": round(float(p), 4)} for p in proba]
                """,
                "mlnb:serve",
            ),
            code("predict(X_test.head(3))"),
        ],
        {"kernelspec": KERNELSPEC, "language_info": LANGUAGE_INFO},
    )


def bike() -> None:
    notebook(
        "bike_rentals",
        [
            md("""
            # Daily bike rentals

            Written as `bike_rentals.py` and turned into a notebook with jupytext, so it has
            no kernelspec. Stages are marked with `%%mlnb` lines.
            """),
            code("""
            %load_ext mlnb
            %matplotlib inline
            import matplotlib.pyplot as plt
            import numpy as np
            import pandas as pd
            from sklearn.compose import make_column_transformer
            from sklearn.ensemble import HistGradientBoostingRegressor
            from sklearn.metrics import mean_absolute_error, r2_score
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import FunctionTransformer, OneHotEncoder
            """),
            code(
                """
                n_days = 365
                seed = 3
                learning_rate = 0.1
                loss = "squared_error"
                """,
                "parameters",
            ),
            md("## Data"),
            code("""
            %%mlnb data --name load
            rng = np.random.default_rng(seed)
            days = pd.date_range("2023-01-01", periods=n_days, freq="D")
            seasons = ["winter", "spring", "summer", "autumn"]
            season = pd.Categorical(np.array(seasons)[(days.month % 12) // 3], categories=seasons)
            temp = 12 + 10 * np.sin(2 * np.pi * (days.day_of_year - 100) / 365) + rng.normal(0, 2, n_days)
            workingday = (days.day_of_week < 5).astype(int)
            count = 200 + 15 * temp + 60 * workingday + 3 * days.day + rng.normal(0, 25, n_days)
            rentals = pd.DataFrame(
                {
                    "day": days,
                    "season": season,
                    "temp": temp.round(1),
                    "workingday": workingday,
                    "count": count.round(),
                }
            )
            display(rentals.head())
            """),
            code("""
            rentals.plot(x="day", y="count", figsize=(8, 3), legend=False)
            plt.ylabel("rentals")
            plt.show()
            """),
            md("""
            ## Corrections

            The counting station was down for three days; the operator sent corrected counts.
            """),
            code("""
            %%mlnb data --name corrections
            corrections = pd.DataFrame({"count": [310.0, 295.0, 402.0]}, index=[14, 15, 200])
            rentals.update(corrections)
            rentals.loc[corrections.index, ["day", "count"]]
            """),
            md("""
            ## Model

            Gradient boosting on the day of the month, the season, the temperature and whether
            it is a working day. The last two months are held out.
            """),
            code("""
            %%mlnb train --name fit --model regressor --metrics mae,r2
            def day_of_month(frame):
                return frame.apply(lambda column: column.dt.day)
            """),
            code("""
            features = ["day", "season", "temp", "workingday"]
            train = rentals[rentals["day"] < "2023-11-01"]
            test = rentals[rentals["day"] >= "2023-11-01"]
            X_train, y_train = train[features], train["count"]
            X_test, y_test = test[features], test["count"]
            regressor = make_pipeline(
                make_column_transformer(
                    (FunctionTransformer(day_of_month), ["day"]),
                    (OneHotEncoder(handle_unknown="ignore"), ["season"]),
                    remainder="passthrough",
                ),
                HistGradientBoostingRegressor(
                    loss=loss, learning_rate=learning_rate, max_iter=100, random_state=seed, verbose=1
                ),
            )
            """),
            code("""
            %%capture train_log
            regressor.fit(X_train, y_train)
            """),
            code("""
            print(next(line for line in train_log.stdout.splitlines() if line.startswith("Fit ")))
            predicted = regressor.predict(X_test)
            mae = mean_absolute_error(y_test, predicted)
            r2 = r2_score(y_test, predicted)
            print(f"MAE {mae:.1f}, R2 {r2:.3f}")
            """),
            md("## Serve"),
            code("""
            %%mlnb serve
            def predict(frame):
                return [round(float(v), 1) for v in regressor.predict(frame)]
            """),
            code("predict(X_test.head(3))"),
        ],
        dict(JUPYTEXT),
    )


def wine() -> None:
    notebook(
        "wine_svc",
        [
            md("""
            # Wine cultivars with a support vector machine

            An SVC (no `predict_proba`) on scikit-learn's wine data, with one engineered
            feature. The estimator is set up in one stage and fitted in the next.
            """),
            code("""
            import pandas as pd
            from sklearn.datasets import load_wine
            from sklearn.metrics import accuracy_score, f1_score
            from sklearn.model_selection import train_test_split
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import StandardScaler
            from sklearn.svm import SVC
            """),
            code(
                """
                C = 3.0
                kernel = "rbf"
                seed = 11
                test_size = 0.3
                """,
                "parameters",
            ),
            md("## Data"),
            code(
                """
                wine = load_wine(as_frame=True)
                X = wine.data
                y = wine.target.map(dict(enumerate(wine.target_names)))
                features = list(X.columns)
                print(len(features), "features;", y.value_counts().to_dict())
                """,
                "mlnb:data:load",
            ),
            md("""
            ## A feature the winemakers asked for

            Colour intensity over hue separates class_2 well.
            """),
            code(
                """
                X["color_hue_ratio"] = X["color_intensity"] / X["hue"]
                features.append("color_hue_ratio")
                X[features].describe().T.tail(3)
                """,
                "mlnb:data:features",
            ),
            md("## Model"),
            code(
                """
                clf = make_pipeline(StandardScaler(), SVC(C=C, kernel=kernel))
                clf
                """,
                "mlnb:train:configure",
            ),
            code(
                """
                X_train, X_test, y_train, y_test = train_test_split(
                    X[features], y, test_size=test_size, random_state=seed, stratify=y
                )
                !echo "fitting SVC(C={C}, kernel={kernel}) on {len(X_train)} rows"
                """,
                "mlnb:train:fit",
                mlnb={"version": 1, "model": "clf", "metrics": ["accuracy", "macro_f1"]},
            ),
            code("""
            %%time
            clf.fit(X_train, y_train)
            """),
            code("""
            predicted = clf.predict(X_test)
            accuracy = accuracy_score(y_test, predicted)
            macro_f1 = f1_score(y_test, predicted, average="macro")
            print(f"accuracy {accuracy:.3f}, macro F1 {macro_f1:.3f}")
            """),
            md("## Serve"),
            code(
                """
                def predict(frame):
                    return [str(label) for label in clf.predict(frame)]
                """,
                "mlnb:serve",
            ),
            code("predict(X_test.head(3))"),
        ],
        {"kernelspec": KERNELSPEC, "language_info": LANGUAGE_INFO},
    )


def digits() -> None:
    notebook(
        "digits_grid_search",
        [
            md("""
            # Custom refit strategy of a grid search with cross-validation

            After scikit-learn's example of the same name: find an SVC that recognises the
            digit 8 with a precision above a threshold, refitting with a callable.
            """),
            code("""
            %matplotlib inline
            import matplotlib.pyplot as plt
            import pandas as pd
            from sklearn.datasets import load_digits
            from sklearn.metrics import classification_report, precision_score, recall_score
            from sklearn.model_selection import GridSearchCV, train_test_split
            from sklearn.svm import SVC
            """),
            code(
                """
                test_size = 0.5
                seed = 0
                scoring_average = "binary"
                """,
                "parameters",
            ),
            md("## The dataset"),
            code(
                """
                digits = load_digits(as_frame=True)
                X = digits.data
                y = digits.target == 8
                X_train, X_test, y_train, y_test = train_test_split(
                    X, y, test_size=test_size, random_state=seed
                )
                """,
                "mlnb:data:load",
            ),
            code("""
            _, axes = plt.subplots(nrows=1, ncols=6, figsize=(8, 2))
            for ax, image, label in zip(axes, digits.images, digits.target):
                ax.set_axis_off()
                ax.imshow(image, cmap=plt.cm.gray_r, interpolation="nearest")
                ax.set_title(f"{label}")
            plt.show()
            """),
            md("""
            ## Define our grid-search strategy

            The refit strategy keeps the models with a precision above `precision_threshold`
            and refits the one with the best recall among them.
            """),
            code(
                """
                def print_dataframe(filtered_cv_results):
                    \"\"\"Pretty print for filtered dataframe\"\"\"
                    for mean_precision, std_precision, mean_recall, std_recall, params in zip(
                        filtered_cv_results["mean_test_precision"],
                        filtered_cv_results["std_test_precision"],
                        filtered_cv_results["mean_test_recall"],
                        filtered_cv_results["std_test_recall"],
                        filtered_cv_results["params"],
                    ):
                        print(
                            f"precision: {mean_precision:0.3f} (±{std_precision:0.03f}),"
                            f" recall: {mean_recall:0.3f} (±{std_recall:0.03f}),"
                            f" for {params}"
                        )
                    print()


                def refit_strategy(cv_results):
                    \"\"\"The index of the best recall among models with a high precision.\"\"\"
                    precision_threshold = 0.98

                    cv_results_ = pd.DataFrame(cv_results)
                    print("All grid-search results:")
                    print_dataframe(cv_results_)

                    high_precision_cv_results = cv_results_[
                        cv_results_["mean_test_precision"] > precision_threshold
                    ]
                    print(f"Models with a precision higher than {precision_threshold}:")
                    print_dataframe(high_precision_cv_results)
                    return high_precision_cv_results["mean_test_recall"].idxmax()
                """,
                "mlnb:train:search",
                mlnb={"version": 1, "model": "grid_search", "metrics": ["precision", "recall"]},
            ),
            code("""
            tuned_parameters = [
                {"kernel": ["rbf"], "gamma": [1e-3, 1e-4], "C": [1, 10, 100]},
                {"kernel": ["linear"], "C": [1, 10]},
            ]
            scores = ["precision", "recall"]
            grid_search = GridSearchCV(SVC(), tuned_parameters, scoring=scores, refit=refit_strategy)
            %time grid_search.fit(X_train, y_train)
            """),
            code("""
            grid_search.best_params_
            """),
            code("""
            y_pred = grid_search.predict(X_test)
            print(classification_report(y_test, y_pred))
            precision = precision_score(y_test, y_pred, average=scoring_average)
            recall = recall_score(y_test, y_pred, average=scoring_average)
            """),
            md("## Serve"),
            code(
                """
                def predict(frame):
                    return [{"is_eight": bool(v)} for v in grid_search.predict(frame)]
                """,
                "mlnb:serve",
            ),
            code("predict(X_test.head(3))"),
        ],
        {"kernelspec": KERNELSPEC, "language_info": LANGUAGE_INFO},
    )


def churn() -> None:
    notebook(
        "churn_lightgbm",
        [
            md("""
            # Customer churn with LightGBM

            Synthetic subscription data with a signup date and two categorical columns. The
            tenure features come from `features.py` beside this notebook.
            """),
            code("""
            %matplotlib inline
            import lightgbm as lgb
            import matplotlib.pyplot as plt
            import numpy as np
            import pandas as pd
            from sklearn.metrics import accuracy_score, roc_auc_score
            from sklearn.model_selection import train_test_split
            from sklearn.pipeline import make_pipeline
            """),
            code(
                """
                n_customers = 600
                seed = 21
                learning_rate = 0.05
                contract_order = "month-to-month,one year,two year"
                """,
                "parameters",
            ),
            md("## Data"),
            code(
                """
                rng = np.random.default_rng(seed)
                contracts = contract_order.split(",")
                signup = pd.Timestamp("2019-01-01") + pd.to_timedelta(
                    rng.integers(0, 5 * 365, n_customers), unit="D"
                )
                tenure = ((pd.Timestamp("2024-06-30") - signup).days // 30).to_numpy()
                contract = rng.choice(contracts, size=n_customers, p=[0.55, 0.25, 0.2])
                monthly = rng.normal(65, 20, n_customers).clip(15, 130).round(2)
                customers = pd.DataFrame(
                    {
                        "signup_date": signup,
                        "tenure_months": tenure,
                        "monthly_charges": monthly,
                        "total_charges": (monthly * tenure * rng.uniform(0.9, 1.0, n_customers)).round(2),
                        "contract": pd.Categorical(contract, categories=contracts),
                        "payment_method": pd.Categorical(
                            rng.choice(["card", "transfer", "check"], size=n_customers)
                        ),
                    }
                )
                risk = 1.5 * (customers["contract"] == "month-to-month") - tenure / 40 + monthly / 60 - 1
                customers["churned"] = (rng.random(n_customers) < 1 / (1 + np.exp(-risk))).astype(int)
                display(customers.head())
                """,
                "mlnb:data:load",
            ),
            code("""
            customers.groupby("contract", observed=True)["churned"].mean()
            """),
            code("""
            X = customers.drop(columns="churned")
            y = customers["churned"]
            X_train, X_test, y_train, y_test = train_test_split(
                X, y, test_size=0.25, random_state=seed, stratify=y
            )
            """),
            md("## Model"),
            code(
                """
                from features import TenureFeatures

                churn_model = make_pipeline(
                    TenureFeatures(reference_date="2024-06-30"),
                    lgb.LGBMClassifier(
                        n_estimators=120,
                        learning_rate=learning_rate,
                        num_leaves=15,
                        random_state=seed,
                        n_jobs=1,
                        verbose=-1,
                    ),
                )
                churn_model.fit(X_train, y_train)
                """,
                "mlnb:train:fit",
                mlnb={"version": 1, "model": "churn_model", "metrics": ["auc", "accuracy"]},
            ),
            code("""
            proba = churn_model.predict_proba(X_test)[:, 1]
            auc = roc_auc_score(y_test, proba)
            accuracy = accuracy_score(y_test, proba > 0.5)
            print(f"AUC {auc:.3f}, accuracy {accuracy:.3f}")
            """),
            code("""
            booster = churn_model[-1]
            names = booster.booster_.feature_name()
            pd.Series(booster.feature_importances_, index=names).sort_values().plot.barh(figsize=(5, 3))
            plt.show()
            """),
            md("## Serve"),
            code(
                """
                def predict(frame):
                    proba = churn_model.predict_proba(frame)[:, 1]
                    return [{"churn": bool(p > 0.5), "probability": round(float(p), 4)} for p in proba]
                """,
                "mlnb:serve",
            ),
            code("predict(X_test.head(3))"),
        ],
        {"kernelspec": KERNELSPEC, "language_info": LANGUAGE_INFO},
    )


def kale() -> None:
    notebook(
        "kale_diabetes",
        [
            md("""
            # Diabetes progression: a Kale pipeline

            Tagged for Kale's JupyterLab extension: one step per stage, no `prev:` tags (Kale
            infers the order from the data), and a `skip` cell that installs the requirements
            on a fresh notebook server.
            """),
            code(
                "!pip install --quiet --no-index -r requirements.txt",
                "skip",
            ),
            code(
                """
                %matplotlib inline
                import matplotlib.pyplot as plt
                import numpy as np
                import pandas as pd
                from sklearn.datasets import load_diabetes
                from sklearn.linear_model import Ridge
                from sklearn.metrics import mean_absolute_error, r2_score
                from sklearn.model_selection import train_test_split
                from sklearn.pipeline import make_pipeline
                from sklearn.preprocessing import StandardScaler
                """,
                "imports",
            ),
            code(
                """
                def bmi_band(bmi):
                    return pd.cut(bmi, bins=[0, 18.5, 25, 30, 100], labels=False)
                """,
                "functions",
            ),
            code(
                """
                alpha = 0.5
                test_size = 0.2
                seed = 5
                solver = "auto"
                """,
                "pipeline-parameters",
            ),
            md("## Load the patients"),
            code(
                """
                diabetes = load_diabetes(as_frame=True, scaled=False)
                data = diabetes.frame.query("age >= 25")
                print(data.shape)
                """,
                "step:load",
            ),
            md("## Prepare"),
            code(
                """
                data["bmi_band"] = bmi_band(data["bmi"])
                X_train, X_test, y_train, y_test = train_test_split(
                    data.drop(columns="target"), data["target"], test_size=test_size, random_state=seed
                )
                """,
                "step:prepare",
            ),
            md("## Model"),
            code(
                """
                model = make_pipeline(StandardScaler(), Ridge(alpha=alpha, solver=solver))
                """,
                "step:build_model",
            ),
            code(
                """
                model.fit(X_train, y_train)
                """,
                "step:train",
            ),
            code(
                """
                predicted = model.predict(X_test)
                r2 = r2_score(y_test, predicted)
                mae = mean_absolute_error(y_test, predicted)
                plt.figure(figsize=(4, 4))
                plt.scatter(y_test, predicted, s=8)
                plt.xlabel("measured")
                plt.ylabel("predicted")
                plt.show()
                """,
                "step:evaluate",
            ),
            code(
                """
                print(r2)
                print(mae)
                """,
                "pipeline-metrics",
            ),
        ],
        {"kernelspec": KERNELSPEC, "language_info": LANGUAGE_INFO},
    )


if __name__ == "__main__":
    passengers_csv()
    titanic()
    bike()
    wine()
    digits()
    churn()
    kale()
