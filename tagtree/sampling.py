"""Sampling stage: scores + grounding (+ a target's grounding) -> selections, by TAGS.

Objective (reconstruction; the paper gives no formula):

    F(S) = sum_v omega_v * max_{x in S} a(x, v)                  (coverage, facility location)
         + mass_weight * sum_v gamma_v * h(m_S(v))                (mass, h = log1p or sqrt)
         + quality_weight * gamma_leaf * sum_{x in S} q(x)        (quality, modular)
    a(x, v) = (1 - c + c * cent(x, v)) * K(p_x, v)    (p_x: x's primary-path node on v's level)
    gamma_v = level_decay ** (top - level)
    omega_v = gamma_v; on the top level gamma_top * (n_v / mean n) ** top_mass_power
    m_S(v)  = number of selected instances whose primary path runs through v

- cent(x, v) (``path_centrality``, c = ``centrality``): how central x is among the instances
  on v's paths (embedding cosine to their mean, rescaled per node to [0, 1]), so a node is
  covered first by its most representative member, as a k-means medoid covers its cluster
  (on MT-Bench the quality-only tie-break picked atypical members, 0.54x the pool's length);
  c < 0.5 keeps a pick in an uncovered node worth more than any improvement of a covered one.
- K (``node_kernel``, ``kernel_tau`` on the leaves, ``kernel_top_tau`` on the top level): 1
  for a node itself, and ((cos - tau) / (1 - tau))+ to the most similar nodes of its level
  (their instances' mean embeddings), so a topic split over two leaves is covered once before
  the budget goes to it twice (planted set: one pick per subtopic 31 -> 32 of 32), and a budget
  smaller than the top level goes to unlike top nodes first (MT-Bench 10%: 6 -> 8 of 8).

- omega (``coverage_weights``, ``top_mass_power``): a top node's coverage weighs with the
  square root of its share of the pool, so a budget smaller than the top level goes to the
  nodes holding more of it first (MT-Bench over tree seeds 0-7: 3.4 -> 4.0 categories at 5%).

- Each instance counts once per level, on its *primary path* (``primary_paths``: its heaviest
  top-level node, the heaviest child of that, down to a leaf), so a 12-tag instance no longer
  outscores a 2-tag one by touching 12 leaves (the old first-coverage indicator [m > 0] over
  every leaf of every tag made selections 1.5x longer than the pool on average).
- A node's coverage is the best membership w(x, v) (share of x's tags under v) among the picks:
  the most typical instance covers a node, an instance half in two topics covers each half,
  and a second pick in a covered node earns only what it adds in typicality. (Soft mass with
  min(1, m) was tried: a second pick into the same two half-covered nodes then earned as
  much as the first.)
- Top-down at any budget: an instance in an uncovered top-level node also lands in uncovered
  nodes on every level below, so the greedy covers the top level first, then the next one,
  down to the leaves; the mass term keeps spreading once every reachable node is covered.
- Quality is a modular bonus: among instances that cover the same, the better one wins, and
  quality never buys a repeat of a covered node.

Facility location (a max of fixed values a(x, v), whatever K and cent are) and
concave-over-modular terms are monotone submodular, so F is too and greedy keeps (1 - 1/e).
Without instance embeddings both terms are off (c = 0, K = identity).

Length band (``length_band``, ``tagtree.length_balance``): an unaligned selection whose mean
instruction length leaves [1/b, b] x the pool's is repaired after the greedy by the swaps
inside a top-level node that cost F least (after a searched modular length bonus when the drift
is too wide for swaps); MT-Bench's 4-pick budget went from 0.73x to 0.85x with one swap.

Alignment works on the *alignment level*: the lowest level at which the target touches at most
k nodes (``tagtree.align.alignment_level``), or ``align_level`` when set. ``penalty`` maximises
F(S) - lambda' * KL(pi || p_S) on that level's nodes: for a fixed k, -KL(pi || p_S) =
sum_v pi(v) log(m_S(v) + alpha) + const(k), concave-over-modular, so still greedy-friendly;
lambda' = align_lambda * k * sum_l gamma_l; ``align_leaf_weight`` adds a modular bonus for
picks in the target's dense leaves (which member of an aligned node is picked). ``quota`` adds
to the same objective a quota per node of that level from the target's mass by largest
remainder (an instance counts for its heaviest node there); slots no pool instance can fill
are then filled by the greedy without quotas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from tagtree.align import (
    alignment_level,
    largest_remainder,
    level_mass,
    primary_leaves,
    smoothed,
)
from tagtree.greedy import (
    Block,
    Objective,
    lazy_greedy,
    plain_greedy,
    replay_gains,
    stochastic_greedy,
)
from tagtree.hierarchy import KnowledgeTree
from tagtree.length_balance import balance_length, length_ratio
from tagtree.vectors import l1_normalise_rows, l2_normalise_rows

METHODS = ("tags", "random", "instag", "deita", "kcenter", "quality", "kmeans")


def path_centrality(paths: sp.csr_matrix, x: np.ndarray, means: np.ndarray,
                    chunk: int = 65_536) -> sp.csr_matrix:
    """``paths`` with each entry replaced by how central the instance is among the instances
    whose primary path runs through that node: the cosine of its unit embedding (a row of
    ``x``) to the node's mean (``node_means``), rescaled per node to [0, 1] (the node's most
    central member 1, the least 0; a one-member node 1). What a k-means medoid is to its
    cluster, per tree node. Same sparsity pattern as ``paths``."""
    coo = sp.csr_matrix(paths).tocoo()
    cos = np.empty(coo.nnz, dtype=np.float32)
    for lo in range(0, coo.nnz, chunk):  # row-wise dots without an nnz x d temporary
        r, c = coo.row[lo:lo + chunk], coo.col[lo:lo + chunk]
        cos[lo:lo + chunk] = np.einsum("ij,ij->i", x[r], means[c])
    n_nodes = paths.shape[1]
    lo_ = np.full(n_nodes, np.inf, dtype=np.float32)
    hi_ = np.full(n_nodes, -np.inf, dtype=np.float32)
    np.minimum.at(lo_, coo.col, cos)
    np.maximum.at(hi_, coo.col, cos)
    span = (hi_ - lo_)[coo.col]
    val = np.where(span > 1e-6, (cos - lo_[coo.col]) / np.maximum(span, 1e-6), 1.0)
    out = sp.csr_matrix((val.astype(np.float64), (coo.row, coo.col)), shape=paths.shape)
    out.sort_indices()
    return out


def node_means(paths: sp.csr_matrix, x: np.ndarray) -> np.ndarray:
    """(n_nodes x d) normalised mean of the unit embeddings ``x`` of the instances on each
    node's primary paths (zero rows for nodes no path runs through)."""
    p = sp.csr_matrix(paths, dtype=np.float32)
    p.data[:] = 1.0
    return l2_normalise_rows(p.T @ x)


