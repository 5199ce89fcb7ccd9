#!/usr/bin/env python3
"""Parity of `hospital-ml-models`' risk fit (ml/models/src/risk.rs) with scikit-learn.

Needs numpy and scikit-learn, and pylance for .lance sets (scripts/setup.sh installs
them).

Usage:  parity.py ROWS --l2 1e-4 [--class-weight balanced|none] [--tol 1e-4] [--max-iter 100]
        parity.py DIR/training_sets/NAME.lance --version N --l2 1.0

ROWS is either a .csv with the columns `split` ("fit", "calib" or "test", rows in time
order), `y` (0/1) and then the features (empty or NaN = missing), which the benchmark
ml/models/benches/risk_fit.rs writes; or a training set version the sidecar wrote, split
as its registry does (ml/tests/sidecar.rs compares the AUROC with the registry's).

On the `fit` rows, exactly as risk.rs does:
- standardise with the mean and population standard deviation of each feature's finite
  values (a std <= 1e-12 becomes 1), then a missing value becomes 0 (the training mean);
- class weights: a positive weighs n_neg / n_pos, a negative 1 (`--class-weight none`: 1);
- L2: risk.rs minimises (1/W) sum w_i loss_i + (l2/2) |beta|^2 with W = sum w_i;
  scikit-learn's lbfgs minimises (1/S) sum s_i loss_i + 1/(2 C S) |beta|^2 with S the sum
  of its sample weights (sklearn/linear_model/_logistic.py: l2_reg_strength = 1/(C*sw_sum)).
  The weights are the same, so S = W and C = 1 / (l2 * W).

Prints one JSON line: AUROC on the `test` rows (of the uncalibrated probability; Platt
scaling is monotone), the median fit time of `--repeat` fits (LogisticRegression.fit only),
iterations, peak resident memory (VmHWM, kB), C, and the coefficients.
"""

import argparse
import csv
import json
import math
import statistics
import time

import numpy as np


SIDE_COLUMNS = ("entity", "patient_key", "cutoff_ms", "cutoff_position", "label", "baseline", "exposure_hours")


def load_lance(path, version, test_fraction, calibration_fraction):
    """A training set written by the sidecar, split as its registry splits it
    (ml/src/registry.rs): rows in cutoff order (a stable sort of the scan order), the
    newest `test_fraction` (rounded) test; of the rest, the last `calibration_fraction`
    (floored) calibrate and the ones before fit (ml/models/src/risk.rs)."""
    import lance  # pip install pylance

    ds = lance.dataset(path, version=version) if version else lance.dataset(path)
    table = ds.to_table()
    names = [n for n in table.column_names if n not in SIDE_COLUMNS]
    x = np.column_stack(
        [np.array(table.column(n).to_pylist(), dtype=np.float64) for n in names]
    )
    y = np.array(table.column("label").to_pylist(), dtype=bool)
    order = np.argsort(np.array(table.column("cutoff_ms").to_pylist()), kind="stable")
    x, y = x[order], y[order]
    n = len(y)
    n_test = int(math.floor(n * test_fraction + 0.5))
    n_train = n - n_test
    n_cal = int(math.floor(n_train * calibration_fraction))
    split = np.array(["fit"] * (n_train - n_cal) + ["calib"] * n_cal + ["test"] * n_test)
    return names, x, y, split


def load(path, version=None, test_fraction=0.2, calibration_fraction=0.2):
    """Returns (feature names, X float64 with NaN for missing, y bool, split str array).

    Accepts the .csv the benchmark writes, or a .lance training set written by the
    sidecar (read with pylance; see load_lance).
    """
    if path.endswith(".lance"):
        return load_lance(path, version, test_fraction, calibration_fraction)
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        if header[:2] != ["split", "y"]:
            raise ValueError(f"{path}: expected the columns split, y, features...")
        split, y, rows = [], [], []
        for row in reader:
            split.append(row[0])
            y.append(row[1] in ("1", "true", "True"))
            rows.append([float(v) if v != "" else math.nan for v in row[2:]])
    return header[2:], np.array(rows, dtype=np.float64), np.array(y), np.array(split)


def standardise(x_fit, x):
    """risk.rs's standardisation and imputation, moments from x_fit."""
    finite = np.isfinite(x_fit)
    count = finite.sum(axis=0)
    mean = np.where(count > 0, np.where(finite, x_fit, 0).sum(axis=0) / np.maximum(count, 1), 0.0)
    dev = np.where(finite, x_fit - mean, 0.0)
    std = np.sqrt((dev * dev).sum(axis=0) / np.maximum(count, 1))
    std = np.where(std > 1e-12, std, 1.0)
    z = (x - mean) / std
    return np.where(np.isfinite(x), z, 0.0)


def vmhwm_kb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("rows")
    ap.add_argument("--l2", type=float, default=1e-4)
    ap.add_argument("--class-weight", choices=["balanced", "none"], default="balanced")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--max-iter", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--version", type=int, default=None, help=".lance: the dataset version (default: latest)")
    ap.add_argument("--test-fraction", type=float, default=0.2, help=".lance: newest rows held out")
    ap.add_argument("--calibration-fraction", type=float, default=0.2, help=".lance: risk.rs's calibration slice")
    args = ap.parse_args()

    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    _, x, y, split = load(args.rows, args.version, args.test_fraction, args.calibration_fraction)
    fit, test = split == "fit", split == "test"
    x_fit = standardise(x[fit], x[fit])
    x_test = standardise(x[fit], x[test])
    y_fit = y[fit]
    n_pos = int(y_fit.sum())
    n_neg = int(len(y_fit) - n_pos)
    positive_weight = n_neg / n_pos if args.class_weight == "balanced" else 1.0
    total_weight = n_neg + n_pos * positive_weight
    c = 1.0 / (args.l2 * total_weight)

    times = []
    for _ in range(args.repeat):
        clf = LogisticRegression(
            C=c,
            solver="lbfgs",
            tol=args.tol,
            max_iter=args.max_iter,
            class_weight={False: 1.0, True: positive_weight},
        )
        start = time.perf_counter()
        clf.fit(x_fit, y_fit)
        times.append(time.perf_counter() - start)

    logit = x_test @ clf.coef_[0] + clf.intercept_[0]
    print(
        json.dumps(
            {
                "auroc": roc_auc_score(y[test], logit),
                "fit_seconds": statistics.median(times),
                "n_iter": int(clf.n_iter_[0]),
                "vmhwm_kb": vmhwm_kb(),
                "C": c,
                "coef": clf.coef_[0].tolist(),
                "intercept": float(clf.intercept_[0]),
                "sklearn": __import__("sklearn").__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
