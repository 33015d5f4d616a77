"""examples/language_model.py: a tiny GPT-2 trained by steps, monitored on step cadence."""

import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_example():
    spec = importlib.util.spec_from_file_location(
        "language_model_example", os.path.join(ROOT, "examples", "language_model.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_language_model_example_monitors_by_steps_inside_one_epoch(tmp_path):
    example = load_example()
    args = ["--max-steps", "8", "--every", "4", "--probe", "60", "--logdir", str(tmp_path)]
    monitor = example.main(args)
    assert [(r.epoch, r.step) for r in monitor.history] == [(0, 4), (0, 8)]
    assert monitor.history[-1].blocks == [f"model.transformer.h.{i}" for i in range(4)] + ["output"]
    assert monitor.history[-1].classes == [-1]  # per_class=False: text has no classes
    # Sentences have 6 to 13 tokens: the probe is padded, its mask says where.
    mask = monitor.probe.inputs["attention_mask"]
    assert mask.shape[0] == 60 and 6 <= int(mask.sum(dim=1).min()) < int(mask.sum(dim=1).max())
    assert all(v == v for v in monitor.history[-1].values["E0_1_scaled"])


def test_sentences_follow_the_grammar():
    example = load_example()
    vocab = {i: w for w, i in example.vocabulary().items()}
    item = example.Sentences(1, seed=1)[0]
    ids = item["input_ids"].tolist()
    assert ids[0] == example.BOS and ids[-1] == example.EOS
    words = " ".join(vocab[i] for i in ids[1:-1])
    assert any(words.startswith(s) for s in example.WORDS["subject"])
    with pytest.raises(KeyError):
        vocab[example.PAD]
