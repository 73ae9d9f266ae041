"""Uncertainty sampling and the queue order it produces, and the cold start's diverse order
before any model exists (numpy only).

Each position in the queue carries a reason code (REASONS; annotation.models.PriorityReason
names the same codes): cold_start (the most typical text of a cluster of the pool), random
(cold start, after the cluster picks), uncertainty, diversity (uncertain and unlike the texts
picked just before it), qc (a random pick for quality control), gold (a gold text for QC).
"""

from __future__ import annotations

import numpy as np

STRATEGIES = ("margin", "entropy", "random")
REASONS = ("cold_start", "random", "uncertainty", "diversity", "qc", "gold")
# The product's settings, here so that the worker and the benchmarks share them: of the
# queue's first positions after a model, this share goes to diversity (queue_order); the cold
# start clusters at most COLD_START_CANDIDATES texts, a few clusters per label (cluster_count).
DIVERSITY_SHARE = 0.1
COLD_START_CANDIDATES = 3000
CLUSTERS_PER_LABEL = 3
MIN_CLUSTERS, MAX_CLUSTERS = 4, 64


def cluster_count(n_labels: int, n_candidates: int) -> int:
    """A few clusters per label (a class may have several modes), never more than a quarter of
    the candidates."""
    k = min(MAX_CLUSTERS, max(MIN_CLUSTERS, CLUSTERS_PER_LABEL * n_labels))
    return max(1, min(k, n_candidates // 4 or 1))


def uncertainty(probs: np.ndarray, strategy: str, rng: np.random.Generator | None = None) -> np.ndarray:
    """Higher = more worth labeling. margin: 1 - (p1 - p2); entropy: -sum p log p; random."""
    n = len(probs)
    if strategy == "random":
        return (rng or np.random.default_rng(0)).random(n)
    if n == 0:
        return np.zeros(0)
    if strategy == "margin":
        if probs.shape[1] < 2:
            return np.zeros(n)
        top2 = np.partition(probs, -2, axis=1)[:, -2:]
        return 1.0 - (top2[:, 1] - top2[:, 0])
    if strategy == "entropy":
        p = np.clip(probs, 1e-12, 1.0)
        return -(p * np.log(p)).sum(axis=1)
    raise ValueError(f"Unknown sampling strategy {strategy!r}; use one of {', '.join(STRATEGIES)}.")


def queue_priorities(
    scores: np.ndarray,
    *,
    qc_share: float,
    rng: np.random.Generator,
    qc_candidates: np.ndarray | None = None,
) -> np.ndarray:
    """The priorities of `queue_order` without diversity (and without the reasons)."""
    return queue_order(scores, qc_share=qc_share, rng=rng, qc_candidates=qc_candidates)[0]


def queue_order(
    scores: np.ndarray,
    *,
    qc_share: float,
    rng: np.random.Generator,
    qc_candidates: np.ndarray | None = None,
    vectors=None,
    diversity_share: float = 0.0,
    head: int = 256,
    window: int = 32,
    max_similarity: float = 0.95,
) -> tuple[np.ndarray, np.ndarray]:
    """Turn uncertainty scores into queue priorities in (0, 1], with QC picks interleaved, and
    the reason of each position.

    Positions are filled in order; every 1/qc_share-th position goes to a quality-control pick
    (a random example, or one from `qc_candidates`, e.g. gold items, when given) and the rest to
    the most uncertain examples not yet placed. Priority = 1 - position / n, so the queue's
    `-priority` order walks this list. Returns (priorities, reasons), index-aligned with scores.

    With `vectors` (a function: indices -> L2-normalised feature rows), the first `head`
    positions are kept diverse, so a batch is not ten near-duplicates: an uncertain example
    whose cosine similarity to one already placed exceeds `max_similarity` waits until after
    the head, and every 1/diversity_share-th position goes to the example, among the next
    `window` most uncertain, least similar to those already placed ("diversity").
    """
    n = len(scores)
    priorities = np.zeros(n, dtype=np.float64)
    reasons = np.full(n, "", dtype=object)
    if n == 0:
        return priorities, reasons
    by_uncertainty = np.argsort(-scores, kind="stable")
    qc_pool = rng.permutation(n)
    is_gold = np.zeros(n, dtype=bool)
    if qc_candidates is not None and len(qc_candidates):
        gold = rng.permutation(np.asarray(qc_candidates, dtype=np.int64))
        is_gold[gold] = True
        # alternate gold and random picks in the QC slots
        mixed = np.empty(len(gold) + n, dtype=np.int64)
        m = min(len(gold), n)
        mixed[: 2 * m : 2], mixed[1 : 2 * m : 2] = gold[:m], qc_pool[:m]
        mixed[2 * m :] = np.concatenate([gold[m:], qc_pool[m:]])
        qc_pool = mixed
    every = int(round(1.0 / qc_share)) if qc_share > 0 else 0
    diverse = _Diversity(vectors, by_uncertainty, head, window, max_similarity) if vectors is not None else None
    every_div = int(round(1.0 / diversity_share)) if diversity_share > 0 and diverse is not None else 0
    placed = np.zeros(n, dtype=bool)
    u, q, pos = 0, 0, 0
    while pos < n:
        take_qc = every > 0 and pos % every == every - 1
        idx, reason = -1, "uncertainty"
        if take_qc:
            while q < len(qc_pool) and placed[qc_pool[q]]:
                q += 1
            if q < len(qc_pool):
                idx = qc_pool[q]
                reason = "gold" if is_gold[idx] else "qc"
        if idx < 0:
            while placed[by_uncertainty[u]]:
                u += 1
            idx = by_uncertainty[u]
            if diverse is not None and pos < head:
                if every_div and pos % every_div == max(every_div // 2 - 1, 0):  # mid-way between QC slots
                    idx, reason = diverse.farthest(u, placed), "diversity"
                else:
                    idx = diverse.first_unlike(u, placed)
        placed[idx] = True
        priorities[idx] = 1.0 - pos / n
        reasons[idx] = reason
        if diverse is not None and pos < head:
            diverse.add(idx)
        pos += 1
    return priorities, reasons


class _Diversity:
    """The head of the queue's similarity bookkeeping: feature rows of the most uncertain
    candidates only (a few hundred), and each one's highest similarity to those placed."""

    def __init__(self, vectors, by_uncertainty, head, window, max_similarity):
        m = min(len(by_uncertainty), 2 * head + window)
        self.candidates = by_uncertainty[:m]
        self.rows = np.asarray(vectors(self.candidates), dtype=np.float32)
        self.row_of = {int(i): r for r, i in enumerate(self.candidates)}
        self.nearest = np.full(m, -np.inf, dtype=np.float32)
        self.by_uncertainty, self.window, self.max_similarity = by_uncertainty, window, max_similarity

    def add(self, idx) -> None:
        r = self.row_of.get(int(idx))
        if r is not None:
            np.maximum(self.nearest, self.rows @ self.rows[r], out=self.nearest)

    def _open(self, u, placed, limit):
        """Rows (into the candidates) of the unplaced candidates from walk position u on."""
        ahead = np.arange(u, min(len(self.candidates), u + limit))
        return ahead[~placed[self.candidates[ahead]]]

    def first_unlike(self, u, placed) -> int:
        """The most uncertain open example not a near-duplicate of one placed (else the first)."""
        rows = self._open(u, placed, len(self.candidates))
        if not len(rows):
            return int(self.by_uncertainty[u])
        unlike = rows[self.nearest[rows] <= self.max_similarity]
        return int(self.candidates[unlike[0] if len(unlike) else rows[0]])

    def farthest(self, u, placed) -> int:
        """Among the next `window` open uncertain examples, the least similar to those placed."""
        rows = self._open(u, placed, self.window * 4)[: self.window]
        if not len(rows):
            return int(self.by_uncertainty[u])
        return int(self.candidates[rows[np.argmin(self.nearest[rows])]])


# --- the cold start: a diverse sample before any model --------------------------------------


def hashed_vectors(ids: np.ndarray, offsets: np.ndarray, dim: int = 512) -> np.ndarray:
    """Dense, L2-normalised vectors of hashed n-gram ids (HashedFeatures): each document's
    distinct n-grams weighted by their inverse document frequency within these documents, then
    hashed with a sign into `dim` columns (the hashing trick again), so that cosine similarity
    is roughly a TF-IDF one. [n, dim] float32."""
    n = len(offsets) - 1
    out = np.zeros((n, dim), dtype=np.float32)
    if n == 0 or not len(ids):
        return out
    ids = np.asarray(ids, dtype=np.int64)
    doc = np.repeat(np.arange(n, dtype=np.int64), np.diff(offsets))
    base = int(ids.max()) + 1
    pairs = np.unique(doc * base + ids)  # distinct (document, n-gram)
    docs, grams = pairs // base, pairs % base
    _, inverse, df = np.unique(grams, return_inverse=True, return_counts=True)
    weight = (np.log((1.0 + n) / (1.0 + df)) + 1.0)[inverse]
    mixed = (grams * 2654435761) & 0xFFFFFFFF
    columns = mixed % dim
    signs = np.where((mixed >> 20) & 1, 1.0, -1.0)
    np.add.at(out, (docs, columns), (signs * weight).astype(np.float32))
    return normalize_rows(out)


def normalize_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def kmeans(x: np.ndarray, k: int, rng: np.random.Generator, iterations: int = 25) -> np.ndarray:
    """Cluster index of each row: k-means++ seeding, then Lloyd iterations (squared
    Euclidean distance; on L2-normalised rows, the same order as cosine)."""
    n = len(x)
    k = max(1, min(k, n))
    sq = (x * x).sum(1)
    centers = [int(rng.integers(n))]
    nearest = np.maximum(sq + sq[centers[0]] - 2 * x @ x[centers[0]], 0)
    for _ in range(1, k):
        total = nearest.sum()
        pick = int(rng.choice(n, p=nearest / total)) if total > 0 else int(rng.integers(n))
        centers.append(pick)
        nearest = np.minimum(nearest, np.maximum(sq + sq[pick] - 2 * x @ x[pick], 0))
    c = x[centers].astype(np.float64)
    assign = np.full(n, -1)
    for _ in range(iterations):
        dist = sq[:, None] + (c * c).sum(1)[None, :] - 2 * x @ c.T
        new = dist.argmin(1)
        if np.array_equal(new, assign):
            break
        assign = new
        for j in range(k):
            members = x[assign == j]
            if len(members):
                c[j] = members.mean(0)
    return assign


def typicality(x: np.ndarray, neighbours: int = 20) -> np.ndarray:
    """TypiClust's typicality: the inverse of the mean distance to the nearest neighbours."""
    n = len(x)
    if n < 2:
        return np.ones(n)
    kk = min(neighbours, n - 1)
    sq = (x * x).sum(1)
    dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0))
    np.fill_diagonal(dist, np.inf)
    near = np.partition(dist, kk - 1, axis=1)[:, :kk]
    return 1.0 / (near.mean(1) + 1e-9)


def cold_start_order(x: np.ndarray, n_clusters: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A "typical and diverse" order of the rows of `x` (TypiClust, Hacohen et al., ICML 2022):
    cluster them, rank each cluster's members by typicality, then take the most typical member
    of every cluster (largest clusters first), then every cluster's second, and so on. The
    first n_clusters positions cover every cluster, whatever order the rows came in.
    Returns (order: row indices, cluster of each row)."""
    n = len(x)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    clusters = kmeans(x, n_clusters, rng)
    typical = typicality(x)
    members = [np.flatnonzero(clusters == j) for j in np.unique(clusters)]
    members = [m[np.argsort(-typical[m], kind="stable")] for m in members]
    members.sort(key=len, reverse=True)
    order = [m[r] for r in range(max(len(m) for m in members)) for m in members if r < len(m)]
    return np.asarray(order, dtype=np.int64), clusters
