"""Demo data built from the docstrings of the Python standard library installed here.

The seed's scenario is a small simple-QA fine-tune: "What does `json.dumps` do?" answered with the first
sentence of its docstring. The text is Python's, not ours, so it is built at first use and cached (never
committed); the cache file is keyed by the size and the exact Python version, since docstrings change
between releases. Everything is sorted and sampled with a fixed seed, so two machines with the same
Python build byte-identical files.

The reference set (for measuring forgetting) is general English prose from ``pydoc_data.topics`` (the
language reference's help texts) and from the module docstrings of modules *not* used for QA.
"""

from __future__ import annotations

import importlib
import inspect
import json
import platform
import random
import re
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from loratune.errors import DataError
from loratune.paths import cache_dir, write_atomic

BUILDER_VERSION = 1  # bump when the extraction rules change, so stale caches are not reused
SEED = 0

# Pure-Python modules whose import has no side effects (no GUI, no network, no printing).
QA_MODULES = (
    "argparse", "ast", "base64", "bisect", "calendar", "cmd", "codecs", "collections", "colorsys",
    "configparser", "contextlib", "copy", "csv", "dataclasses", "datetime", "decimal", "difflib",
    "dis", "email.message", "email.utils", "enum", "filecmp", "fileinput", "fnmatch", "fractions",
    "ftplib", "functools", "getopt", "gettext", "glob", "gzip", "hashlib", "heapq", "hmac",
    "html", "html.parser", "http.client", "http.cookies", "imaplib", "inspect", "ipaddress",
    "json", "json.decoder", "json.encoder", "linecache", "locale", "logging", "logging.handlers",
    "lzma", "mailbox", "mimetypes", "netrc", "ntpath", "numbers", "operator", "optparse",
    "os", "os.path", "pathlib", "pickle", "pkgutil", "platform", "plistlib", "poplib", "posixpath",
    "pprint", "queue", "quopri", "random", "re", "reprlib", "sched", "secrets", "selectors",
    "shlex", "shutil", "smtplib", "socketserver", "statistics", "string", "stringprep", "struct",
    "subprocess", "sysconfig", "tarfile", "tempfile", "textwrap", "threading", "timeit",
    "tokenize", "tomllib", "trace", "traceback", "types", "urllib.parse",
    "urllib.request", "uuid", "warnings", "wave", "weakref", "xml.dom.minidom",
    "xml.etree.ElementTree", "zipfile", "zipimport",
)  # fmt: skip
# Module docstrings that are prose (for the reference set); disjoint from QA_MODULES by construction.
REFERENCE_MODULES = (
    "abc", "asyncio", "binascii", "bz2", "code", "codeop", "compileall", "concurrent.futures",
    "contextvars", "cProfile", "ctypes", "dbm", "doctest", "ensurepip", "graphlib",
    "http.server", "importlib", "io", "itertools", "keyword", "mmap", "modulefinder",
    "multiprocessing", "opcode", "pdb", "pickletools", "profile", "pstats",
    "py_compile", "pyclbr", "pydoc", "rlcompleter", "runpy", "signal", "site", "socket",
    "ssl", "stat", "symtable", "sys", "token", "unittest", "xml.sax",
    "zipapp", "zoneinfo",
)  # fmt: skip

MIN_ANSWER, MAX_ANSWER = 20, 300
MIN_PARAGRAPH, MAX_PARAGRAPH = 200, 1200
_SIGNATURE = re.compile(r"^[\w.]+\(.*\)(\s*->.*)?$")
# A sentence ends at . ! ? followed by whitespace, unless the dot closes a common abbreviation.
_SENTENCE_END = re.compile(r"(?<!\be\.g)(?<!\bi\.e)(?<!\betc)(?<!\bvs)[.!?](?=\s|$)")


def demo_qa_path(n: int = 1500) -> Path:
    """A JSONL file of ``n`` {"question", "answer"} pairs (built at first use, then reused)."""
    return _cached(f"stdlib-qa-{n}", lambda: _sample(list(qa_pairs()), n, "QA pairs"))


def demo_reference_path(n: int = 300) -> Path:
    """A JSONL file of ``n`` {"text"} paragraphs of general prose, disjoint from the QA set."""
    return _cached(f"stdlib-reference-{n}", lambda: _sample(list(reference_paragraphs()), n, "reference paragraphs"))


def resolve_data_arg(text: str) -> Path:
    """The CLI's ``--data``: a path, ``demo`` for the stdlib QA set or ``demo-cls`` for its classification set."""
    if text.strip().lower() == "demo":
        return demo_qa_path()
    if text.strip().lower() == "demo-cls":
        from loratune.data.demo_cls import demo_cls_path

        return demo_cls_path()
    path = Path(text).expanduser()
    if not path.exists():
        raise DataError(
            f"data file {path} does not exist", "pass an existing file or directory, or --data demo / demo-cls"
        )
    return path