def node_kernel(tree: KnowledgeTree, means: np.ndarray, tau: float,
                neighbours: int = 8, levels: tuple[int, ...] = (0,)) -> sp.csr_matrix:
    """(n_nodes x n_nodes) how much covering a node also covers its most similar nodes of the
    same level: ((cos - tau) / (1 - tau))+ over each node's ``neighbours`` nearest (by the mean
    embedding of their instances), 1 on the diagonal, on the ``levels`` given (default: the
    leaves; the identity elsewhere). Two leaves that split one topic then count as one until
    the other topics are covered. (On every level it cost MMLU two labels at 1%: its upper
    nodes are all exam questions, alike in embedding, and spilled over to each other.)"""
    rows, cols, vals = [], [], []
    for lv in range(tree.depth):
        nodes = tree.nodes_at(lv)
        if lv not in levels:  # other levels: each node covers itself only
            rows.append(nodes)
            cols.append(nodes)
            vals.append(np.ones(len(nodes)))
            continue
        m = means[nodes]
        live = np.linalg.norm(m, axis=1) > 0
        nodes, m = nodes[live], m[live]
        if len(nodes) == 0:
            continue
        kk = min(neighbours + 1, len(nodes))
        if len(nodes) <= 4096:
            sims = m @ m.T
            idx = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
            sim = np.take_along_axis(sims, idx, axis=1)
        else:  # approximate neighbours (IVF) are enough for a kernel, and n^2 is not
            import faiss

            m32 = np.ascontiguousarray(m, np.float32)
            # 2 sqrt(n) lists: training (k-means over every node) is most of the cost, and
            # 50K leaves trained in 1.0 s with 4 sqrt(n); searching 8 larger lists stays cheap.
            nlist = max(1, min(int(2 * math.sqrt(len(m32))), len(m32) // 40))
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(m.shape[1]), m.shape[1], nlist,
                                       faiss.METRIC_INNER_PRODUCT)
            index.cp.seed = 0
            index.train(m32)
            index.add(m32)
            index.nprobe = 8
            sim, idx = index.search(m32, kk)
        val = np.clip((sim - tau) / max(1e-6, 1.0 - tau), 0.0, 1.0)
        src = np.repeat(nodes, kk)
        dst = nodes[idx.ravel()]
        val = np.where(src == dst, 1.0, val.ravel())
        keep = (val > 0) & (idx.ravel() >= 0)
        rows.append(src[keep])
        cols.append(dst[keep])
        vals.append(val[keep])
    n = len(means)
    k = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(n, n))
    k.sum_duplicates()
    k.data = np.minimum(k.data, 1.0)
    return k


