"""`loratune train` on bad input, through the real entry point: one line, exit 2, before torch is
imported and before anything is written; a diverged run exits 1 and saves nothing; Ctrl-C exits 130."""

from __future__ import annotations

import json

import pytest


# ---- numbers: flags -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("flag", "value", "needle"),
    [
        ("--seed", "99999999999999999999999", "--seed (seed) must be in [0, 4294967295]"),
        ("--lr", "nan", "--lr (learning_rate) must be a finite number, got nan"),
        ("--lr", "inf", "--lr (learning_rate) must be a finite number"),
        ("--lr", "-1", "--lr (learning_rate) must be greater than 0"),
        ("--epochs", "nan", "--epochs (epochs) must be a finite number"),
        ("--max-steps", "0", "--max-steps (max_steps) must be at least 1"),
        ("--grad-accum", "0", "--grad-accum (grad_accum) must be at least 1"),
        ("--max-length", "0", "--max-length (max_length) must be at least 2"),
        ("--val-fraction", "0", "validation fraction must be in (0, 1), got 0.0"),
        ("--warmup-ratio", "2", "--warmup-ratio (warmup_ratio) must be in [0, 1)"),
        ("--weight-decay", "-1", "--weight-decay (weight_decay) must be at least 0"),
        ("--eval-every", "0", "--eval-every (eval_every) must be at least 1"),
        ("--dropout", "1.0", "--dropout (lora_dropout) must be in [0, 1)"),
        ("--r", "0", "--r (r) must be in [1, 65536], got 0"),
        ("--alpha", "nan", "--alpha (lora_alpha) must be a finite number, got nan"),
    ],
)
def test_a_bad_number_is_one_line_before_torch(refused_cheaply, flag, value, needle, qa_file, tmp_path):
    refused_cheaply(["train", "smollm2-135m", "--data", str(qa_file), flag, value], needle, tmp_path)


# ---- malformed files ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('{"config": {"r": "eight"}}', "config.r must be an integer, got 'eight'"),
        ('{"config": {"r": 8, "bogus": 1}}', "unknown key(s) in 'config': 'bogus'"),
        ('{"confg": {"r": 8}}', "unknown key(s) 'confg'"),
        ('{"config": {"r": 8, "lora_alpha": NaN}}', "config.lora_alpha = nan is not a finite number"),
        ('{"training": {"learning_rate": "fast"}}', "--lr (learning_rate) must be a number, got 'fast'"),
        ("[" * 50_000 + "]" * 50_000, "nested too deeply"),
    ],
)
def test_a_malformed_config_file_names_file_and_place(refused_cheaply, text, needle, qa_file, tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(text)
    refused_cheaply(["train", "smollm2-135m", "--data", str(qa_file), "--config", str(cfg)], needle, tmp_path)


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("bad.jsonl", b'{"prompt": "a", "response": "b"}\n{not json\n', "line 2: invalid JSON"),
        ("empty.jsonl", b"", "holds no examples"),
        ("wrongcol.jsonl", b'{"foo": "a", "bar": "b"}\n' * 3, "cannot tell the format from the columns"),
        ("nonutf8.jsonl", b'{"prompt": "a", "response": "b"}\n{"prompt": "\xff"}\n', "not UTF-8 text (line 2"),
        ("data.xyz", b"hello\n", "unknown data file type '.xyz'"),
        ("bad.parquet", b"PAR1 not really", "cannot read Parquet"),
    ],
)
def test_a_malformed_data_file_is_one_line(refused_cheaply, name, content, needle, tmp_path):
    (tmp_path / name).write_bytes(content)
    refused_cheaply(["train", "smollm2-135m", "--data", str(tmp_path / name)], needle, tmp_path)


def test_wrong_columns_hint_names_only_real_flags(cli, tmp_path):
    data = tmp_path / "w.jsonl"
    data.write_text('{"foo": "a", "bar": "b"}\n' * 3)
    rc, _, err = cli("train", "smollm2-135m", "--data", str(data))
    assert rc == 2 and "--prompt-column and --response-column" in err and "--text-column" not in err


