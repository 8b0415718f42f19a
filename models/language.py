"""Languages: what language a text or a locale is, and how each is cut into words for BM25.

deflect serves English, Chinese (Traditional and Simplified, folded together) and
Indonesian. A language is a short code: ``en``, ``zh`` or ``id`` (:data:`SUPPORTED`).

- :func:`language_of_locale` reads a locale as a request or an article gives it
  (``zh-TW``, ``zh_Hant``, ``in-ID`` ...).
- :func:`detect` guesses the language of a text: any Han character makes it Chinese;
  otherwise py3langid (which ships its model), restricted to the supported languages,
  decides between English and Indonesian, and a guess below :data:`MIN_CONFIDENCE`
  (``"hi"``, ``"???"``) is None: unknown.
- :func:`analyze` is the lexical analyser. Runs of Han characters are folded to one
  script (OpenCC's Taiwan-to-mainland conversion with phrases, so 軟體 and 软件, 登入 and 登录
  become the same word) and segmented with jieba's dictionary (rjieba); other words are
  lower-cased, stripped of stop words and Snowball-stemmed in their language (English or
  Indonesian). For English text the result is exactly what the English-only analyser gave.
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache

SUPPORTED = ("en", "zh", "id")
#: below this py3langid probability (among the supported languages) a text's language is unknown
MIN_CONFIDENCE = 0.9
#: the analyser's version, recorded in index bundles
ANALYZER_VERSION = "multilingual-1"

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff]+")
_WORD = re.compile(r"(?u)\b\w\w+\b")
_ALIASES = {"in": "id", "ms": "id", "chi": "zh", "zho": "zh", "cmn": "zh", "yue": "zh", "ind": "id", "eng": "en"}
# after OpenCC: one form of the characters that still differ between the two scripts' usage
_FOLD_EXTRA = str.maketrans({"帐": "账"})


def language_of_locale(locale: str | None) -> str | None:
    """``zh-TW`` -> ``zh``, ``id-ID`` / ``in`` -> ``id``, ``en-us`` -> ``en``; any other
    language's code as it is (``de``); None for an empty locale."""
    if not locale or not locale.strip():
        return None
    base = re.split(r"[-_]", locale.strip().lower(), maxsplit=1)[0]
    return _ALIASES.get(base, base)


class _Identifier:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ident = None

    def __call__(self, text: str) -> tuple[str, float]:
        with self._lock:  # py3langid's identifier keeps state between calls
            if self._ident is None:
                from py3langid.langid import MODEL_FILE, LanguageIdentifier

                ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
                ident.set_languages(["en", "id"])
                self._ident = ident
            lang, prob = self._ident.classify(text)
        return lang, float(prob)


_identify = _Identifier()


def detect(text: str) -> str | None:
    """The language of ``text`` (one of :data:`SUPPORTED`), or None when it cannot be told."""
    if _HAN.search(text):
        return "zh"
    if len(_WORD.findall(text)) == 0:
        return None
    lang, prob = _identify(text)
    return lang if prob >= MIN_CONFIDENCE else None


#: the two Chinese scripts, as BCP-47 script subtags
HANT, HANS = "Hant", "Hans"
_HANT_REGIONS = {"tw", "hk", "mo"}


def script_of_locale(locale: str | None) -> str | None:
    """The Chinese script a locale asks for: ``zh-TW``, ``zh-HK``, ``zh-MO``, ``zh-Hant-*`` ->
    ``Hant``; ``zh-CN``, ``zh-SG``, ``zh-Hans-*`` -> ``Hans``; None for plain ``zh`` or
    another language."""
    if language_of_locale(locale) != "zh":
        return None
    parts = re.split(r"[-_]", locale.strip().lower())[1:]
    if "hant" in parts:
        return HANT
    if "hans" in parts:
        return HANS
    if not parts:
        return None
    return HANT if parts[0] in _HANT_REGIONS else HANS


@lru_cache(maxsize=2)
def _script_converter(config: str):
    import opencc

    return opencc.OpenCC(config)