def cooccurrence_kernel(leaf_dist: sp.csr_matrix, means: np.ndarray, tau: float,
                        min_cos: float) -> sp.csr_matrix:
    """(n_nodes x n_nodes) leaf-to-leaf coverage from the instances: ((s - tau) / (1 - tau))+
    where s is the cosine of two leaves' columns of ``leaf_dist`` (how much the same instances
    carry tags of both), kept only where the leaves' instance means (``means``) are at least
    ``min_cos`` alike; zero on the diagonal and off the leaves. The tag strings of one subtopic
    can fall into two leaves whose meanings are too far apart for ``node_kernel`` (cosine
    0.50-0.64 on the planted set, under its 0.7) while the same instances carry both: covering
    one then covers the other too. The meaning gate keeps apart unrelated leaves that merely
    share instances (without it MT-Bench lost a category at 10%)."""
    dist = sp.csc_matrix(leaf_dist, dtype=np.float64)
    norms = np.sqrt(np.asarray(dist.multiply(dist).sum(axis=0)).ravel())
    unit = sp.csr_matrix(dist @ sp.diags(1.0 / np.maximum(norms, 1e-12)))
    sim = sp.triu(unit.T @ unit, k=1).tocoo()  # symmetric: each pair once, no diagonal
    strong = sim.data > tau  # few pairs pass: the meaning check is on those only
    r, c = sim.row[strong], sim.col[strong]
    val = (sim.data[strong] - tau) / max(1e-6, 1.0 - tau)
    cos = np.einsum("ij,ij->i", means[r], means[c])
    alike = cos >= min_cos
    r, c, val = r[alike], c[alike], np.minimum(val[alike], 1.0)
    n = len(means)
    return sp.csr_matrix((np.r_[val, val], (np.r_[r, c], np.r_[c, r])), shape=(n, n))


def primary_paths(tree: KnowledgeTree, weights: sp.csr_matrix) -> sp.csr_matrix:
    """(n x n_nodes): each instance's path chosen top-down -- its heaviest top-level node, then
    the heaviest child of that node, and so on to a leaf -- holding the instance's weight on
    each path node (the share of its tags under it). One node per level, however many tags
    the instance has: what the coverage term counts. Ties go to the lowest node id."""
    w = sp.csr_matrix(weights)
    w.sort_indices()  # row-major, node ids ascending within a row: the first max is the lowest id
    w = w.tocoo()
    r, c, v = w.row.astype(np.int64), w.col.astype(np.int64), w.data
    n = weights.shape[0]
    # Entries grouped by level once (stable: row-major order kept inside each level), so each
    # level below touches only its own entries (1M instances: 2.2 s -> well under 1 s).
    lv = tree.level[c]
    by_level = np.argsort(lv, kind="stable")
    bounds = np.searchsorted(lv[by_level], np.arange(tree.depth + 1))
    chosen = np.full(n, -1, dtype=np.int64)  # the node picked on the level above
    rows, cols, vals = [], [], []
    for level in range(tree.depth - 1, -1, -1):
        at = by_level[bounds[level]:bounds[level + 1]]
        rr, cc, vv = r[at], c[at], v[at]
        if level < tree.depth - 1:
            keep = tree.parent[cc] == chosen[rr]
            rr, cc, vv = rr[keep], cc[keep], vv[keep]
        chosen = np.full(n, -1, dtype=np.int64)
        if len(rr):
            starts = np.flatnonzero(np.r_[True, rr[1:] != rr[:-1]])
            seg = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(rr)]))
            cand = np.flatnonzero(vv == np.maximum.reduceat(vv, starts)[seg])
            first = cand[np.r_[True, seg[cand][1:] != seg[cand][:-1]]]
            rr, cc, vv = rr[first], cc[first], vv[first]
            chosen[rr] = cc
        rows.append(rr)
        cols.append(cc)
        vals.append(vv)
    r_all, c_all = np.concatenate(rows), np.concatenate(cols)
    out = sp.csr_matrix((np.concatenate(vals).astype(np.float64), (r_all, c_all)),
                        shape=weights.shape)
    out.sort_indices()
    return out


