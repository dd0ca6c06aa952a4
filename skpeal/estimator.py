"""CLIPAdapterClassifier: the scikit-learn contract over an adapted open_clip model."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

from ._params import check_adapter_file as _check_adapter_file
from ._params import check_params as _check_params
from ._runtime import (
    auto_batch_size,
    autocast_dtype,
    cuda_devices,
    loadable_device,
)
from ._spec import FitSpec
from ._validation import check_label_values, seed_from
from ._version import __version__
from .adapters._registry import portable_kind, restore_kind
from .backbones import load_backbone
from .features import get_feature_cache
from .features.encoder import ImageEncoder
from .features.keys import feature_space
from .images import Preprocessor, check_images
from .nn import AdaptedCLIP, predict_logits, train

__all__ = ["CLIPAdapterClassifier"]


class CLIPAdapterClassifier(ClassifierMixin, BaseEstimator):
    """Image classifier over an open_clip model tuned by prompt vectors or LoRA.

    The backbone stays frozen; only the adapter is trained (CoOp context vectors, or
    LoRA weights through peft), with cross-entropy plus, optionally, the differentiable
    uncertainty-calibration loss that makes the model's entropy high where it is wrong
    (Narayanan et al., IJCNN 2025). Class scores are scaled cosine similarities between
    image features and class text features.

    Parameters
    ----------
    model : str or path-like, default="ViT-B-32"
        Backbone: an open_clip model name, a name registered in
        :mod:`skpeal.backbones` (``"skpeal-tiny"`` is a tiny random model for tests),
        an open_clip ``hf-hub:``/``local-dir:`` name, a local folder, or a model-config
        JSON file. See :func:`skpeal.backbones.load_backbone`.
    pretrained : str, path-like or None, default="default"
        ``"default"``: the backbone's own weights (the ``"openai"`` tag for OpenAI CLIP
        names, the package-shipped weights of the offline ``"effnet-lite0-minilm"``,
        open_clip's first listed tag for other names; see
        :func:`skpeal.backbones.resolve_pretrained`). Else an open_clip pretrained tag,
        a local weights file, or None for random weights (open_clip names).
    classes : array-like or None, default=None
        The full list of labels. Given, ``classes_`` is ``np.unique(classes)`` whatever
        labels ``y`` holds, so classes without a label yet can still be predicted (the
        usual case early in active learning). None: the labels seen in ``y``.
    classnames : dict, list of str or None, default=None
        Text of each class: a mapping ``label -> text``, or a list aligned with
        ``classes`` (or, when ``classes`` is None, with the sorted labels). None uses
        ``str(label)`` with underscores replaced by spaces.
    templates : list of str or None, default=None
        Prompt templates with one ``{}`` for the class text, averaged for zero-shot
        scores and used by the LoRA adapter. None means ``["a photo of a {}."]``.
    adapter : {"prompt", "lora", "prompt+lora"} or str, default="prompt"
        What is trained: CoOp context vectors, LoRA weights, or both together (the
        context vectors then feed the LoRA-adapted text tower; one optimiser, one loss),
        or any kind registered with :func:`skpeal.adapters.register_adapter`.
    adapter_params : dict or None, default=None
        Options of a registered adapter that has them (``{option: value}``, checked at
        ``fit``; missing ones take its defaults). The built-in adapters take none.
    n_ctx : int, default=16
        Prompt adapter: number of learned context vectors (replaced by the token count
        of ``ctx_init`` when that is given).
    ctx_init : str or None, default=None
        Prompt adapter: words to initialise the context from (e.g. ``"a photo of a"``);
        None draws the vectors from N(0, 0.02).
    class_specific : bool, default=True
        Prompt adapter: one context per class (True), each drawn on its own, or one
        shared context.
    class_token_position : {"end", "middle", "front"}, default="end"
        Prompt adapter: where the class name sits among the context vectors, as in CoOp
        (after them, between their halves, or before them).
    lora_r : int, default=4
        LoRA rank.
    lora_alpha : float, default=4.0
        LoRA scale numerator; the update is scaled by ``lora_alpha / sqrt(lora_r)``.
    lora_dropout : float, default=0.25
        Dropout on the LoRA input during training.
    lora_towers : {"both", "vision", "text"}, default="both"
        Towers that get LoRA adapters.
    lora_targets : str or list of str, default="attention"
        Which layers of those towers: ``"attention"`` (independent adapters on the q, k
        and v projections of every attention block, as the paper's authors), ``"out"``
        (attention output), ``"mlp"``, or groups joined by ``"+"``
        (``"attention+out+mlp"``); a list holds module-name regular expressions. Towers
        without attention layers (the offline backbone's convolutional image tower) use
        the backbone's own targets. See :func:`skpeal.adapters.resolve_lora_targets`.
    calibration : {"balanced", "sum", "effective"} or None, default="balanced"
        How the calibration terms of correct and incorrect samples combine; None
        trains with cross-entropy only. See :func:`skpeal.losses.calibration_loss`.
    calibration_beta : float, default=0.999
        ``calibration="effective"``: the effective-number ``beta`` in ``[0, 1)``; group
        weights are ``(1 - beta) / (1 - beta ** n_group)``, normalised.
    calibration_weight : float, default=1.0
        Weight (lambda) of the calibration term, reached at the end of training.
    calibration_warmup : float or None, default=0.1
        Fraction of training over which the weight warms up before rising linearly to
        ``calibration_weight``; None or 0 keeps the weight constant. See
        :func:`skpeal.losses.calibration_weight_at`.
    max_epochs : int, default=10
        Training epochs. 0 trains nothing: ``fit`` prepares the frozen model and
        ``predict_proba`` gives zero-shot probabilities over ``classes_``.
    batch_size : int, default=32
        Training batch size.
    lr : float, default=0.01
        Peak learning rate. The authors' code uses 0.002 (with CoOp's and PCB's much
        longer schedules); with 10 epochs on few labels 0.01 is measured better (see the
        "prompt or LoRA" guide).
    optimizer : {"sgd", "adamw"}, default="sgd"
        SGD uses momentum 0.9.
    weight_decay : float, default=5e-4
        Weight decay of the optimiser.
    warmup_epochs : int, default=1
        Linear learning-rate warm-up, then a cosine decay to 0 over the remaining steps.
    augment : bool, default=False
        Random resized crop (area ``augment_scale``) and horizontal flip at the model's
        input size.
        With a trained image tower (LoRA on the vision tower) every epoch draws fresh
        crops; with a frozen one each image has ``augment_views`` fixed views (see there).
    augment_views : int, default=4
        Frozen image tower with ``augment=True``: number of augmented views per image.
        View ``v`` of an image is a crop and flip seeded by the image's content and
        ``v`` alone, so it is the same in every fit and round and is encoded once (and
        cached); each epoch trains on one view per image, drawn with ``random_state``.
        Ignored otherwise.
    augment_scale : tuple of float, default=(0.5, 1.0)
        ``augment=True``: the range ``(low, high)`` of a crop's area as a fraction of the
        image, ``0 < low <= high <= 1``. The authors' code uses torchvision's default
        ``(0.08, 1.0)``.
    feature_cache : bool, default=True
        Frozen image tower (prompt adapter, or ``lora_towers="text"``): keep image
        features in the process-wide cache of :mod:`skpeal.features`, so every image is
        encoded once for all epochs, fits, predictions and active-learning rounds, also
        across :func:`~sklearn.base.clone`. Entries are keyed by the image content and
        the backbone, its weights and preprocessing, so they are never stale; the cache's
        memory is bounded (``skpeal.features.get_feature_cache().max_bytes``, default 1 GiB).
        False encodes images whenever they are needed (every epoch, every call), as
        reference implementations do; results are the same, only slower. Ignored when
        the image tower is trained.
    predict_batch_size : int or "auto", default="auto"
        Batch size of inference (``predict_proba``, ``embed``, feature encoding).
        ``"auto"``: 256 images on a GPU; on the CPU about 200,000 pixels (16 images of
        112 px, 4 of 224 px), which is faster there than large batches (their
        intermediate tensors are too large for the memory allocator to reuse, so every
        batch page-faults them in afresh) and keeps memory small.
    num_workers : int or None, default=None
        Worker processes that decode image files during inference and feature encoding
        (a :class:`torch.utils.data.DataLoader`); None: when more than two batches of
        files are read, as many as there are cores the model's compute leaves free (on the
        CPU: cores beyond torch's threads, so none on a 2-core machine; with a GPU: all
        cores but one), at most 4; else 0. In-memory inputs never use workers.
    device : str, default="auto"
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or
        ``"cuda:N"``.
    precision : {"auto", "fp32", "bf16", "fp16"}, default="auto"
        ``"auto"``: bf16 autocast on CUDA devices that support it, else fp16 (with
        gradient scaling); always fp32 on the CPU.
    random_state : int, numpy Generator/RandomState or None, default=None
        Seeds adapter initialisation, shuffling, augmentation and dropout. The global
        torch and numpy random states are left as they were.
    warm_start : bool, default=False
        When True, ``fit`` starts from the adapter of the previous fit (if there is one
        with the same classes and adapter structure) instead of a fresh adapter; the
        paper's protocol starts afresh every round.
    verbose : int, default=0
        > 0 shows a tqdm progress bar over epochs.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels, the column order of :meth:`predict_proba`.
    model_ : torch.nn.Module
        The backbone with its adapter (``skpeal.nn.AdaptedCLIP``).
    history_ : list of dict
        Per epoch: ``epoch``, ``loss``, ``ce``, ``calibration``, ``calibration_weight``,
        ``train_accuracy``, ``lr``, ``time`` (seconds). Empty for zero-shot fits.
    device_ : torch.device
        Where the model lives.
    n_trainable_params_ : int
        Number of adapter parameters.

    See Also
    --------
    skpeal.strategies : Query strategies for modAL's ``ActiveLearner``.

    Notes
    -----
    Pickling (``pickle``, ``joblib``) stores the backbone description and the adapter
    weights, not the backbone; loading rebuilds the backbone (from the local cache or
    file it came from) on the CPU when no GPU is present. Loading a pickle runs code from
    it: load only your own. For files from others use :meth:`save_adapter` /
    :meth:`load_adapter` (safetensors: nothing is unpickled, the metadata is validated).

    Examples
    --------
    >>> import numpy as np
    >>> from skpeal import CLIPAdapterClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.integers(0, 256, size=(8, 32, 32, 3), dtype=np.uint8)
    >>> y = ["cat", "dog"] * 4
    >>> clf = CLIPAdapterClassifier(model="skpeal-tiny", pretrained=None, n_ctx=4,
    ...                             max_epochs=1, random_state=0).fit(X, y)
    >>> clf.predict_proba(X).shape
    (8, 2)
    >>> list(clf.classes_)
    ['cat', 'dog']
    """

    def __init__(
        self,
        *,
        model="ViT-B-32",
        pretrained="default",
        classes=None,
        classnames=None,
        templates=None,
        adapter="prompt",
        adapter_params=None,
        n_ctx=16,
        ctx_init=None,
        class_specific=True,
        class_token_position="end",
        lora_r=4,
        lora_alpha=4.0,
        lora_dropout=0.25,
        lora_towers="both",
        lora_targets="attention",
        calibration="balanced",
        calibration_beta=0.999,
        calibration_weight=1.0,
        calibration_warmup=0.1,
        max_epochs=10,
        batch_size=32,
        lr=0.01,
        optimizer="sgd",
        weight_decay=5e-4,
        warmup_epochs=1,
        augment=False,
        augment_views=4,
        augment_scale=(0.5, 1.0),
        feature_cache=True,
        predict_batch_size="auto",
        num_workers=None,
        device="auto",
        precision="auto",
        random_state=None,
        warm_start=False,
        verbose=0,
    ):
        self.model = model
        self.pretrained = pretrained
        self.classes = classes
        self.classnames = classnames
        self.templates = templates
        self.adapter = adapter
        self.adapter_params = adapter_params
        self.n_ctx = n_ctx
        self.ctx_init = ctx_init
        self.class_specific = class_specific
        self.class_token_position = class_token_position
        self.lora_r = lora_r
        self.lora_alpha = lora_alpha
        self.lora_dropout = lora_dropout
        self.lora_towers = lora_towers
        self.lora_targets = lora_targets
        self.calibration = calibration
        self.calibration_beta = calibration_beta
        self.calibration_weight = calibration_weight
        self.calibration_warmup = calibration_warmup
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.warmup_epochs = warmup_epochs
        self.augment = augment
        self.augment_views = augment_views
        self.augment_scale = augment_scale
        self.feature_cache = feature_cache
        self.predict_batch_size = predict_batch_size
        self.num_workers = num_workers
        self.device = device
        self.precision = precision
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose

    # ------------------------------------------------------------------ validation
    def _validated_params(self) -> dict:
        """``get_params()`` checked (``skpeal._params.PARAM_CHECKS``), values normalised."""
        return _check_params(self.get_params())

    def _resolve_classes(self, y):
        """classes_ and the text of each class, validated against y."""
        if self.classes is not None:
            check_label_values(self.classes, "classes")
            given = np.asarray(self.classes)
            if given.ndim != 1 or given.size == 0:
                raise ValueError(
                    f"classes must be a non-empty 1-D list of labels, got {self.classes!r}"
                )
            classes = np.unique(given)
            if classes.size != given.size:
                raise ValueError("classes contains duplicate labels")
            if y is not None:
                unknown = np.setdiff1d(np.unique(y), classes)
                if unknown.size:
                    raise ValueError(
                        f"y contains labels that are not in classes: {unknown[:10].tolist()}"
                    )
            order = list(given)
        else:
            classes = np.unique(y)
            order = list(classes)
        if classes.size < 2:
            raise ValueError(
                f"y holds a single class ({_plain(classes[0])!r}); a classifier needs at least "
                "two. "
                "Pass the full label set as classes=[...] to fit on fewer."
            )
        cn = self.classnames
        if cn is None:
            names = {c: str(c).replace("_", " ") for c in classes}
        elif isinstance(cn, Mapping):
            missing = [c for c in classes if c not in cn]
            if missing:
                raise ValueError(f"classnames has no text for classes {missing[:10]}")
            names = {c: str(cn[c]) for c in classes}
        else:
            cn = list(cn)
            if len(cn) != len(order):
                raise ValueError(
                    f"classnames has {len(cn)} entries but there are {len(order)} classes"
                )
            names = {c: str(t) for c, t in zip(order, cn)}
        return classes, [names[c] for c in classes]

    # ------------------------------------------------------------------ building
    @staticmethod
    def _build(spec: FitSpec):
        backbone = load_backbone(spec.model, spec.pretrained, shared=True)  # frozen weights reused
        gen = torch.Generator().manual_seed(spec.seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(spec.seed)  # peft draws LoRA weights from the global RNG
            module = AdaptedCLIP(backbone, list(spec.classnames), list(spec.templates),
                                 spec.adapter.kind, spec.adapter, gen)
        pre = Preprocessor(backbone.image_size, backbone.mean, backbone.std,
                           backbone.interpolation, backbone.resize_mode)
        return module.to(spec.runtime.device), pre, gen

    # ------------------------------------------------------------------ sklearn API
    def fit(self, X, y=None):
        """Train the adapter on labelled images (a fresh adapter every call).

        Parameters
        ----------
        X : array-like, torch.Tensor or sequence of paths / PIL images
            Images: an array ``(n, H, W[, C])`` (uint8 in [0, 255] or floats in [0, 1]),
            a tensor ``(n, C, H, W)``, or a sequence of file paths, PIL images or arrays.
        y : array-like of shape (n_samples,) or None
            Labels, any hashable values (str, int, ...). None is allowed only with
            ``max_epochs=0`` and ``classes`` given: a zero-shot model with no label at
            all, e.g. to drive the first round of active learning.

        Returns
        -------
        self : CLIPAdapterClassifier
            The fitted estimator.
        """
        params = self._validated_params()
        source = check_images(X)
        if y is None:
            if params["max_epochs"] != 0 or self.classes is None:
                raise ValueError(
                    "y is None: fitting without labels needs max_epochs=0 and classes=[...] "
                    "(a zero-shot model)"
                )
        else:
            check_label_values(y, "y")
            y = column_or_1d(y, warn=True)
            if len(y) != len(source):
                raise ValueError(f"X has {len(source)} images but y has {len(y)} labels")
            check_classification_targets(y)
        classes, classnames = self._resolve_classes(y)
        spec = FitSpec.from_params(params, seed=seed_from(self.random_state),
                                   classnames=classnames)
        module, pre, gen = self._build(spec)
        if spec.warm_start and self._can_warm_start(spec, classes):
            module.load_adapter_state_dict(self.model_.adapter_state_dict())
            module.zero_shot = self.model_.zero_shot
        device = spec.runtime.device
        dtype = autocast_dtype(device, spec.runtime.precision)
        history = []
        if y is not None and spec.train.max_epochs > 0:
            y_idx = np.searchsorted(classes, y)
            progress = _progress_bar(spec)
            with torch.random.fork_rng(devices=cuda_devices(device)):
                torch.manual_seed(spec.seed)  # LoRA dropout
                try:
                    history = train(module, source, y_idx, pre, spec=spec.train,
                                    reuse_features=spec.runtime.feature_cache, device=device,
                                    dtype=dtype, generator=gen,
                                    encoder=_encoder(module, pre, spec), progress=progress)
                finally:
                    if progress is not None:
                        progress.close()
        self.classes_ = classes
        self.model_ = module
        self.history_ = history
        self.device_ = device
        self.n_trainable_params_ = sum(p.numel() for p in module.adapter_parameters())
        self._fit_spec = spec
        self._preprocess = pre
        return self

    def _can_warm_start(self, spec: FitSpec, classes) -> bool:
        """A previous fit exists with the same classes and adapter structure."""
        prev = getattr(self, "_fit_spec", None)
        if getattr(self, "model_", None) is None or prev is None:
            return False
        return (np.array_equal(self.classes_, classes) and prev.structure() == spec.structure()
                and prev.classnames == spec.classnames)

    def _predict_logits(self, X, features=True):
        check_is_fitted(self, "model_")
        source = check_images(X)
        encoder = _encoder(self.model_, self._preprocess, self._fit_spec)
        logits, feats = predict_logits(self.model_, source, encoder, return_features=features)
        bad = ~torch.isfinite(logits).all(dim=1)
        if bad.any():
            t = self._fit_spec.train
            raise FloatingPointError(
                f"the model gives non-finite class scores for {int(bad.sum())} of {len(bad)} "
                f"images: its training diverged; refit with a lower lr (now {t.lr:g})"
                + (f" or calibration_weight (now {t.calibration_weight:g})"
                   if t.calibration is not None else "")
            )
        return logits, feats

    def predict_proba_embed(self, X):
        """Class probabilities and image features from one pass over ``X``.

        Parameters
        ----------
        X : array-like, torch.Tensor or sequence of paths / PIL images
            Images, in any form :meth:`fit` accepts.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes), float64
            Class probabilities, columns in ``classes_`` order.
        features : ndarray of shape (n_samples, n_features), float64
            L2-normalised image features of the current model.
        """
        logits, feats = self._predict_logits(X)
        proba = torch.softmax(logits.double(), dim=1).numpy()
        return proba, feats.double().numpy()

    def predict_proba(self, X):
        """Class probabilities, columns in ``classes_`` order.

        Parameters
        ----------
        X : array-like, torch.Tensor or sequence of paths / PIL images
            Images, in any form :meth:`fit` accepts.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes), float64
            Rows sum to 1.
        """
        logits, _ = self._predict_logits(X, features=False)
        return torch.softmax(logits.double(), dim=1).numpy()

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba` (computed stably from the logits).

        Parameters
        ----------
        X : array-like, torch.Tensor or sequence of paths / PIL images
            Images, in any form :meth:`fit` accepts.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes), float64
            Log-probabilities, columns in ``classes_`` order.
        """
        logits, _ = self._predict_logits(X, features=False)
        return torch.log_softmax(logits.double(), dim=1).numpy()

    def predict(self, X):
        """Most probable label of each image.

        Parameters
        ----------
        X : array-like, torch.Tensor or sequence of paths / PIL images
            Images, in any form :meth:`fit` accepts.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Labels from ``classes_``.
        """
        logits, _ = self._predict_logits(X, features=False)
        return self.classes_[logits.argmax(dim=1).numpy()]

    def embed(self, X):
        """L2-normalised image features of the current model.

        Parameters
        ----------
        X : array-like, torch.Tensor or sequence of paths / PIL images
            Images, in any form :meth:`fit` accepts.

        Returns
        -------
        features : ndarray of shape (n_samples, n_features), float64
            One row per image, unit length.
        """
        return self.predict_proba_embed(X)[1]

    # ------------------------------------------------------------------ persistence
    def __getstate__(self):
        state = self.__dict__.copy()
        module = state.pop("model_", None)
        state.pop("_preprocess", None)
        if module is not None:
            state["_adapter_state"] = module.adapter_state_dict()
            state["_zero_shot"] = module.zero_shot
        state.pop("device_", None)
        state["_skpeal_version"] = __version__
        if "_fit_spec" in state:  # an adapter registered outside skpeal travels with it
            state["_adapter_kind"] = portable_kind(state["_fit_spec"].adapter.kind)
        return state

    def __setstate__(self, state):
        adapter_state = state.pop("_adapter_state", None)
        zero_shot = state.pop("_zero_shot", True)
        state.pop("_skpeal_version", None)
        restore_kind(state.pop("_adapter_kind", None))  # before the adapter is rebuilt
        old = state.pop("_fit_params", None)  # written by skpeal 0.1.0: a dict of params
        if old is not None:
            # parameters added since (their values then: the only behaviour there was)
            old = {"class_token_position": "end", "calibration_beta": 0.999,
                   "adapter_params": {}, **old}
            state["_fit_spec"] = FitSpec.from_params(old, seed=old["_seed"],
                                                     classnames=old["_classnames"])
        self.__dict__.update(state)
        if adapter_state is not None:
            spec = self._fit_spec
            self._restore(spec.on_device(loadable_device(spec.runtime.device)), adapter_state,
                          zero_shot)

    def _restore(self, spec: FitSpec, adapter_state, zero_shot):
        module, pre, _ = self._build(spec)
        module.load_adapter_state_dict(adapter_state)
        module.zero_shot = zero_shot
        self.model_ = module
        self._preprocess = pre
        self.device_ = spec.runtime.device
        self._fit_spec = spec

    def save_adapter(self, path):
        """Save the adapter weights and what is needed to rebuild them (safetensors).

        The file holds only the adapter tensors plus, as metadata, the backbone
        description, the adapter parameters and ``classes_``; never the backbone.

        Parameters
        ----------
        path : str or path-like
            The safetensors file.
        """
        check_is_fitted(self, "model_")
        spec = self._fit_spec
        classes = self.classes_.tolist()
        meta = {
            "skpeal_version": __version__,
            "params": spec.structure(),
            "classes": classes,
            "classnames": list(spec.classnames),
            "zero_shot": self.model_.zero_shot,
        }
        try:
            text = json.dumps(meta)
        except TypeError as exc:
            raise TypeError(
                f"cannot save an adapter whose labels or params are not JSON values ({exc}); "
                "use pickle/joblib instead"
            ) from None
        save_file(self.model_.adapter_state_dict(), os.fspath(path), metadata={"skpeal": text})

    def load_adapter(self, path):
        """Load an adapter saved by :meth:`save_adapter` into this estimator.

        The estimator's parameters that shape the adapter (``model``, ``pretrained``,
        ``adapter``, ``n_ctx``, ``lora_*``, ...) must equal those in the file;
        ``classes_`` is taken from the file. Only safetensors files are read: nothing
        is unpickled, so this is the way to load files from others. The metadata is
        validated (structure, types, classes and classnames against the tensors) and
        non-finite weights are refused before anything is used.

        Parameters
        ----------
        path : str or path-like
            The safetensors file.

        Returns
        -------
        self : CLIPAdapterClassifier
            The fitted estimator.

        Raises
        ------
        ValueError
            The file is not an skpeal adapter file, a metadata field is missing or wrong
            (named), a tensor is non-finite, not floating point or does not fit, or the
            file was saved with other structural parameters.
        """
        try:
            with safe_open(os.fspath(path), framework="pt") as f:
                meta = json.loads((f.metadata() or {})["skpeal"])
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except (KeyError, ValueError, OSError, SafetensorError) as exc:
            raise ValueError(f"{os.fspath(path)!r} is not an skpeal adapter file: {exc}") from None
        _check_adapter_file(meta, tensors, os.fspath(path))
        spec = FitSpec.from_params(self._validated_params(), seed=0,
                                   classnames=meta["classnames"])
        mine = spec.structure()
        diff = {k: (mine[k], v) for k, v in meta["params"].items() if mine.get(k) != v}
        if diff:
            raise ValueError(
                "the adapter file was saved with other parameters: "
                + ", ".join(f"{k}={b!r} (this estimator has {a!r})" for k, (a, b) in diff.items())
            )
        try:
            self._restore(spec, tensors, meta["zero_shot"])
        except ValueError as exc:  # names or shapes that do not fit the rebuilt adapter
            raise ValueError(f"adapter file {os.fspath(path)!r}: {exc}") from None
        self.classes_ = np.asarray(meta["classes"])
        self.history_ = []
        self.n_trainable_params_ = sum(t.numel() for t in tensors.values())
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        tags.non_deterministic = False
        return tags