def chinese_script(text: str) -> str | None:
    """Which Chinese script ``text`` is written in: ``Hant`` when it has more characters that
    exist only in Traditional than only in Simplified, ``Hans`` for the reverse, None when it
    cannot be told (no Han character, or only characters both scripts share: 退款)."""
    han = "".join(_HAN.findall(text))
    if not han:
        return None
    with _convert_lock:
        trad = sum(a != b for a, b in zip(han, _script_converter("t2s").convert(han), strict=False))
        simp = sum(a != b for a, b in zip(han, _script_converter("s2t").convert(han), strict=False))
    if trad == simp:
        return None
    return HANT if trad > simp else HANS


def warm_up(languages) -> None:
    """Load what analysing and detecting ``languages`` needs (jieba's dictionary, OpenCC,
    the language identifier) now, so the first customer does not wait for it (0.2-0.8 s)."""
    languages = set(languages)
    if "zh" in languages:
        analyze("預熱 warm-up 测试", "zh")
        chinese_script("預熱")
    if len(languages) > 1:
        detect("warm up the language identifier")


def languages_of(texts, *, sample: int = 500) -> frozenset[str | None]:
    """The languages found in ``texts`` (an evenly spaced sample of at most ``sample``), for
    choosing an encoder; None stands for texts whose language cannot be told."""
    texts = list(texts)
    step = max(1, len(texts) // sample)
    return frozenset(detect(t) for t in texts[::step])


@lru_cache(maxsize=1)
def _converter():
    import opencc

    return opencc.OpenCC("tw2sp")


_convert_lock = threading.Lock()


def fold_chinese(text: str) -> str:
    """Traditional and Simplified Chinese to one form (mainland Simplified, with Taiwan's
    words replaced by the mainland's: 軟體 -> 软件)."""
    if not _HAN.search(text):
        return text
    with _convert_lock:
        out = _converter().convert(text)
    return out.translate(_FOLD_EXTRA)


class _Latin:
    """Lower-case, stop words out, Snowball stems: one per language."""

    def __init__(self, lang: str) -> None:
        import Stemmer

        if lang == "id":
            self._stop = frozenset(INDONESIAN_STOPWORDS)
            self._stem = Stemmer.Stemmer("indonesian").stemWords
        else:
            from bm25s.stopwords import STOPWORDS_EN

            self._stop = frozenset(STOPWORDS_EN)
            self._stem = Stemmer.Stemmer("english").stemWords

    def __call__(self, text: str) -> list[str]:
        return self._stem([w for w in _WORD.findall(text.lower()) if w not in self._stop])


@lru_cache(maxsize=4)
def _latin(lang: str) -> _Latin:
    return _Latin(lang)


@lru_cache(maxsize=1)
def _chinese_stop() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_CHINESE

    return frozenset(STOPWORDS_CHINESE)


def _han_words(run: str) -> list[str]:
    import rjieba

    stop = _chinese_stop()
    return [w for w in rjieba.cut_for_search(fold_chinese(run)) if w.strip() and w not in stop]


def analyze(text: str, lang: str | None = None) -> list[str]:
    """The BM25 terms of ``text`` in ``lang`` (None: detected). Han runs become Chinese
    words (folded, segmented); the rest is analysed as ``lang``'s words (English when the
    language is Chinese or unknown)."""
    if lang is None:
        lang = detect(text)
    latin = _latin("id" if lang == "id" else "en")
    if not _HAN.search(text):
        return latin(text)
    out: list[str] = []
    pos = 0
    for m in _HAN.finditer(text):
        out += latin(text[pos : m.start()])
        out += _han_words(m.group())
        pos = m.end()
    out += latin(text[pos:])
    return out


# Indonesian function words (conjunctions, prepositions, pronouns, particles, common
# auxiliaries), written for this project; kept short so that content words always stay.
INDONESIAN_STOPWORDS = """
ada adalah agar akan aku anda apa apakah atau bagaimana bahwa bagi banget belum bisa boleh
dan dapat dari dengan di dia dong gak gimana hal harus ini itu jadi jika juga kah kak
kalau kami kamu karena ke kenapa ketika kita lagi lah maka mau melalui mereka min mohon
nah nggak ngga oleh pada para pun saat saja sama sangat saya sebagai sedang sehingga
sekarang selama semua sendiri seperti sih sudah supaya tapi tetapi tidak tolong untuk udah
ya yang yg sy
""".split()  # noqa: SIM905 - easier to read and edit as text