def _cached(stem: str, build: Callable[[], list[dict[str, str]]]) -> Path:
    path = cache_dir("data") / f"{stem}-py{platform.python_version()}-v{BUILDER_VERSION}.jsonl"
    if path.is_file():
        return path
    rows = build()
    # atomic: a concurrent reader sees no file or the whole file
    write_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return path


def _sample(items: list[dict[str, str]], n: int, what: str) -> list[dict[str, str]]:
    if n < 1 or n > len(items):
        raise DataError(
            f"cannot build {n} demo {what}: this Python ({platform.python_version()}) yields {len(items)}",
            f"ask for between 1 and {len(items)}",
        )
    return random.Random(SEED).sample(items, n)


def _import(name: str) -> Any:
    with warnings.catch_warnings():  # a deprecation notice on import is no reason to stop the build
        warnings.simplefilter("ignore")
        return importlib.import_module(name)


def first_sentence(doc: str | None) -> str | None:
    """The docstring's first sentence, whitespace collapsed; None when it is unusable as an answer."""
    if not doc:
        return None
    lines = inspect.cleandoc(doc).splitlines()
    while lines and (not lines[0].strip() or _SIGNATURE.match(lines[0].strip())):
        lines.pop(0)  # signature lines of C functions ("dumps(obj, ...)") say nothing in words
    paragraph: list[str] = []
    for line in lines:
        if not line.strip() or line.strip() == "--":
            break
        paragraph.append(line.strip())
    text = " ".join(" ".join(paragraph).split())
    match = _SENTENCE_END.search(text)
    sentence = text[: match.end()] if match else text
    if not MIN_ANSWER <= len(sentence) <= MAX_ANSWER or not sentence[0].isalpha():
        return None
    return sentence


def _public_members(owner: Any, module_name: str) -> Iterator[tuple[str, Any]]:
    for name in sorted(vars(owner)):
        if name.startswith("_"):
            continue
        obj = vars(owner)[name]
        if isinstance(obj, (staticmethod, classmethod)):
            obj = obj.__func__
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and getattr(obj, "__module__", None) == module_name:
            yield name, obj


def qa_pairs() -> Iterator[dict[str, str]]:
    """Every usable (question, answer) from QA_MODULES, in sorted order."""
    seen: set[str] = set()
    for module_name in sorted(QA_MODULES):
        try:
            module = _import(module_name)
        except ImportError:
            continue  # a stripped-down Python may lack a module; the set is then smaller, still valid
        # os.path is posixpath: the canonical module name keeps __module__ checks meaningful
        real_name = module.__name__
        for name, obj in _public_members(module, real_name):
            targets = [(f"{module_name}.{name}", obj)]
            if inspect.isclass(obj):
                targets += [(f"{module_name}.{name}.{m}", o) for m, o in _public_members(obj, real_name)]
            for qualified, target in targets:
                answer = first_sentence(target.__doc__)
                # One question per answer: repeated boilerplate ("Deprecated AST node class.") teaches nothing.
                if answer is None or answer in seen:
                    continue
                seen.add(answer)
                yield {"question": f"What does `{qualified}` do?", "answer": answer}


def _paragraphs(text: str) -> Iterator[str]:
    for block in re.split(r"\n\s*\n", text):
        raw_lines = block.splitlines()
        if any(line.startswith((" ", "\t")) for line in raw_lines):
            continue  # indented blocks are code, grammar or tables, not prose
        para = " ".join(block.split())
        if not MIN_PARAGRAPH <= len(para) <= MAX_PARAGRAPH:
            continue
        letters = sum(c.isalpha() or c.isspace() for c in para)
        if letters / len(para) < 0.85 or ">>>" in para:
            continue
        yield para


def reference_paragraphs() -> Iterator[dict[str, str]]:
    """Prose paragraphs from pydoc topics and non-QA module docstrings, minus any holding a QA answer."""
    answers = {pair["answer"] for pair in qa_pairs()}
    texts: list[str] = []
    try:
        from pydoc_data.topics import topics

        texts += [topics[k] for k in sorted(topics)]
    except ImportError:
        pass
    for module_name in sorted(REFERENCE_MODULES):
        try:
            doc = _import(module_name).__doc__
        except ImportError:
            continue
        if doc:
            texts.append(inspect.cleandoc(doc))
    seen: set[str] = set()
    for text in texts:
        for para in _paragraphs(text):
            if para in seen or any(a in para for a in answers):
                continue
            seen.add(para)
            yield {"text": para}
