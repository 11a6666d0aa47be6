"""Caption scores defined as the COCO caption evaluation (pycocoevalcap) defines them: ROUGE-L and CIDEr-D.

All scores work on `words()`: lower case, runs of letters and digits (any script), punctuation dropped
(close to the PTB tokenizer the COCO evaluation runs first, without its Java dependency).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

_WORD = re.compile(r"[^\W_]+")
ROUGE_BETA = 1.2  # pycocoevalcap's recall weight
CIDER_N = 4
CIDER_SIGMA = 6.0  # CIDEr-D's length penalty width
CIDER_SCALE = 10.0  # pycocoevalcap reports CIDEr-D x 10


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(candidate: str, references: Sequence[str], beta: float = ROUGE_BETA) -> float:
    """LCS F-measure of one candidate; precision and recall each take their best reference."""
    cand = words(candidate)
    if not cand:
        return 0.0
    precision = recall = 0.0
    for reference in references:
        ref = words(reference)
        if not ref:
            continue
        lcs = lcs_length(cand, ref)
        precision = max(precision, lcs / len(cand))
        recall = max(recall, lcs / len(ref))
    if precision == 0 or recall == 0:
        return 0.0
    return (1 + beta**2) * precision * recall / (recall + beta**2 * precision)


def ngrams(tokens: Sequence[str], n_max: int = CIDER_N) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for n in range(1, n_max + 1) for i in range(len(tokens) - n + 1))


def _tfidf(counts: Counter, df: Counter, log_n: float) -> tuple[list[dict], list[float], int]:
    """TF-IDF vector per n-gram order, its norm per order, and the length (number of bigrams)."""
    vec: list[dict] = [{} for _ in range(CIDER_N)]
    norm = [0.0] * CIDER_N
    length = 0
    for gram, tf in counts.items():
        n = len(gram) - 1
        value = tf * (log_n - math.log(max(1.0, df[gram])))
        vec[n][gram] = value
        norm[n] += value**2
        if n == 1:
            length += tf
    return vec, [math.sqrt(x) for x in norm], length


def _similarity(hyp, ref) -> list[float]:
    (h_vec, h_norm, h_len), (r_vec, r_norm, r_len) = hyp, ref
    penalty = math.exp(-((h_len - r_len) ** 2) / (2 * CIDER_SIGMA**2))
    out = []
    for n in range(CIDER_N):
        value = sum(min(v, r_vec[n].get(g, 0.0)) * r_vec[n].get(g, 0.0) for g, v in h_vec[n].items())
        if h_norm[n] != 0 and r_norm[n] != 0:
            value /= h_norm[n] * r_norm[n]
        out.append(value * penalty)
    return out


def cider_d_scores(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> list[float]:
    """CIDEr-D of each candidate; document frequencies come from the references of this whole corpus
    (an n-gram counts once per image), so the score of a caption depends on the evaluated set."""
    if len(candidates) != len(references):
        raise ValueError(f"{len(candidates)} candidates but {len(references)} reference sets")
    refs = [[ngrams(words(r)) for r in group] for group in references]
    df: Counter = Counter()
    for group in refs:
        df.update(set().union(*group))
    log_n = math.log(float(len(candidates))) if candidates else 0.0
    scores = []
    for candidate, group in zip(candidates, refs, strict=True):
        hyp = _tfidf(ngrams(words(candidate)), df, log_n)
        total = [0.0] * CIDER_N
        for ref in group:
            total = [a + b for a, b in zip(total, _similarity(hyp, _tfidf(ref, df, log_n)), strict=True)]
        scores.append(CIDER_SCALE * sum(total) / CIDER_N / len(group) if group else 0.0)
    return scores


def cider_d(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    scores = cider_d_scores(candidates, references)
    return sum(scores) / len(scores) if scores else float("nan")
