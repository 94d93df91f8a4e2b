"""scikit-learn attacks on standardised features, each seeded through `random_state`.

sklearn_mlp mirrors Bagmar et al.: "the standard implementation from scikit-learn", i.e. MLPClassifier with its
defaults (one hidden layer of 100, Adam, L2 alpha 1e-4, up to 200 epochs with its own loss-plateau stop).
sklearn_svc scores with the signed distance to the RBF-SVM boundary (no Platt scaling, whose internal cross-validation
is slow and random) and predicts members at distance >= 0.
"""
import warnings

import numpy as np
from sklearn import ensemble, exceptions, linear_model, neural_network, pipeline, preprocessing, svm

from mialth_jax.attacks.features import FeatureAttack
from mialth_jax.attacks.registry import ATTACKS


class _SklearnAttack(FeatureAttack):
  """Wraps `make_estimator()` after a StandardScaler; scores with P(member)."""

  def make_estimator(self):
    raise NotImplementedError

  def fit_features(self, x: np.ndarray, y: np.ndarray) -> None:
    self.model_ = pipeline.make_pipeline(preprocessing.StandardScaler(), self.make_estimator())
    # A fixed epoch budget is part of the setting, not a fault: the ConvergenceWarning would only add noise.
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", exceptions.ConvergenceWarning)
      self.model_.fit(x, y)

  def score_features(self, x: np.ndarray) -> np.ndarray:
    return self.model_.predict_proba(x)[:, list(self.model_.classes_).index(True)]


@ATTACKS.register("sklearn_mlp")
class SklearnMLPAttack(_SklearnAttack):
  title = "the paper's scikit-learn MLP"

  def __init__(self, *, hidden: tuple[int, ...] = (100,), max_iter: int = 200, alpha: float = 1e-4,
               learning_rate: float = 1e-3, batch_size: int | str = "auto", **common):
    super().__init__(**common)
    self.hidden = tuple(int(h) for h in hidden)
    self.max_iter = int(max_iter)
    self.alpha = float(alpha)
    self.learning_rate = float(learning_rate)
    self.batch_size = batch_size

  def make_estimator(self):
    return neural_network.MLPClassifier(hidden_layer_sizes=self.hidden, max_iter=self.max_iter, alpha=self.alpha,
                                        learning_rate_init=self.learning_rate, batch_size=self.batch_size,
                                        random_state=self.seed)


@ATTACKS.register("sklearn_svc")
class SklearnSVCAttack(_SklearnAttack):
  threshold = 0.0

  def __init__(self, *, C: float = 1.0, kernel: str = "rbf", gamma: str | float = "scale", **common):  # noqa: N803
    super().__init__(**common)
    self.C = float(C)
    self.kernel = kernel
    self.gamma = gamma

  def make_estimator(self):
    return svm.SVC(C=self.C, kernel=self.kernel, gamma=self.gamma, random_state=self.seed)

  def score_features(self, x: np.ndarray) -> np.ndarray:
    # decision_function is positive on the side of classes_[1], which is True (member) for bool labels.
    return self.model_.decision_function(x)


@ATTACKS.register("sklearn_rf")
class SklearnRFAttack(_SklearnAttack):
  def __init__(self, *, n_estimators: int = 100, max_depth: int | None = None, min_samples_leaf: int = 1,
               **common):
    super().__init__(**common)
    self.n_estimators = int(n_estimators)
    self.max_depth = max_depth
    self.min_samples_leaf = int(min_samples_leaf)

  def make_estimator(self):
    return ensemble.RandomForestClassifier(n_estimators=self.n_estimators, max_depth=self.max_depth,
                                           min_samples_leaf=self.min_samples_leaf, random_state=self.seed)


@ATTACKS.register("sklearn_logreg")
class SklearnLogRegAttack(_SklearnAttack):
  def __init__(self, *, C: float = 1.0, max_iter: int = 1000, **common):  # noqa: N803
    super().__init__(**common)
    self.C = float(C)
    self.max_iter = int(max_iter)

  def make_estimator(self):
    return linear_model.LogisticRegression(C=self.C, max_iter=self.max_iter, random_state=self.seed)
