"""SASRec (Kang & McAuley 2018, "Self-Attentive Sequential Recommendation"): network, training, scores, serving.

Departures from the paper:
- trained with softmax cross-entropy over the whole catalogue (or a shared uniform sample of
  negatives on large catalogues) instead of binary cross-entropy with one negative per position;
  each position may also learn the few items after the next one (`targets_ahead`);
- a history longer than `max_length` gives several training rows instead of only its last window;
- pre-LayerNorm blocks with GELU feed-forward layers and no dropout on attention weights (on CPU
  it costs as much as the attention); output scores tied to the item embeddings;
- optional product-text embeddings (the sentiment feature's frozen sentence encoder) either
  initialise the item embeddings or are projected and added to them ("complement"), so that a
  product nobody interacted with still gets a score that depends on its text;
- optionally blended with the long-term taste of an ALS matrix factorisation folded in from the
  same items, their item-kNN neighbours and the items' popularity, the weights chosen on history
  only (see `SASRecRecommender`, `scores.py` and `../blend.py`);
- a customer without history (or a fit without any usable sequence) falls back to popularity.

Modules: `net` (the plain `nn.Module`), `module` (the LightningModule and DataModule), `scores`
(the blend arithmetic, dense and fused into state vectors), `recommender` (tune, fit, score) and
`persistence` (save and load).
"""

from training.recommender.sasrec.net import NetConfig, SASRecNet
from training.recommender.sasrec.recommender import SASRecRecommender
from training.recommender.sasrec.scores import PreferenceBlend

__all__ = ["NetConfig", "PreferenceBlend", "SASRecNet", "SASRecRecommender"]
