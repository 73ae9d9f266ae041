"""What one worker process keeps in memory between runs, in one object: `worker_cache`.

Immutable data only, so nothing here goes stale: an example's embedding under an encoder key
and its text never change, and a registered version's weights never change (their sha256 is
checked on load). Entries are never invalidated, only dropped with the process, or by
`worker_cache.clear()` (tests, to read back from the store).

Holds the cached embedding matrices (per project and encoder key), the hashed n-gram ids (per
project and bucket count), the frozen MiniLM (per device), fine-tuned encoders (per key and
device), the last few loaded classifiers, and when this worker last rewrote a project's whole
pool (training.pipeline's write pacing). No torch at module level: models load on first use.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
from django.conf import settings

from annotation.models import Example

from .ml import store
from .ml.classifiers import HashedClassifier, HashedFeatures, HeadClassifier
from .ml.encoder import EMBEDDING_DIM, ENCODER_KEY, load_encoder
from .ml.finetune import FineTunedClassifier
from .models import ExampleEmbedding, Loop, ModelKind, ModelVersion
from .runs import TrainingRefused

ENSURE_CHUNK = 10_000
HASH_CHUNK = 5000


class WorkerCache:
    MAX_CLASSIFIERS = 3  # a deep version holds a whole MiniLM

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        """Forget everything (tests; a worker never needs to)."""
        self._embeddings: dict[tuple[int, str], dict] = {}
        self._hashed: dict[tuple[int, int], dict] = {}
        self._frozen_encoders: dict[str, object] = {}
        self._encoders: dict[tuple[str, str], object] = {}
        self._classifiers: OrderedDict[int, object] = OrderedDict()
        self.full_writes: dict[int, float] = {}  # project id -> time.monotonic() of the last full write

    # --- features ---------------------------------------------------------------------

    def embeddings(
        self, project_id: int, encoder_key: str, ensure: list[int] | None = None
    ) -> tuple[dict[int, int], np.ndarray]:
        """{example id: row} and the float32 matrix of the project's cached embeddings, read
        incrementally (rows newer than the last read). Rows committed out of id order by
        parallel chunk tasks are caught by `ensure`: any of those example ids still missing is
        looked up."""
        entry = self._embeddings.setdefault((project_id, encoder_key), {"last": 0, "index": {}, "matrix": None})
        base = ExampleEmbedding.objects.filter(project_id=project_id, encoder_key=encoder_key)
        new = list(base.filter(id__gt=entry["last"]).order_by("id").values_list("id", "example_id", "vector"))
        if new:
            entry["last"] = new[-1][0]
        if ensure is not None:
            missing = [e for e in ensure if e not in entry["index"]]
            seen = {ex for _, ex, _ in new}
            for start in range(0, len(missing), ENSURE_CHUNK):
                chunk = [e for e in missing[start : start + ENSURE_CHUNK] if e not in seen]
                if chunk:
                    new += list(base.filter(example_id__in=chunk).values_list("id", "example_id", "vector"))
        new = [row for row in new if row[1] not in entry["index"]]
        if new:
            block = np.frombuffer(b"".join(bytes(v) for _, _, v in new), dtype=np.float32).reshape(len(new), -1)
            offset = 0 if entry["matrix"] is None else len(entry["matrix"])
            for i, (_, ex, _) in enumerate(new):
                entry["index"][ex] = offset + i
            entry["matrix"] = block.copy() if entry["matrix"] is None else np.vstack([entry["matrix"], block])
        matrix = entry["matrix"] if entry["matrix"] is not None else np.zeros((0, EMBEDDING_DIM), np.float32)
        return entry["index"], matrix

    def hashed_features(self, project_id: int, model: HashedClassifier, example_ids: list[int]) -> HashedFeatures:
        """Hashed n-gram ids of the given examples (texts are read and hashed once per worker)."""
        entry = self._hashed.setdefault((project_id, model.params.buckets, model.params.segmenter), {"rows": {}})
        missing = [e for e in example_ids if e not in entry["rows"]]
        for start in range(0, len(missing), HASH_CHUNK):
            chunk = missing[start : start + HASH_CHUNK]
            texts = dict(Example.objects.filter(pk__in=chunk).values_list("id", "text"))
            feats = model.featurize([texts[e] for e in chunk])
            for i, e in enumerate(chunk):
                entry["rows"][e] = feats.ids[feats.offsets[i] : feats.offsets[i + 1]]
        parts = [entry["rows"][e] for e in example_ids]
        lengths = np.fromiter((len(p) for p in parts), dtype=np.int64, count=len(parts))
        return HashedFeatures(
            ids=np.concatenate(parts) if parts else np.zeros(0, np.int64),
            offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        )

    # --- models -----------------------------------------------------------------------

    def encoder(self, encoder_key: str, device: str):
        """The frozen MiniLM, or the fine-tuned encoder of the deep version that owns the key."""
        if encoder_key == ENCODER_KEY:
            if device not in self._frozen_encoders:  # loading takes a few seconds
                self._frozen_encoders[device] = load_encoder(device)
            return self._frozen_encoders[device]
        if (encoder_key, device) not in self._encoders:
            owner = ModelVersion.objects.filter(loop=Loop.DEEP, encoder_key=encoder_key).order_by("id").first()
            if owner is None:
                raise TrainingRefused(f"No deep model version owns the encoder {encoder_key!r}.")
            self._encoders[(encoder_key, device)] = self.classifier(owner, device=device).encoder
        return self._encoders[(encoder_key, device)]

    def classifier(self, version: ModelVersion, *, device: str = "cpu"):
        """A registered version's classifier, from the model store only (sha256 checked)."""
        if version.pk in self._classifiers:
            self._classifiers.move_to_end(version.pk)
            return self._classifiers[version.pk]
        tensors, meta = store.load_weights(
            store=settings.TALLY_MODEL_STORE, relative=version.weights_path, expected_sha256=version.weights_sha256
        )
        if version.kind == ModelKind.HASHED:
            clf = HashedClassifier.from_state(tensors, meta)
        elif version.kind == ModelKind.MINILM:
            key = version.encoder_key
            clf = HeadClassifier.from_state(tensors, meta, encoder_loader=lambda: self.encoder(key, device))
        else:
            clf = FineTunedClassifier.from_state(tensors, meta, device=device)
        self._classifiers[version.pk] = clf
        while len(self._classifiers) > self.MAX_CLASSIFIERS:
            self._classifiers.popitem(last=False)
        return clf


worker_cache = WorkerCache()
