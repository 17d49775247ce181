"""How many bad or hostile inputs get the promise "one line naming the problem and the fix, exit code 2"?

Every case runs the real ``loratune`` entry point in a fresh working directory beside a folder of bad
fixtures (malformed JSON, non-UTF-8, hostile study folders, pickle adapters, regular files where a
folder is meant …) and passes when:
- the exit code is the one expected (2 for bad input unless the case says otherwise);
- nothing on stdout/stderr is a Python traceback, and the error is short (≤ 6 lines: typer's usage
  message is 4);
- nothing was written: no file appears or changes in the working directory or the fixtures.

    .venv/bin/python bench/fuzz_cli.py            # all cases, results in bench/results/fuzz_cli.json
    .venv/bin/python bench/fuzz_cli.py --only budget --verbose

No case trains: each is refused before any training starts (that is part of what is checked).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "fuzz_cli.json"
MAX_LINES = 6


@dataclass
class Case:
    argv: list[str]
    expect: int = 2
    why: str = ""
    words: tuple[str, ...] = ()  # each must appear in the output (case-insensitive)
    max_lines: int = MAX_LINES  # the help page a bare `loratune` prints is longer, and that is right


@dataclass
class Outcome:
    case: Case
    rc: int
    output: str
    written: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def problems(self) -> list[str]:
        p = []
        if self.rc != self.case.expect:
            p.append(f"exit {self.rc}, expected {self.case.expect}")
        if "Traceback" in self.output:
            p.append("traceback")
        lines = [ln for ln in self.output.splitlines() if ln.strip()]
        if self.case.expect == 2 and len(lines) > self.case.max_lines:
            p.append(f"{len(lines)} lines of output")
        for w in self.case.words:
            if w.lower() not in self.output.lower():
                p.append(f"no {w!r} in the message")
        if self.written:
            p.append(f"wrote {', '.join(self.written[:3])}")
        return p


def fixtures(d: Path) -> None:
    """Bad files, made fresh for every run (never committed)."""
    (d / "notjson.json").write_text("{")
    (d / "nonutf8.json").write_bytes(b"\xff\xfe{}")
    (d / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (d / "list.json").write_text("[1, 2]")
    (d / "wrongtype.json").write_text(json.dumps({"config": {"r": "eight"}}))
    (d / "unknownkey.json").write_text(json.dumps({"config": {"r": 8, "bogus": 1}}))
    (d / "unknowntop.json").write_text(json.dumps({"confg": {"r": 8}}))
    (d / "nan.json").write_text('{"config": {"r": 8, "lora_alpha": NaN}}')
    (d / "negr.json").write_text(json.dumps({"config": {"r": -4}}))
    (d / "badlr.json").write_text(json.dumps({"training": {"learning_rate": "fast"}}))
    (d / "infl.json").write_text('{"training": {"learning_rate": Infinity}}')
    (d / "adir").mkdir()
    (d / "afile").write_text("a regular file\n")
    (d / "bad.jsonl").write_text('{"prompt": "a", "response": "b"}\n{not json\n')
    (d / "empty.jsonl").write_text("")
    (d / "wrongcol.jsonl").write_text('{"foo": "a", "bar": "b"}\n' * 20)
    (d / "nonutf8.jsonl").write_bytes(b'{"prompt": "\xff", "response": "b"}\n')
    (d / "data.xyz").write_text("hello\n")
    (d / "numbers.jsonl").write_text('{"prompt": 1, "response": 2}\n' * 20)
    (d / "bad.csv").write_text('prompt,response\n"a,b\n')
    (d / "bad.parquet").write_bytes(b"PAR1 not really")
    (d / "good.jsonl").write_text(
        "".join(json.dumps({"prompt": f"q{i}", "response": f"a{i}"}) + "\n" for i in range(40))
    )
    # model folders
    m = d / "model_automap"
    m.mkdir()
    (m / "config.json").write_text(
        json.dumps({"model_type": "llama", "auto_map": {"AutoModelForCausalLM": "evil.Evil"}, "num_hidden_layers": 2})
    )
    m = d / "model_neg"
    m.mkdir()
    (m / "config.json").write_text(json.dumps({"model_type": "llama", "num_hidden_layers": -3}))
    m = d / "model_huge"
    m.mkdir()
    (m / "config.json").write_text(json.dumps({"model_type": "llama", "num_hidden_layers": 100_000}))
    m = d / "model_unknown"
    m.mkdir()
    (m / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    m = d / "model_noconfig"
    m.mkdir()
    m = d / "model_badst"
    m.mkdir()
    (m / "config.json").write_text(
        json.dumps(
            {
                "model_type": "llama",
                "architectures": ["LlamaForCausalLM"],
                "hidden_size": 64,
                "intermediate_size": 128,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
                "vocab_size": 128,
            }
        )
    )
    (m / "model.safetensors").write_bytes(struct.pack("<Q", 10**9) + b"{}")
    # adapters
    a = d / "adapter_pickle"
    a.mkdir()
    (a / "adapter_config.json").write_text(
        json.dumps({"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]})
    )
    (a / "adapter_model.bin").write_bytes(b"\x80\x04K\x01.")
    a = d / "adapter_unknown_type"
    a.mkdir()
    (a / "adapter_config.json").write_text(json.dumps({"peft_type": "NOPE", "r": 8}))
    (a / "adapter_model.safetensors").write_bytes(struct.pack("<Q", 2) + b"{}")
    a = d / "adapter_noweights"
    a.mkdir()
    (a / "adapter_config.json").write_text(
        json.dumps({"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj"]})
    )
    a = d / "adapter_badjson"
    a.mkdir()
    (a / "adapter_config.json").write_text("{")
    # study folders
    s = d / "study_broken"
    s.mkdir()
    (s / "search.json").write_text("{")
    s = d / "study_empty_db"
    s.mkdir()
    (s / "study.db").write_bytes(b"")
    s = d / "study_hostile"
    s.mkdir()
    (s / "search.json").write_text(
        json.dumps({"options": {"strategy": "staged"}, "storage_url": f"sqlite:///{d / 'evil.db'}", "storage": None})
    )
    s = d / "study_none"
    s.mkdir()


def cases() -> list[Case]:
    c: list[Case] = []
    add = c.append
    # --- usage errors, every command -------------------------------------------------------------
    add(Case(["nosuchcommand"], why="unknown command"))
    add(Case([], why="no command: help, exit 2 (click's convention)", max_lines=40, words=("Commands",)))
    for cmd in ("inspect", "budget", "recommend", "train", "eval", "search"):
        add(Case([cmd], why="missing MODEL", words=("missing",)))
        add(Case([cmd, "gpt2", "--bogus"], why="unknown option", words=("no such option",)))
    add(Case(["report"], why="missing STUDY", words=("missing",)))
    add(Case(["models", "--bogus"], why="unknown option"))
    add(Case(["budget", "gpt2", "--r", "abc"], words=("--r",)))
    add(Case(["budget", "gpt2", "--alpha", "many"], words=("--alpha",)))
    add(Case(["budget", "gpt2", "--batch-size", "1.5"]))
    add(Case(["train", "smollm2-135m", "--data", "demo", "--max-steps", "ten"]))
    add(Case(["search", "smollm2-135m", "--steps", "x"]))
    add(Case(["eval", "smollm2-135m", "--data", "demo", "--batch-size", "big"]))
    add(Case(["recommend", "gpt2", "--dataset-size", "lots"]))
    add(Case(["inspect", "gpt2", "extra-arg"], why="extra argument"))
    # --- unknown models / targets / choices ----------------------------------------------------------
    add(Case(["inspect", "gpt-5"], words=("unknown model",)))
    add(Case(["inspect", "/nonexistent/model"], words=("no such file",)))
    add(Case(["inspect", "F/afile"]))
    add(Case(["budget", "gpt2", "--targets", "c_atn"], words=("did you mean",)))
    add(Case(["budget", "gpt2", "--targets", "re:("], why="bad regex"))
    add(Case(["budget", "gpt2", "--method", "nonsense"]))
    add(Case(["budget", "gpt2", "--targets", "c_attn", "--method", "nonsense"]))
    add(Case(["budget", "gpt2", "--layers", "50-60"], why="layers beyond the model"))
    add(Case(["budget", "gpt2", "--layers", "a-b"]))
    add(Case(["budget", "gpt2", "--layers", "11-3"]))
    add(Case(["budget", "gpt2", "--rank-pattern", "c_attn"]))
    add(Case(["budget", "gpt2", "--rank-pattern", "c_attn=-4"]))
    add(Case(["budget", "gpt2", "--alpha-pattern", "c_attn=-4"], why="negative alpha in a pattern"))
    add(Case(["budget", "gpt2", "--alpha-pattern", "c_attn=nan"]))
    add(Case(["budget", "gpt2", "--optimizer", "sgd9"]))
    add(Case(["budget", "gpt2", "--dtype", "fp7"]))
    add(Case(["budget", "gpt2", "--device", "tpu"]))
    add(Case(["budget", "gpt2", "--quant", "3bit"]))
    add(Case(["budget", "gpt2", "--exclude", "nosuch"], why="exclude that matches nothing"))
    add(Case(["recommend", "gpt2", "--task", "juggling"]))
    add(Case(["recommend", "gpt2", "--rules", "vibes"]))
    add(Case(["recommend", "gpt2", "--method", "nonsense"]))
    add(Case(["recommend", "gpt2", "--export", "nonsense", "--dataset-size", "10"]))
    add(Case(["recommend", "gpt2", "--preset", "nonsense"]))
    add(Case(["recommend", "gpt2", "--goal", "nonsense"]))
    add(Case(["search", "smollm2-135m", "--strategy", "random"]))
    add(Case(["search", "smollm2-135m", "--cost", "vibes"]))
    add(Case(["search", "smollm2-135m", "--pruner", "nope"]))
    add(Case(["search", "smollm2-135m", "--modules", "nosuch"], why="module set that matches nothing"))
    add(Case(["search", "smollm2-135m", "--export", "bogus"], why="checked before training"))
    add(Case(["train", "smollm2-135m", "--data", "demo", "--method", "nonsense"]))
    add(Case(["train", "smollm2-135m", "--data", "demo", "--targets", "nosuch"]))
    add(Case(["train", "smollm2-135m", "--data", "demo", "--scheduler", "zigzag"]))
    add(Case(["train", "smollm2-135m", "--data", "demo", "--dtype", "fp7"]))
    add(Case(["train", "smollm2-135m", "--data", "demo", "--format", "poetry"]))
    add(Case(["eval", "smollm2-135m", "--data", "demo", "--split", "middle"]))
    add(Case(["eval", "smollm2-135m", "--data", "demo", "--dtype", "fp7"]))
    # --- non-finite, absurd, zero and negative numbers -------------------------------------------------
    for flag, values in {
        "--r": ["0", "-8", "99999999999999999999999"],
        "--alpha": ["nan", "inf", "-16", "0"],
        "--dropout": ["-0.1", "1.5", "nan"],
        "--vram": ["1e400GB", "-8GB", "0GB", "nanGB", "8XB"],
        "--batch-size": ["0", "-3"],
        "--seq-len": ["0", "-512"],
    }.items():
        for v in values:
            add(Case(["budget", "gpt2", flag, v], why=f"{flag} {v}"))
    add(Case(["budget", "gpt2", "--target-r", "0", "--method", "adalora"]))
    add(Case(["recommend", "gpt2", "--dataset-size", "-5"]))
    add(Case(["recommend", "gpt2", "--dataset-size", "0"]))
    add(Case(["recommend", "gpt2", "--vram", "1e400GB"]))
    add(Case(["recommend", "gpt2", "--seq-len", "0"]))
    for flag, v in [
        ("--lr", "nan"),
        ("--lr", "-1e-3"),
        ("--lr", "inf"),
        ("--max-steps", "0"),
        ("--max-steps", "-5"),
        ("--epochs", "0"),
        ("--epochs", "nan"),
        ("--batch-size", "0"),
        ("--grad-accum", "0"),
        ("--max-length", "0"),
        ("--max-length", "-1"),
        ("--val-fraction", "1.5"),
        ("--val-fraction", "0"),
        ("--val-fraction", "nan"),
        ("--warmup-ratio", "2"),
        ("--weight-decay", "-1"),
        ("--seed", "99999999999999999999999"),
        ("--seed", "-1"),
        ("--eval-every", "0"),
        ("--eval-batches", "0"),
        ("--dropout", "1.0"),
        ("--r", "0"),
        ("--alpha", "nan"),
    ]:
        add(Case(["train", "smollm2-135m", "--data", "demo", flag, v], why=f"train {flag} {v}"))
    for flag, v in [
        ("--batch-size", "0"),
        ("--batch-size", "-3"),
        ("--qa-limit", "-1"),
        ("--max-length", "0"),
        ("--val-fraction", "2"),
        ("--seed", "99999999999999999999999"),
    ]:
        add(Case(["eval", "smollm2-135m", "--data", "demo", flag, v], why=f"eval {flag} {v}"))
    for flag, v in [
        ("--threads", "-1"),
        ("--threads", "0"),
        ("--steps", "0"),
        ("--lr", "nan"),
        ("--lr", "-1"),
        ("--tolerance", "nan"),
        ("--tolerance", "1.5"),
        ("--max-forgetting", "-0.1"),
        ("--max-r", "0"),
        ("--trials", "0"),
        ("--val-examples", "0"),
        ("--final-steps", "0"),
        ("--seed", "99999999999999999999999"),
    ]:
        add(Case(["search", "smollm2-135m", "--data", "demo", "--out", "out", flag, v], why=f"search {flag} {v}"))
    # --- malformed files -------------------------------------------------------------------------------
    for f in (
        "notjson.json",
        "nonutf8.json",
        "deep.json",
        "list.json",
        "wrongtype.json",
        "unknownkey.json",
        "unknowntop.json",
        "nan.json",
        "negr.json",
        "badlr.json",
        "infl.json",
        "adir",
        "missing.json",
    ):
        add(Case(["train", "smollm2-135m", "--data", "demo", "--config", f"F/{f}"], why=f"--config {f}"))
    for f in ("notjson.json", "wrongtype.json", "adir"):
        add(Case(["budget", "gpt2", "--config", f"F/{f}"], why=f"budget --config {f}"))
    for f in (
        "bad.jsonl",
        "empty.jsonl",
        "wrongcol.jsonl",
        "nonutf8.jsonl",
        "data.xyz",
        "bad.csv",
        "bad.parquet",
        "adir",
        "missing.jsonl",
    ):
        add(Case(["train", "smollm2-135m", "--data", f"F/{f}"], why=f"train --data {f}"))
    for f in ("bad.jsonl", "empty.jsonl", "missing.jsonl"):
        add(Case(["eval", "smollm2-135m", "--data", f"F/{f}"], why=f"eval --data {f}"))
        add(Case(["search", "smollm2-135m", "--data", f"F/{f}", "--out", "out"], why=f"search --data {f}"))
        add(Case(["recommend", "gpt2", "--data", f"F/{f}"], why=f"recommend --data {f}"))
    add(Case(["train", "smollm2-135m", "--data", "F/good.jsonl", "--val-data", "F/bad.jsonl"]))
    add(Case(["train", "smollm2-135m", "--data", "F/good.jsonl", "--reference", "F/missing.txt"]))
    for m in ("model_automap", "model_neg", "model_huge", "model_unknown", "model_noconfig"):
        add(Case(["inspect", f"F/{m}"], why=m))
        add(Case(["budget", f"F/{m}"], why=m))
    add(Case(["train", "F/model_automap", "--data", "F/good.jsonl"], words=("auto_map",)))
    add(Case(["train", "F/model_badst", "--data", "F/good.jsonl"], words=("safetensors",)))
    add(Case(["eval", "F/model_automap", "--data", "F/good.jsonl"], words=("auto_map",)))
    # --- adapters ------------------------------------------------------------------------------------
    for a, words in (
        ("adapter_pickle", ("pickle",)),
        ("adapter_unknown_type", ()),
        ("adapter_noweights", ()),
        ("adapter_badjson", ()),
        ("missing_adapter", ()),
        ("afile", ()),
    ):
        add(Case(["eval", "smollm2-135m", "--data", "demo", "--adapter", f"F/{a}"], why=a, words=words))
    # --- study folders ---------------------------------------------------------------------------------
    for s in ("study_broken", "study_empty_db", "study_hostile", "study_none", "missing_study", "afile"):
        add(Case(["report", f"F/{s}"], why=f"report {s}"))
    add(Case(["search", "smollm2-135m", "--out", "F/study_broken", "--resume"]))
    add(Case(["search", "smollm2-135m", "--out", "F/study_hostile", "--resume"]))
    add(Case(["search", "smollm2-135m", "--out", "F/study_none", "--resume"]))
    # --- output paths ----------------------------------------------------------------------------------
    add(Case(["train", "smollm2-135m", "--data", "demo", "--out", "F/afile"], why="--out is a file"))
    add(Case(["train", "smollm2-135m", "--data", "demo", "--out", "F/afile/sub"], why="--out under a file"))
    add(Case(["train", "smollm2-135m", "--data", "demo", "--out", "/proc/loratune"], why="--out not writable"))
    add(Case(["search", "smollm2-135m", "--out", "F/afile"]))
    add(Case(["search", "smollm2-135m", "--out", "F/afile/sub"]))
    add(Case(["search", "smollm2-135m", "--out", "out", "--storage", "nosuch://x"], why="bad storage URL"))
    add(Case(["search", "smollm2-135m", "--out", "out", "--storage", "postgresql://u@10.1.2.3/db"]))
    add(Case(["report", "F/study_none", "--out", "F/afile/report.html"]))
    add(Case(["recommend", "gpt2", "--dataset-size", "100", "--export", "peft", "--out", "F/adir"]))
    add(Case(["recommend", "gpt2", "--dataset-size", "100", "--export", "peft", "--out", "F/afile/x.json"]))
    # --- search / report: more numbers, names, folders (#11) ---------------------------------------
    for flag, v in [
        ("--lr", "inf"),
        ("--max-forgetting", "nan"),
        ("--time-budget", "0"),
        ("--time-budget", "-5"),
        ("--time-budget", "nan"),
        ("--seed", "-1"),
        ("--batch-size", "0"),
        ("--max-length", "0"),
        ("--lr-runs", "0"),
    ]:
        add(Case(["search", "smollm2-135m", "--data", "demo", "--out", "out", flag, v], why=f"search {flag} {v}"))
    add(Case(["search", "smollm2-135m", "--modules", "q_prj", "--out", "out"], words=("did you mean",)))
    add(Case(["search", "smollm2-135m", "--modules", "attention,re:(", "--out", "out"], why="bad regex set"))
    add(Case(["search", "smollm2-135m", "--export", "peft,bogus", "--out", "out"], why="one bad format of two"))
    add(Case(["search", "smollm2-135m", "--out", "/proc/loratune"], why="search --out not writable"))
    add(Case(["search", "smollm2-135m", "--out", "out", "--storage", "sqlite:///F/afile/x.db"]))
    for s in ("study_empty_db", "missing_study", "afile"):
        add(Case(["search", "smollm2-135m", "--out", f"F/{s}", "--resume"], why=f"resume {s}"))
    add(Case(["report", "F/study_none", "--out", "F/afile"], why="report --out is a file"))
    add(Case(["report", "F/study_none", "--out", "/proc/loratune"], why="report --out not writable"))
    add(Case(["report", "F/study_none", "--storage", "sqlite:///new.db?mode=ro"], why="creates no SQLite file"))
    add(Case(["report", "F/study_none", "--storage", "postgresql://u@10.1.2.3/db"], why="fails fast"))
    # --- train / eval: more numbers, files and folders (issue #11) ----------------------------------------
    for flag, v in [
        ("--epochs", "inf"),
        ("--warmup-ratio", "-0.1"),
        ("--dropout", "nan"),
        ("--alpha", "inf"),
        ("--r", "99999999999999999999999"),
        ("--grad-accum", "-1"),
        ("--eval-batches", "-1"),
        ("--lr", "1e400"),
    ]:
        add(Case(["train", "smollm2-135m", "--data", "demo", flag, v], why=f"train {flag} {v}"))
    add(Case(["train", "smollm2-135m", "--data", "demo", "--out", "F"], why="--out: a folder of other files"))
    add(Case(["train", "smollm2-135m", "--data", "demo", "--config", "F/good.jsonl"], why="JSONL as --config"))
    add(Case(["train", "smollm2-135m", "--data", "F/good.jsonl", "--val-data", "F/empty.jsonl"]))
    add(Case(["train", "smollm2-135m", "--data", "demo", "--reference", "F/data.xyz"]))
    for f in ("wrongcol.jsonl", "nonutf8.jsonl", "data.xyz", "bad.csv", "adir"):
        add(Case(["eval", "smollm2-135m", "--data", f"F/{f}"], why=f"eval --data {f}"))
    add(Case(["eval", "smollm2-135m", "--data", "demo", "--adapter", "F/model_badst"], why="a model, not an adapter"))
    add(Case(["eval", "smollm2-135m", "--data", "demo", "--seed", "-1"]))
    # --- budget / recommend: more numbers, config files, export lists, output paths (issue #11) -------
    for argv, words in (
        (["--alpha-pattern", "c_attn=1e400"], ("alpha_pattern",)),
        (["--rank-pattern", "c_attn=1e400"], ("--rank-pattern",)),
        (["--rank-pattern", "c_attn=2.5"], ("whole number",)),
        (["--rank-pattern", "(=4"], ("regex",)),
        (["--rank-pattern", "c_attn=5000"], ("largest sensible r",)),
        (["--r", "769"], ("largest sensible r is 768",)),
        (["--r", "99999999999999999999999"], ("largest sensible r is 768",)),
        (["--seq-len", "99999999999999999999999"], ("--seq-len",)),
        (["--batch-size", "99999999999999999999999"], ("--batch-size",)),
        (["--layers", "0-99999999999999999999"], ("last layer",)),
        (["--target-r", "4"], ("adalora",)),
        (["--exclude", "c_fc"], ("exclude",)),
        (["--exclude", "c_atn"], ("did you mean",)),
        (["--modules-to-save", "nosuch"], ("modules_to_save",)),
        (["--vram", "infGB"], ("--vram",)),
        (["--vram", "2048TiB"], ("--vram",)),
        (["--alpha", "1e400"], ("lora_alpha",)),
    ):
        add(Case(["budget", "gpt2", *argv], why=f"budget {' '.join(argv)}", words=words))
    for f in ("nonutf8.json", "deep.json", "list.json", "unknownkey.json", "unknowntop.json", "nan.json", "negr.json"):
        add(Case(["budget", "gpt2", "--config", f"F/{f}"], why=f"budget --config {f}", words=(f,)))
    add(Case(["budget", "gpt2", "--config", "F/missing.json"], words=("does not exist",)))
    for argv, words in (
        (["--dataset-size", "99999999999999999999999"], ("--dataset-size",)),
        (["--seq-len", "99999999999999999999999"], ("--seq-len",)),
        (["--vram", "0GB"], ("--vram",)),
        (["--vram", "nanGB"], ("--vram",)),
        (["--export", "peft,nonsense", "--out", "out"], ("nonsense",)),
        (["--export", "peft,axolotl"], ("--out",)),
        (["--export", ","], ("--export",)),
        (["--export", "peft,axolotl", "--out", "F/afile"], ("--out",)),
        (["--export", "peft,axolotl", "--out", "F/afile/sub"], ("--out",)),
        (["--export", "peft,torchtune", "--out", "out"], ("torchtune",)),
        (["--out", "F/adir"], ("directory",)),
        (["--out", "/proc/loratune.json"], ("not writable",)),
    ):
        add(Case(["recommend", "gpt2", "--dataset-size", "100", *argv], why=f"recommend {' '.join(argv)}", words=words))
    for f in ("adir", "nonutf8.jsonl", "wrongcol.jsonl", "data.xyz", "bad.parquet", "deep.json"):
        add(Case(["recommend", "gpt2", "--data", f"F/{f}"], why=f"recommend --data {f}"))
    return c


def snapshot(*dirs: Path) -> dict[str, tuple[int, float]]:
    seen = {}
    for d in dirs:
        for p in d.rglob("*"):
            if p.is_file():
                st = p.stat()
                seen[str(p)] = (st.st_size, st.st_mtime)
    return seen


def run_case(case: Case, work: Path, fx: Path, timeout: float) -> Outcome:
    cwd = Path(tempfile.mkdtemp(dir=work, prefix="case-"))
    os.symlink(fx, cwd / "F")
    argv = [a.replace("F/", f"{cwd}/F/") if a.startswith("F/") else a for a in case.argv]
    before = snapshot(cwd, fx)
    # This checkout's code, whichever copy the venv has installed (cases run in a temp folder).
    pythonpath = os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "COLUMNS": "100", "NO_COLOR": "1", "LORATUNE_THREADS": "1", "PYTHONPATH": pythonpath}
    t = time.perf_counter()
    try:
        p = subprocess.run(
            [sys.executable, "-m", "loratune.cli.app", *argv],
            cwd=cwd,
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        rc, output = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired:
        rc, output = -1, f"timed out after {timeout:.0f} s (it trained or hung instead of refusing)"
    after = snapshot(cwd, fx)
    written = sorted(k.replace(str(cwd), ".") for k in after if before.get(k) != after[k])
    shutil.rmtree(cwd, ignore_errors=True)
    return Outcome(case, rc, output, written, time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", help="run only cases whose command line contains this text")
    ap.add_argument("--verbose", action="store_true", help="print the output of failing cases")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per case")
    ap.add_argument("--no-write", action="store_true", help="do not write bench/results/fuzz_cli.json")
    args = ap.parse_args()
    selected = [c for c in cases() if not args.only or args.only in " ".join(c.argv)]
    with tempfile.TemporaryDirectory(prefix="loratune-fuzz-") as tmp:
        work, fx = Path(tmp) / "work", Path(tmp) / "fixtures"
        work.mkdir()
        fx.mkdir()
        fixtures(fx)
        outcomes = []
        for i, case in enumerate(selected, 1):
            o = run_case(case, work, fx, args.timeout)
            outcomes.append(o)
            mark = "ok  " if not o.problems else "FAIL"
            print(f"[{i:3}/{len(selected)}] {mark} {' '.join(case.argv)[:70]:70} {o.seconds:5.1f}s", flush=True)
            if o.problems:
                print(f"       {'; '.join(o.problems)}", flush=True)
                if args.verbose:
                    print("       | " + "\n       | ".join(o.output.strip().splitlines()[-8:]), flush=True)
    failed = [o for o in outcomes if o.problems]
    print(f"\n{len(outcomes) - len(failed)} handled / {len(outcomes)} tried")
    if not args.no_write and not args.only:
        RESULTS.write_text(
            json.dumps(
                {
                    "tried": len(outcomes),
                    "handled": len(outcomes) - len(failed),
                    "failed": [
                        {"argv": o.case.argv, "problems": o.problems, "tail": o.output.strip()[-300:]} for o in failed
                    ],
                    "python": sys.version.split()[0],
                },
                indent=2,
            )
            + "\n"
        )
        print(f"wrote {RESULTS.relative_to(ROOT)}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
