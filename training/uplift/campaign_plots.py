"""Qini curves per offer of a holdout campaign, one PNG per offer: one model's, or the model and
its baselines on the same axes (the training run's comparison plots).

The curve points are scikit-uplift's (`qini_curve`, `perfect_qini_curve`); the drawing is ours
because sklift.viz 0.5.1 does not import with scikit-learn 1.8 (`check_matplotlib_support` was
removed from sklearn.utils).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from retention.params import NO_OFFER
from training.uplift.campaign_model import uplift_columns


def qini_plots(
    holdout: pd.DataFrame, scored_rows: Mapping[str, pd.DataFrame], offers: list[str], folder: Path
) -> list[Path]:
    """`qini_<offer>.png` for every offer with both arms in the holdout.

    Args:
        holdout: the holdout campaign (offer, returned).
        scored_rows: {model name: its scored rows (`uplift_columns` per offer)}, drawn in order.
        offers: the offers.
        folder: where the PNGs go.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklift.metrics import perfect_qini_curve, qini_curve

    written = []
    folder.mkdir(parents=True, exist_ok=True)
    for offer in offers:
        mask = holdout["offer"].isin([offer, NO_OFFER]).to_numpy()
        treated = (holdout.loc[mask, "offer"] == offer).to_numpy(dtype=int)
        y = holdout.loc[mask, "returned"].to_numpy(dtype=int)
        if treated.min(initial=1) == treated.max(initial=0) or y.min(initial=1) == y.max(initial=0):
            continue
        figure, axis = plt.subplots(figsize=(6, 4.5))
        for name, rows in scored_rows.items():
            score = rows.loc[mask, uplift_columns(offer)[0]].to_numpy(dtype=float)
            x, gain = qini_curve(y, score, treated)
            axis.plot(x, gain, label=name)
        x_best, best = perfect_qini_curve(y, treated, negative_effect=True)
        axis.plot(x_best, best, color="grey", linestyle=":", label="perfect")
        axis.plot([0, x_best[-1]], [0, best[-1]], color="black", linestyle="--", label="random order")
        axis.set_xlabel("customers contacted, by predicted uplift")
        axis.set_ylabel("incremental returns")
        axis.set_title(f"Qini curve: {offer} vs no contact (holdout campaign)")
        axis.legend()
        target = folder / f"qini_{offer}.png"
        figure.savefig(target, dpi=100, bbox_inches="tight")
        plt.close(figure)
        written.append(target)
    return written