# ---- output paths ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("out", "needle"),
    [
        ("afile", "is an existing file, not a folder"),
        ("afile/sub", "lies under"),
        ("/proc/loratune-test", "is not writable"),
        ("full", "is a directory with other files in it"),
    ],
)
def test_a_bad_out_is_refused_before_any_work(refused_cheaply, out, needle, qa_file, tmp_path):
    (tmp_path / "afile").write_text("a regular file\n")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("someone's files\n")
    target = out if out.startswith("/") else str(tmp_path / out)
    refused_cheaply(["train", "smollm2-135m", "--data", str(qa_file), "--out", target], needle, tmp_path)


def test_check_output_dir_accepts_new_empty_and_previous_adapter_dirs(tmp_path):
    from loratune.outputs import check_output_dir

    check_output_dir(tmp_path / "new" / "deeper")
    (tmp_path / "empty").mkdir()
    check_output_dir(tmp_path / "empty")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "adapter_config.json").write_text("{}")
    check_output_dir(tmp_path / "old")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "old"]  # the probe left nothing


# ---- valid input that used to be refused ----------------------------------------------------------------
def test_txt_data_and_unicode_separators_train(cli, tiny_model_dir, tmp_path):
    txt = tmp_path / "notes.txt"
    txt.write_text("".join(f"Paragraph {i} says something.\nIt goes on.\n\n" for i in range(12)))
    rc, out, err = cli("train", str(tiny_model_dir), "--data", str(txt), "--max-steps", "1", "--reference", "none",
                       "--dtype", "fp32", "--out", str(tmp_path / "a"), "--json")  # fmt: skip
    assert rc == 0, err
    assert json.loads(out)["status"] == "ok"
    jsonl = tmp_path / "sep.jsonl"
    jsonl.write_text(
        "".join(json.dumps({"prompt": f"Line\u2028{i}\u0085?", "response": f"A\u2029{i}"}) + "\n" for i in range(12))
    )
    rc, out, err = cli("train", str(tiny_model_dir), "--data", str(jsonl), "--max-steps", "1", "--reference", "none",
                       "--dtype", "fp32", "--out", str(tmp_path / "b"), "--json")  # fmt: skip
    assert rc == 0, err


def test_every_answer_cut_away_names_max_length(cli, tiny_model_dir, qa_file, tmp_path):
    rc, _, err = cli("train", str(tiny_model_dir), "--data", str(qa_file), "--max-length", "4",
                     "--reference", "none", "--out", str(tmp_path / "a"))  # fmt: skip
    assert rc == 2
    (line,) = [ln for ln in err.splitlines() if ln.strip()]
    assert "--max-length 4 cuts away the answer" in line and "the shortest needs" in line
    assert not (tmp_path / "a").exists()


# ---- exit codes that tell the truth ---------------------------------------------------------------------
def test_a_diverged_run_exits_1_and_saves_nothing(cli, tiny_model_dir, qa_file, tmp_path):
    out = tmp_path / "adapter"
    rc, stdout, err = cli("train", str(tiny_model_dir), "--data", str(qa_file), "--lr", "1e30", "--max-steps", "3",
                          "--reference", "none", "--dtype", "fp32", "--no-progress", "--out", str(out))  # fmt: skip
    assert rc == 1, err
    assert "status: diverged" in stdout
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "diverged" in errors[0] and "no adapter was saved" in errors[0], err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_ctrl_c_during_training_exits_130_and_says_nothing_was_saved(
    cli,
    tiny_model_dir,
    qa_file,
    tmp_path,
    monkeypatch,
):
    from loratune.trial import loop

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "token_loss_sum", interrupted)
    out = tmp_path / "adapter"
    rc, _, err = cli("train", str(tiny_model_dir), "--data", str(qa_file), "--max-steps", "2", "--reference", "none",
                     "--dtype", "fp32", "--no-progress", "--out", str(out))  # fmt: skip
    assert rc == 130
    assert err.strip().splitlines()[-1] == "interrupted: nothing was saved"
    assert not out.exists() and list(tmp_path.iterdir()) == []
