"""Near-duplicates and test-set contamination.

Near-duplicates: MinHash signatures of a row's character shingles (datasketch), banded into an LSH index;
a row whose estimated Jaccard similarity to an earlier kept row reaches the threshold joins that row's
group. Character shingles catch both kinds of near copy seen in practice: edited characters (a few
shingles change) and reordered sentences (only the shingles across sentence boundaries change).

Contamination: the n-grams of words and symbols of every test row (13 by default, as in the GPT-3 and Llama reports; a
test row shorter than that counts as one n-gram of its own length); a training row that contains any of
them is contaminated, and the manifest says which test rows were found.
"""

from __future__ import annotations

import zlib
from collections import defaultdict

import numpy as np

from llmforge.curate.content import canonical, terms

SCHEME = "affine32"  # datasketch 2 names its hashing scheme; signatures are compared only within one run


_PERMUTATIONS: dict[int, np.ndarray] = {}


def signature(text: str, shingle: int, num_perm: int) -> np.ndarray:
    """The MinHash hash values of `text`'s character shingles (computed in worker processes)."""
    from datasketch import MinHash

    text = canonical(text)
    grams = {text[i:i + shingle] for i in range(max(1, len(text) - shingle + 1))}
    if num_perm not in _PERMUTATIONS:  # drawing the permutations costs more than hashing a row: once per size
        _PERMUTATIONS[num_perm] = MinHash(num_perm=num_perm, seed=1, scheme=SCHEME).permutations
    # crc32 (C) hashes a shingle ~5x faster than datasketch's default sha1 in Python, and is as stable
    minhash = MinHash(num_perm=num_perm, seed=1, scheme=SCHEME, permutations=_PERMUTATIONS[num_perm],
                      hashfunc=zlib.crc32)
    minhash.update_batch([g.encode() for g in grams])
    return minhash.hashvalues


class NearDuplicates:
    """Groups rows as they come: `group(key, hashvalues)` returns the key of the first row it is a near copy
    of, or its own key (it then starts a group)."""

    def __init__(self, threshold: float, num_perm: int) -> None:
        from datasketch import MinHashLSH

        self.num_perm = num_perm
        # LSH bands tuned for recall (datasketch's default weighs misses and false candidates alike and finds
        # only ~40% of pairs right at the threshold, 93% at 0.9); every candidate is then checked against the
        # threshold with the signatures' estimate, so extra candidates cost time, not precision
        self.index = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=(0.05, 0.95))
        self.threshold = threshold
        self.signatures: dict[str, np.ndarray] = {}
        self.order: dict[str, int] = {}

    def group(self, key: str, hashvalues: np.ndarray) -> str:
        from datasketch import LeanMinHash

        minhash = LeanMinHash(seed=1, hashvalues=hashvalues, scheme=SCHEME)
        # LSH finds candidates; keep the earliest whose estimated similarity really reaches the threshold
        matches = [k for k in self.index.query(minhash)
                   if float(np.mean(self.signatures[k] == hashvalues)) >= self.threshold]
        if matches:
            return min(matches, key=lambda k: self.order[k])
        self.index.insert(key, minhash)
        self.signatures[key] = hashvalues
        self.order[key] = len(self.order)
        return key


class TestIndex:
    """The n-grams of the test rows, by length, each pointing at the test rows that hold it."""

    def __init__(self, ngram: int) -> None:
        self.ngram = ngram
        self.keys: dict[int, dict[tuple[str, ...], list[int]]] = defaultdict(dict)
        self.rows: list[str] = []

    def add(self, text: str, label: str) -> None:
        tokens = tuple(terms(text))
        if not tokens:
            return
        row = len(self.rows)
        self.rows.append(label)
        size = min(self.ngram, len(tokens))
        for i in range(len(tokens) - size + 1):
            self.keys[size].setdefault(tokens[i:i + size], []).append(row)

    def found_in(self, text: str) -> set[int]:
        """The test rows one of whose n-grams `text` contains."""
        tokens = tuple(terms(text))
        hits: set[int] = set()
        for size, keys in self.keys.items():
            for i in range(len(tokens) - size + 1):
                rows = keys.get(tokens[i:i + size])
                if rows:
                    hits.update(rows)
        return hits