@dataclass
class SelectionProblem:
    """Everything a selector may look at, as arrays aligned on pool row index."""

    tree: KnowledgeTree
    weights: sp.csr_matrix  # (n x n_nodes) instance weights on every node (leaves + ancestors)
    quality: np.ndarray  # (n,) q(x) in (0, 1]
    ic: np.ndarray  # (n_nodes,) IC(v)
    embeddings: np.ndarray | None = None  # (n x d) L2-normalised, for deita / kcenter
    target_mass: np.ndarray | None = None  # (n_leaves,) instance-normalised target leaf mass
    lengths: np.ndarray | None = None  # (n,) instruction characters, for ``length_band``

    def __post_init__(self):
        self.weights = sp.csr_matrix(self.weights, dtype=np.float64)
        self.weights.sort_indices()
        self.quality = np.asarray(self.quality, dtype=np.float64)
        self.leaf_dist = l1_normalise_rows(self.weights[:, : self.tree.n_leaves])
        self.leaf_dist.sort_indices()
        if self.lengths is not None:
            self.lengths = np.asarray(self.lengths, dtype=np.float64)
            if self.lengths.shape != (self.n,):
                raise ValueError(f"lengths has {self.lengths.size} values for {self.n} instances")

    @property
    def n(self) -> int:
        return self.weights.shape[0]

    @property
    def paths(self) -> sp.csr_matrix:
        """(n x n_nodes): each instance's primary path with its weights (``primary_paths``)."""
        if getattr(self, "_paths", None) is None:
            self._paths = primary_paths(self.tree, self.weights)
        return self._paths

    def embedding_terms(self) -> tuple[sp.csr_matrix, np.ndarray] | None:
        """(``path_centrality`` of every path entry, ``node_means``) from the embeddings, None
        without them; computed once per embeddings array (a problem serves many fits)."""
        if self.embeddings is None:
            return None
        key = id(self.embeddings)
        if getattr(self, "_terms_key", None) != key:
            x = l2_normalise_rows(self.embeddings)
            means = node_means(self.paths, x)
            self._terms = (path_centrality(self.paths, x, means), means)
            self._terms_key = key
        return self._terms

    def target_pi(self, smoothing: float) -> np.ndarray | None:
        if self.target_mass is None or np.sum(self.target_mass) <= 0:
            return None
        return smoothed(self.target_mass, smoothing)


