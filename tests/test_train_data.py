"""Training data: readers, the shipped validation split, deterministic sampling, augmentations."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vostool.datasets import davis16_val_split, generate_dataset, load_dataset
from vostool.train.augment import hflip, lucid_dream_clip, paste_object, reverse
from vostool.train.sampling import ClipSampler


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


def test_segment_sampling_spans_the_video_in_order() -> None:
    """``max_span`` (the embedding's support sampling): first frame, one frame per segment, the
    query last, strictly increasing, spanning up to ``max_span`` frames; short videos still work."""
    seqs = generate_dataset(4, 2, length=60, size=(24, 32))
    sampler = ClipSampler(seqs, 4, seed=1, max_span=40)
    spans = []
    for step in range(40):
        rng = sampler.rng(step)
        idx = sampler._segments(60, rng)
        assert len(idx) == 4 and (np.diff(idx) > 0).all() and 0 <= idx[0] and idx[-1] - idx[0] <= 40
        lo = idx[0] + 1 + np.floor(np.arange(3) * (idx[-1] - idx[0] - 1) / 2).astype(int)
        assert lo[0] <= idx[1] < lo[1] <= idx[2] < lo[2]  # each support frame in its own segment
        spans.append(idx[-1] - idx[0])
    assert min(spans) < 15 and max(spans) > 30
    assert list(sampler._segments(4, np.random.default_rng(0))) == [0, 1, 2, 3]
    assert len(ClipSampler(generate_dataset(4, 1, length=3, size=(24, 32)), 4, max_span=40).sample(0)) == 4


def test_paste_object_adds_a_second_object_from_another_clip() -> None:
    clip = ClipSampler(generate_dataset(2, 1, length=6, size=(40, 60), num_objects=1), 3, seed=0).sample(0)
    donor = ClipSampler(generate_dataset(5, 1, length=6, size=(50, 70), num_objects=1), 3, seed=0).sample(0)
    out = paste_object(clip, donor, np.random.default_rng(3), scale=(0.9, 0.9), shift=0.0)
    assert out.num_objects == 2 and out.images.shape == clip.images.shape
    for t in range(3):
        pasted = out.labels[t] == 2
        assert pasted.any() and not (out.labels[t][~pasted] == 2).any()
        assert np.array_equal(out.labels[t][~pasted], clip.labels[t][~pasted])  # the rest is untouched
        assert np.abs(out.images[t][pasted].astype(int) - clip.images[t][pasted].astype(int)).mean() > 5  # new pixels there
    assert paste_object(clip, donor, np.random.default_rng(0), scale=(0.9, 0.9)).labels.shape == clip.labels.shape


def test_synthetic_videos_move_occlude_and_repeat() -> None:
    a = generate_dataset(3, 2, length=16, size=(60, 90), num_objects=3)
    b = generate_dataset(3, 2, length=16, size=(60, 90), num_objects=3)
    assert np.array_equal(a[1].images, b[1].images) and np.array_equal(a[1].labels, b[1].labels)
    v = a[0]
    assert v.images.shape == (16, 60, 90, 3) and v.object_ids == [1, 2, 3]
    # objects move: their centroids change between the first and the last frame
    for k in v.object_ids:
        if (v.labels[0] == k).any() and (v.labels[-1] == k).any():
            c0 = np.argwhere(v.labels[0] == k).mean(0)
            c1 = np.argwhere(v.labels[-1] == k).mean(0)
            assert np.abs(c1 - c0).max() > 1.0
    # labels are rendered with the pixels: object pixels differ from the frame's background texture
    assert 0 < (v.labels > 0).mean() < 0.9


def test_crop_and_affine_keep_images_and_labels_aligned() -> None:
    from vostool.train.augment import random_affine, random_crop

    clip = ClipSampler(generate_dataset(4, 1, length=6, size=(48, 64), num_objects=2), 3, seed=0).sample(0)
    rng = np.random.default_rng(0)
    c = random_crop(clip, (32, 40), rng)
    assert c.images.shape == (3, 32, 40, 3)
    # the crop is a window of the original: find it and compare
    found = any(
        np.array_equal(clip.images[:, y : y + 32, x : x + 40], c.images)
        and np.array_equal(clip.labels[:, y : y + 32, x : x + 40], c.labels)
        for y in range(17)
        for x in range(25)
    )
    assert found
    ident = random_affine(clip, rng, scale=(1.0, 1.0), rotation=0.0, shift=0.0)
    assert np.array_equal(ident.labels, clip.labels)
    moved = random_affine(clip, rng, scale=(0.7, 0.7), rotation=20.0, shift=0.0)
    assert (moved.labels == 255).any()  # pixels brought in from outside are void
    assert set(np.unique(moved.labels)) <= set(np.unique(clip.labels)) | {255}


def _write_png(path: Path, arr: np.ndarray, palette: bool) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(arr, mode="P" if palette else "L")
    if palette:
        from vostool.io.masks import DAVIS_PALETTE

        img.putpalette(DAVIS_PALETTE.reshape(-1).tolist())
    img.save(path)


def test_readers_davis2017_and_youtube_layouts(tmp_path: Path) -> None:
    from PIL import Image

    v = generate_dataset(5, 1, length=3, size=(32, 48), num_objects=2)[0]
    # DAVIS 2017: palette masks with a void band; YouTube-VOS: annotations on every 5th frame only
    d17 = tmp_path / "davis"
    (d17 / "ImageSets" / "2017").mkdir(parents=True)
    (d17 / "ImageSets" / "2017" / "train.txt").write_text("clip\n")
    yt = tmp_path / "ytvos" / "train"
    for t in range(3):
        lab = v.labels[t].copy()
        lab[:, :2] = 255
        (d17 / "JPEGImages" / "480p" / "clip").mkdir(parents=True, exist_ok=True)
        Image.fromarray(v.images[t]).save(d17 / "JPEGImages" / "480p" / "clip" / f"{t:05d}.jpg")
        _write_png(d17 / "Annotations" / "480p" / "clip" / f"{t:05d}.png", lab, True)
        (yt / "JPEGImages" / "vid").mkdir(parents=True, exist_ok=True)
        Image.fromarray(v.images[t]).save(yt / "JPEGImages" / "vid" / f"{5 * t:05d}.jpg")
        if t != 1:
            _write_png(yt / "Annotations" / "vid" / f"{5 * t:05d}.png", v.labels[t], True)
    (s17,) = load_dataset(d17)
    assert s17.name == "clip" and len(s17) == 3 and (s17.labels == 255).any()
    assert np.array_equal(s17.labels[:, :, 2:], v.labels[:, :, 2:]) and s17.object_ids == [1, 2]
    (syt,) = load_dataset(tmp_path / "ytvos")
    assert len(syt) == 2 and np.array_equal(syt.labels, v.labels[[0, 2]])
