#!/usr/bin/env python3
"""Write the HDBSCAN parity fixture: small data sets clustered by scikit-learn's HDBSCAN.

    python3 -m venv bench/discover/.venv
    bench/discover/.venv/bin/pip install 'scikit-learn>=1.3' numpy
    bench/discover/.venv/bin/python bench/discover/hdbscan_reference.py

writes crates/discover/tests/fixtures/hdbscan_reference.json, which
crates/discover/tests/hdbscan_reference.rs compares against (ARI >= 0.99).
scikit-learn's `min_samples` counts the point itself, as downshift's does.
"""
import json
import pathlib

import numpy as np
import sklearn
from sklearn.cluster import HDBSCAN

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates/discover/tests/fixtures/hdbscan_reference.json"


def blobs(rng, dim, centers, sizes, scales, n_noise, box):
    parts, truth = [], []
    for k, (c, s, sc) in enumerate(zip(centers, sizes, scales)):
        parts.append(rng.normal(c, sc, size=(s, dim)))
        truth += [k] * s
    parts.append(rng.uniform(-box, box, size=(n_noise, dim)))
    truth += [-1] * n_noise
    return np.round(np.vstack(parts), 4), truth


def case(name, x, **params):
    model = HDBSCAN(copy=True, **params).fit(x)
    return {
        "name": name,
        "dim": int(x.shape[1]),
        "points": x.astype(float).tolist(),
        "params": {
            "min_cluster_size": params.get("min_cluster_size", 5),
            "min_samples": params.get("min_samples"),
            "cluster_selection_method": params.get("cluster_selection_method", "eom"),
            "cluster_selection_epsilon": params.get("cluster_selection_epsilon", 0.0),
            "allow_single_cluster": params.get("allow_single_cluster", False),
        },
        "labels": model.labels_.tolist(),
        "probabilities": model.probabilities_.round(6).tolist(),
    }


def main():
    rng = np.random.default_rng(4)
    x2, _ = blobs(rng, 2, [(-5, -5), (0, 4), (6, -1)], [90, 80, 90], [0.8, 0.5, 1.2], 40, 10)
    x5, _ = blobs(
        rng, 5,
        [np.full(5, -4.0), np.zeros(5), np.full(5, 4.0), np.array([4.0, -4, 4, -4, 4])],
        [70, 70, 70, 60], [0.4, 1.0, 0.7, 0.3], 30, 8,
    )
    cases = [
        case("blobs2d_eom", x2, min_cluster_size=10),
        case("blobs2d_leaf", x2, min_cluster_size=10, min_samples=5, cluster_selection_method="leaf"),
        case("blobs5d_eom", x5, min_cluster_size=8, min_samples=5),
        case("blobs5d_eps", x5, min_cluster_size=8, min_samples=5, cluster_selection_epsilon=1.5),
    ]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"generator": f"scikit-learn {sklearn.__version__} HDBSCAN", "cases": cases}) + "\n")
    for c in cases:
        labels = np.array(c["labels"])
        print(f"{c['name']}: {labels.max() + 1} clusters, {np.mean(labels < 0):.0%} noise")


if __name__ == "__main__":
    main()