class TagsSampler:
    """TAGS selection. ``fit(problem, k)`` sets ``selected_`` (rows in pick order), ``gains_``
    (marginal gain of each pick), ``objective_`` (final value, including the alignment term) and
    ``aligned_`` (whether a target steered the selection); with ``problem.lengths``, also
    ``length_swaps_`` and ``length_weight_`` (what the length band took: swaps made, weight of
    the length bonus searched; 0 when the greedy's selection was inside the band)."""

    name = "tags"

    # Defaults are the shipped configuration's (``tagtree.config.SampleConfig``).
    def __init__(self, level_decay: float = 0.7, concave: str = "log1p",
                 mass_weight: float = 0.1, quality_weight: float = 0.25, align: str = "penalty",
                 align_lambda: float = 2.0, align_smoothing: float = 0.01, align_level: int = -1,
                 strategy: str = "lazy", epsilon: float = 0.01, batch: int = 256,
                 window: int = 4096, random_state: int = 0, typical: bool = False,
                 centrality: float = 0.3, kernel_tau: float = 0.7,
                 kernel_top_tau: float = 0.2, align_leaf_weight: float = 1.0,
                 kernel_cooc_tau: float = 0.3, kernel_cooc_min_cos: float = 0.4,
                 length_band: float = 1.25, top_mass_power: float = 0.5):
        self.level_decay = level_decay
        self.concave = concave
        self.mass_weight = mass_weight
        self.quality_weight = quality_weight
        self.align = align
        self.align_lambda = align_lambda
        self.align_smoothing = align_smoothing
        self.align_level = align_level
        self.strategy = strategy
        self.epsilon = epsilon
        self.batch = batch
        self.window = window
        self.random_state = random_state
        self.typical = typical
        self.centrality = centrality
        self.kernel_tau = kernel_tau
        self.kernel_top_tau = kernel_top_tau
        self.align_leaf_weight = align_leaf_weight
        self.kernel_cooc_tau = kernel_cooc_tau
        self.kernel_cooc_min_cos = kernel_cooc_min_cos
        self.length_band = length_band
        self.top_mass_power = top_mass_power

    def level_weights(self, tree: KnowledgeTree) -> np.ndarray:
        """gamma per node: level_decay ** (levels between the node's level and the top)."""
        return self.level_decay ** (tree.depth - 1 - tree.level).astype(np.float64)

    def coverage_weights(self, problem: SelectionProblem) -> np.ndarray:
        """The coverage term's weight per node: gamma, with each top-level node's scaled by
        (its instances / the top level's mean) ** ``top_mass_power``. A budget smaller than
        the top level then goes first to the nodes that hold more of the pool, as one pick per
        k-means cluster does, instead of counting a three-instance node like a sixteen-instance
        one (MT-Bench over tree seeds 0-7: 3.4 -> 4.0 categories at 5%, 6.1 -> 6.75 at 10%).
        Fixed positive weights: the term stays a facility location, monotone submodular."""
        tree = problem.tree
        gamma = self.level_weights(tree)
        if self.top_mass_power <= 0:
            return gamma
        tops = tree.nodes_at(tree.depth - 1)
        counts = np.diff(sp.csc_matrix(problem.paths[:, tops]).indptr).astype(np.float64)
        if counts.sum() <= 0:
            return gamma
        share = counts / counts[counts > 0].mean()
        gamma[tops] *= np.maximum(share, 1e-12) ** self.top_mass_power
        return gamma

    def alignment_level(self, problem: SelectionProblem, k: int) -> int:
        tree = problem.tree
        if self.align_level >= 0:
            return min(self.align_level, tree.depth - 1)
        return alignment_level(tree, problem.target_mass, k)

    def objective(self, problem: SelectionProblem, k: int) -> tuple[Objective, np.ndarray | None]:
        """The objective's blocks for budget k, and pi (on the alignment level's nodes, in
        ``tree.nodes_at`` order) when alignment applies."""
        tree = problem.tree
        gamma = self.level_weights(tree)
        paths = problem.paths
        if not self.typical:  # covered or not: no preference for few- or many-tag instances
            paths = paths.copy()
            paths.data[:] = 1.0
        terms = problem.embedding_terms()
        if terms is not None and self.centrality > 0:
            # A node is covered best by its most central member (as a k-means medoid covers
            # its cluster): a pick's coverage of a node is 1 - c + c * centrality, so an
            # uncovered node still earns at least 1 - c and the top-down order holds for c < 0.5.
            cent = terms[0]  # the same sparsity pattern as paths
            paths = paths.copy()
            paths.data *= 1.0 - self.centrality + self.centrality * cent.data
        if terms is not None and (self.kernel_tau < 1 or self.kernel_top_tau < 1
                                  or self.kernel_cooc_tau < 1):
            # Coverage spills over to similar nodes of the same level (facility location on
            # the kernel: still max-of-fixed-values, so still submodular). A row's path holds
            # one node per level and the kernel never crosses levels, so the product is that max.
            paths = (paths @ self.kernel(tree, terms[1], problem.leaf_dist)).tocsr()
            paths.sort_indices()
        blocks = [Block(paths, self.coverage_weights(problem), "facility")]
        if self.mass_weight > 0:
            counts = problem.paths.copy()
            counts.data[:] = 1.0
            blocks.append(Block(counts, self.mass_weight * gamma, "mass", shape=self.concave))
        if self.quality_weight > 0:
            leaf_gamma = float(self.level_decay ** (tree.depth - 1))
            blocks.append(Block(sp.csr_matrix(problem.quality.reshape(-1, 1)),
                                 np.array([self.quality_weight * leaf_gamma]), "linear"))
        pi = None
        if self.align != "none" and problem.target_pi(self.align_smoothing) is not None:
            self.level_ = self.alignment_level(problem, k)
            nodes = tree.nodes_at(self.level_)
            pi = smoothed(level_mass(tree, problem.target_mass, self.level_),
                          self.align_smoothing)
            # quota mode keeps the KL term too: the quotas cap each node, the term steers which
            # instances fill them and the slots no quota can take.
            if self.align_lambda > 0 and k > 0:
                eps, n_nodes = self.align_smoothing, len(nodes)
                alpha = eps * k / ((1.0 - eps) * n_nodes) if eps < 1 else 1.0
                scale = self.align_lambda * k * float(
                    (self.level_decay ** np.arange(tree.depth)).sum())
                blocks.append(Block(problem.weights[:, nodes], scale * pi, "align",
                                     alpha=max(alpha, 1e-12)))
            if self.align_leaf_weight > 0:
                # Which member of an aligned node is picked: the KL term sees only the alignment
                # level, so inside a node the pick went to whatever covered most below; this
                # modular bonus (the target's leaf density where the instance sits, 1 at the
                # target's densest leaf, in units of a new leaf) prefers the members that sit
                # where the target's own instances do.
                density = problem.target_mass / max(float(problem.target_mass.max()), 1e-12)
                leaf_gamma = float(self.level_decay ** (tree.depth - 1))
                blocks.append(Block(problem.leaf_dist,
                                     self.align_leaf_weight * leaf_gamma * density, "linear"))
        return Objective(blocks), pi

    def kernel(self, tree: KnowledgeTree, means: np.ndarray,
               leaf_dist: sp.csr_matrix | None = None) -> sp.csr_matrix:
        """The leaf kernel (``kernel_tau``) and the top level's (``kernel_top_tau``) in one
        matrix: each is the identity off its own level, so their sum minus one identity; with
        ``leaf_dist``, the leaves' co-occurrence kernel (``kernel_cooc_tau``) on top, entry by
        entry the larger of the two."""
        taus = {tree.depth - 1: self.kernel_top_tau}
        if self.kernel_tau < 1:  # a one-level tree's leaves are its top: the leaf kernel wins
            taus[0] = self.kernel_tau
        kernels = [node_kernel(tree, means, tau, levels=(lv,))
                   for lv, tau in taus.items() if tau < 1]
        out = kernels[0] if kernels else sp.identity(len(means), format="csr")
        for extra in kernels[1:]:
            out = out + extra - sp.identity(out.shape[0], format="csr")
        if leaf_dist is not None and self.kernel_cooc_tau < 1:
            out = out.maximum(cooccurrence_kernel(leaf_dist, means, self.kernel_cooc_tau,
                                                  self.kernel_cooc_min_cos))
        return out.tocsr()

    def fit(self, problem: SelectionProblem, k: int) -> TagsSampler:
        k = max(0, min(int(k), problem.n))
        obj, pi = self.objective(problem, k)
        self.aligned_ = pi is not None
        quotas = self._quotas(problem, pi, k) if pi is not None and self.align == "quota" else None
        order, gains = self._greedy(obj, problem.n, k, quotas)
        self.length_swaps_, self.length_weight_ = 0, 0.0
        # An aligned selection follows the target's instances, lengths included (on MT-Bench
        # a swap inside an aligned node traded a target-category pick for another category's).
        if self.length_band > 1 and problem.lengths is not None and k and not self.aligned_:
            order, edited = self._balance_length(obj, problem, k, order)
            if edited:
                gains = replay_gains(obj, order)  # gains of F itself, summing to F(S)
        self.selected_, self.gains_, self.objective_ = order, gains, obj.value()
        return self

    def _greedy(self, obj: Objective, n: int, k: int, quotas) -> tuple[np.ndarray, np.ndarray]:
        if self.strategy == "plain":
            return plain_greedy(obj, n, k)
        if quotas is not None:  # quotas need the lazy greedy's queue
            return lazy_greedy(obj, n, k, batch=self.batch, window=self.window,
                               groups=quotas[0], quotas=quotas[1])
        if self.strategy == "stochastic":
            return stochastic_greedy(obj, n, k, epsilon=self.epsilon,
                                     rng=np.random.default_rng(self.random_state))
        return lazy_greedy(obj, n, k, batch=self.batch, window=self.window)

    def _balance_length(self, obj: Objective, problem: SelectionProblem, k: int,
                        order: np.ndarray) -> tuple[np.ndarray, bool]:
        """Bring the selection's mean length into the band (docs/sample.md, "Length band"):
        a drift too wide for swaps (e.g. quality that grows with length at 50,000 picks) is
        first steered by a modular length bonus whose weight is searched, then the swaps
        close the rest. Returns (order, whether it changed)."""
        band, lengths = self.length_band, problem.lengths
        ratio = length_ratio(lengths, order)
        if 1 / band <= ratio <= band:
            return order, False
        groups = self._swap_groups(problem)
        balanced, swaps = balance_length(obj, order, lengths, band, groups)
        if not 1 / band <= length_ratio(lengths, balanced) <= band:
            weighted = self._length_weighted(obj, problem, k, 1.0 if ratio < 1 else -1.0)
            if weighted is not None:
                balanced, swaps = balance_length(obj, weighted, lengths, band, groups)
        self.length_swaps_ = swaps
        obj.set_selection(balanced)
        return balanced, bool(swaps) or self.length_weight_ > 0

    def _length_weighted(self, obj: Objective, problem: SelectionProblem, k: int,
                         need: float) -> np.ndarray | None:
        """Greedy on F + w * gamma_leaf * sum_x z(x) (z: the standardised log length, signed
        toward the band and shifted to >= 0, so F + bonus stays monotone submodular and greedy
        keeps its bound for it), with the smallest weight w found (doubling from 1/16 of a new
        leaf, then four bisection steps: at most 13 greedy runs) whose selection reaches the
        band or beyond; None when no weight up to 16 new leaves per pick does."""
        band, lengths = self.length_band, problem.lengths
        z = np.log1p(lengths)
        z = need * (z - z.mean()) / max(float(z.std()), 1e-12)
        z -= z.min()
        leaf_gamma = float(self.level_decay ** (problem.tree.depth - 1))
        bonus = Block(sp.csr_matrix(z.reshape(-1, 1)), np.array([leaf_gamma]), "linear")

        def run(weight: float) -> np.ndarray:
            bonus.weight = np.array([weight * leaf_gamma])
            obj.blocks.append(bonus)
            obj.set_selection(np.empty(0, dtype=np.int64))
            try:
                return self._greedy(obj, problem.n, k, None)[0]
            finally:
                obj.blocks.pop()

        def short_of_band(rows: np.ndarray) -> bool:  # still on the starting side
            r = length_ratio(lengths, rows)
            return r < 1 / band if need > 0 else r > band

        lo, hi, best = 0.0, 1 / 16, None
        while hi <= 16:
            rows = run(hi)
            if not short_of_band(rows):
                best = rows
                break
            lo, hi = hi, hi * 2
        if best is None:
            return None
        for _ in range(4):  # bisection: the least bonus that still gets there
            mid = (lo + hi) / 2
            rows = run(mid)
            if short_of_band(rows):
                lo = mid
            else:
                hi, best = mid, rows
        self.length_weight_ = hi
        return best

    def _swap_groups(self, problem: SelectionProblem) -> np.ndarray:
        """Each row's primary node on the top level: a length swap stays inside it, so what
        the greedy covered there stays covered. -1: no path."""
        tree = problem.tree
        on_level = problem.paths[:, tree.nodes_at(tree.depth - 1)].tocsr()
        groups = np.full(problem.n, -1, dtype=np.int64)
        rows = np.flatnonzero(np.diff(on_level.indptr) > 0)
        groups[rows] = on_level.indices[on_level.indptr[rows]]
        return groups

    def _quotas(self, problem: SelectionProblem, pi: np.ndarray, k: int):
        """Group = an instance's heaviest node on the alignment level; quota of a group = its
        share of the target's (unsmoothed) mass there times k, by largest remainder."""
        tree = problem.tree
        nodes = tree.nodes_at(self.level_)
        quotas = largest_remainder(level_mass(tree, problem.target_mass, self.level_), k)
        primary = primary_leaves(problem.weights[:, nodes].tocsr())
        return primary, quotas
