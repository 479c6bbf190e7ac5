"""Training data: readers, the shipped validation split, deterministic sampling, augmentations."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vostool.train.augment import hflip, lucid_dream_clip, reverse
from vostool.train.data import ClipSampler, davis16_val_split, load_dataset
from vostool.train.synthetic import generate_dataset


def test_val_split_follows_its_documented_rule(shared_dir: Path) -> None:
    root = shared_dir / "data" / "davis16-train-240p"
    names = (root / "ImageSets" / "2016" / "train.txt").read_text().split()
    assert davis16_val_split() == names[0::6] and len(davis16_val_split()) == 5
    seqs = load_dataset(root, include=["soccerball"], height=120)
    assert len(seqs) == 1 and seqs[0].images.shape[1:] == (120, 214, 3)
    assert set(np.unique(seqs[0].labels)) <= {0, 1} and seqs[0].object_ids == [1]
    train = load_dataset(root, exclude=davis16_val_split(), max_sequences=2, height=60)
    assert not {s.name for s in train} & set(davis16_val_split())


def test_sampler_is_a_pure_function_of_seed_and_step() -> None:
    seqs = generate_dataset(1, 3, length=10, size=(40, 60))
    a, b = ClipSampler(seqs, 4, seed=5), ClipSampler(seqs, 4, seed=5)
    b.sample(0), b.sample(3)  # draws made before must not matter
    c1, c2 = a.sample(7, 1), b.sample(7, 1)
    assert np.array_equal(c1.images, c2.images) and np.array_equal(c1.labels, c2.labels)
    assert len(c1) == 4 and c1.num_objects >= 1
    assert not np.array_equal(a.sample(8, 1).images, c1.images)


def test_flip_reverse_and_lucid_dream() -> None:
    clip = ClipSampler(generate_dataset(2, 1, length=8, size=(40, 60), num_objects=2), 5, seed=0).sample(0)
    f = hflip(clip)
    assert np.array_equal(f.images[:, :, ::-1], clip.images) and np.array_equal(f.labels[:, :, ::-1], clip.labels)
    r = reverse(clip)
    assert np.array_equal(r.images[0], clip.images[-1])
    assert set(np.unique(r.labels[0])) - {255} == set(range(r.num_objects + 1))
    rng = np.random.default_rng(0)
    lucid = lucid_dream_clip(clip.images[0], clip.labels[0], rng, length=3)
    assert len(lucid) == 3 and np.array_equal(lucid.images[0], clip.images[0])
    assert lucid.num_objects == clip.num_objects