def _plain(value):
    """A numpy scalar as the Python value it holds (for messages: 'a', not np.str_('a'))."""
    return value.item() if isinstance(value, np.generic) else value


def _encoder(module, preprocess, spec: FitSpec) -> ImageEncoder:
    """The image encoder of a fitted module: through the feature cache when it may be."""
    rt = spec.runtime
    dtype = autocast_dtype(rt.device, rt.precision)
    cache = space = None
    if module.vision_frozen and rt.feature_cache:
        cache = get_feature_cache()
        space = feature_space(module, preprocess, model=spec.model, pretrained=spec.pretrained,
                              device=rt.device, dtype=dtype)
    batch_size = rt.predict_batch_size
    if batch_size == "auto":
        batch_size = auto_batch_size(rt.device, preprocess.image_size)
    return ImageEncoder(module, preprocess, device=rt.device, dtype=dtype, batch_size=batch_size,
                        num_workers=rt.num_workers, cache=cache, space=space,
                        view_scale=spec.train.augment_scale)


def _progress_bar(spec: FitSpec):
    """A tqdm bar over epochs when ``verbose > 0``, else None."""
    if spec.verbose <= 0:
        return None
    from tqdm.auto import tqdm  # only for verbose fits: tqdm.auto probes for notebooks

    return tqdm(total=spec.train.max_epochs, desc="fit", unit="epoch")
