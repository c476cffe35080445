"""The labelled text corpus of ``dpxattn eval``: WordNet 3.0 noun entries and their 25
lexicographer categories, read from the Debian package ``wordnet-base``.

Why this corpus: it is real text written by people (the Princeton WordNet glosses),
every entry carries a human-assigned label (the ``lex_filenum`` field of ``data.noun``: one of 25
categories such as ``noun.animal``, ``noun.artifact``, ``noun.feeling``), it is large (82,115
noun synsets, so n can range from 1e3 to tens of thousands), and it ships inside a package of a
registry this project can reach (Debian), so no download from a data hub is needed. NLTK's
downloader and hub data sets cannot be reached here.

How a machine gets it (no root needed)::

    apt-get download wordnet-base && dpkg-deb -x wordnet-base_*.deb DIR

(:func:`fetch_wordnet` runs exactly that into the cache folder; ``apt-get install wordnet-base``
as root puts the same files in ``/usr/share/wordnet``). The folder searched is, in order: the
``--wordnet DIR`` argument, ``$WNSEARCHDIR``, ``/usr/share/wordnet``, ``CACHE/wordnet-base``.

One passage per noun synset: ``"lemma, lemma, ...: gloss"`` (underscores in lemmas read as
spaces), label = its ``lex_filenum`` (03..28, mapped to 0..24 in :data:`NOUN_CATEGORIES` order).
The file format is WordNet's ``wndb(5WN)``: ``offset lex_filenum ss_type w_cnt(hex) (word
lex_id){w_cnt} p_cnt (ptr){p_cnt} | gloss``.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

__all__ = [
    "NOUN_CATEGORIES",
    "CorpusMissing",
    "Corpus",
    "parse_data_noun",
    "find_wordnet",
    "fetch_wordnet",
    "load_wordnet_nouns",
    "INSTALL_HINT",
]

#: lex_filenum 03..28 -> category name (lexnames(5WN), WordNet 3.0); index = lex_filenum - 3
NOUN_CATEGORIES = (
    "noun.Tops", "noun.act", "noun.animal", "noun.artifact", "noun.attribute", "noun.body",
    "noun.cognition", "noun.communication", "noun.event", "noun.feeling", "noun.food",
    "noun.group", "noun.location", "noun.motive", "noun.object", "noun.person",
    "noun.phenomenon", "noun.plant", "noun.possession", "noun.process", "noun.quantity",
    "noun.relation", "noun.shape", "noun.state", "noun.substance", "noun.time",
)
_FIRST_NOUN_LEX = 3

INSTALL_HINT = (
    "the WordNet corpus (Debian package wordnet-base) was not found; get it without root with\n"
    "    dpxattn eval --fetch-corpus      (runs: apt-get download wordnet-base && dpkg-deb -x)\n"
    "or as root: apt-get install wordnet-base; or pass --wordnet DIR (the folder with data.noun)"
)


class CorpusMissing(RuntimeError):
    """The corpus files are not on this machine (the message says how to get them)."""


@dataclass(frozen=True)
class Corpus:
    """Passages and labels. ``texts``: tuple of str (N); ``labels``: tuple of int in
    [0, len(categories)); ``categories``: the label names; ``source``: where it was read."""

    texts: tuple
    labels: tuple
    categories: tuple
    source: str

    def __len__(self) -> int:
        return len(self.texts)


def _passage(words: list[str], gloss: str) -> str:
    lemmas = ", ".join(w.replace("_", " ") for w in words)
    return f"{lemmas}: {gloss.strip()}"


def parse_data_noun(lines) -> tuple[list[str], list[int]]:
    """Parse ``data.noun`` lines (iterable of str) into (passages, labels 0..25).

    License header lines (starting with two spaces) are skipped; a malformed data line raises
    :class:`ValueError` naming the offset, never silently dropped.
    """
    texts, labels = [], []
    for line in lines:
        if not line.strip() or line.startswith("  "):
            continue
        head, sep, gloss = line.partition(" | ")
        if not sep:
            raise ValueError(f"data.noun line without a gloss: {line[:40]!r}")
        f = head.split()
        try:
            lex = int(f[1])
            w_cnt = int(f[3], 16)
            words = [f[4 + 2 * i] for i in range(w_cnt)]
        except (IndexError, ValueError) as exc:
            raise ValueError(f"malformed data.noun line at offset {f[0] if f else '?'}") from exc
        if f[2] != "n" or not _FIRST_NOUN_LEX <= lex < _FIRST_NOUN_LEX + len(NOUN_CATEGORIES):
            raise ValueError(f"data.noun line {f[0]}: ss_type {f[2]!r}, lex_filenum {lex} "
                             "is not a noun category 03..28")
        texts.append(_passage(words, gloss))
        labels.append(lex - _FIRST_NOUN_LEX)
    return texts, labels


def _candidates(explicit, cache_dir) -> list[str]:
    out = []
    if explicit:
        out.append(str(explicit))
    if os.environ.get("WNSEARCHDIR"):
        out.append(os.environ["WNSEARCHDIR"])
    out.append("/usr/share/wordnet")
    if cache_dir:
        out.append(os.path.join(str(cache_dir), "wordnet-base", "usr", "share", "wordnet"))
    return out


def find_wordnet(explicit=None, cache_dir=None) -> str:
    """The first folder holding ``data.noun`` (order in the module docstring), or
    :class:`CorpusMissing` with the install command."""
    for c in _candidates(explicit, cache_dir):
        if os.path.isfile(os.path.join(c, "data.noun")):
            return c
    raise CorpusMissing(INSTALL_HINT)


def fetch_wordnet(cache_dir) -> str:
    """Run ``apt-get download wordnet-base`` and ``dpkg-deb -x`` into ``CACHE/wordnet-base``
    (no root needed). Returns the folder with ``data.noun``; :class:`CorpusMissing` if the
    tools are missing or the download fails (their output is in the message)."""
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise CorpusMissing(f"{tool} not found: fetch_wordnet needs a Debian-based system.\n"
                                + INSTALL_HINT)
    target = os.path.join(str(cache_dir), "wordnet-base")
    os.makedirs(str(cache_dir), exist_ok=True)
    with tempfile.TemporaryDirectory(dir=str(cache_dir)) as tmp:
        run = subprocess.run(["apt-get", "download", "wordnet-base"], cwd=tmp,
                             capture_output=True, text=True)
        debs = glob.glob(os.path.join(tmp, "wordnet-base_*.deb"))
        if run.returncode != 0 or not debs:
            raise CorpusMissing("apt-get download wordnet-base failed "
                                f"(exit {run.returncode}): {run.stderr.strip()[-400:]}\n"
                                "(run 'apt-get update' first if the package is unknown)")
        ext = subprocess.run(["dpkg-deb", "-x", debs[0], target], capture_output=True, text=True)
        if ext.returncode != 0:
            raise CorpusMissing(f"dpkg-deb -x failed: {ext.stderr.strip()[-400:]}")
    return find_wordnet(None, cache_dir)


def load_wordnet_nouns(explicit=None, cache_dir=None) -> Corpus:
    """All 82,115 WordNet 3.0 noun passages with their 25 categories (see module docstring).

    ``noun.Tops`` (lex 03, unique beginners) has 51 entries; the task keeps all 26 names for
    the file's sake but the 25 proper categories are 04..28 (``Corpus.categories`` lists all;
    labels index it)."""
    folder = find_wordnet(explicit, cache_dir)
    path = os.path.join(folder, "data.noun")
    with open(path, encoding="utf-8", errors="replace") as fh:
        texts, labels = parse_data_noun(fh)
    return Corpus(tuple(texts), tuple(labels), NOUN_CATEGORIES, path)
