"""Dense CRF on a small synthetic image, and CRFPool determinism and ordering."""
import argparse
import sys

import numpy as np
import pytest

pytest.importorskip('pydensecrf.densecrf')

from deeplab_resnet.common import constants   # noqa: E402
from deeplab_resnet.predict.crf import (CRFParams, CRFPool, add_crf_arguments,  # noqa: E402
                                        crf_params_from_args, dense_crf)

H, W, C = 40, 50, 3


def synthetic(seed):
    """A 40x50 image: a red disc (class 1) and a blue bar (class 2) on grey (class 0).

    Returns: image [H, W, 3] uint8 RGB, gt [H, W] int64, noisy softmax probs [H, W, C] float32.
    """
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[:H, :W]
    gt = np.zeros((H, W), np.int64)
    gt[(yy - 18) ** 2 + (xx - 15) ** 2 < 10 ** 2] = 1
    gt[5:35, 34:44] = 2
    colours = np.array([[128, 128, 128], [220, 30, 30], [30, 40, 210]])
    image = np.clip(colours[gt] + rng.randint(-2, 3, (H, W, 3)), 0, 255).astype(np.uint8)
    logits = 1.0 * np.eye(C)[gt] + 1.2 * rng.randn(H, W, C)
    probs = np.exp(logits)
    probs /= probs.sum(axis=-1, keepdims=True)
    return image, gt, probs.astype(np.float32)


def test_dense_crf_shape_normalised_and_cleans_noise():
    image, gt, probs = synthetic(0)
    q = dense_crf(image, probs, CRFParams())
    assert q.shape == (H, W, C) and q.dtype == np.float32
    np.testing.assert_allclose(q.sum(axis=-1), 1.0, atol=1e-4)
    before = (probs.argmax(-1) == gt).mean()
    after = (q.argmax(-1) == gt).mean()
    assert before < 0.8          # the noise really is noisy
    assert after > 0.97 and after > before + 0.15, (before, after)


def test_dense_crf_rejects_mismatched_image():
    image, _, probs = synthetic(0)
    with pytest.raises(ValueError):
        dense_crf(image[:-1], probs)


def test_crf_arguments_defaults_and_override():
    parser = add_crf_arguments(argparse.ArgumentParser())
    params = crf_params_from_args(parser.parse_args([]))
    assert params == CRFParams() == CRFParams(
        constants.CRF_ITERATIONS, constants.CRF_POS_W, constants.CRF_POS_XY_STD,
        constants.CRF_BI_W, constants.CRF_BI_XY_STD, constants.CRF_BI_RGB_STD)
    params = crf_params_from_args(parser.parse_args(
        ['--crf-iterations', '5', '--crf-bi-rgb-std', '5.5', '--crf-pos-w', '2']))
    assert params.iterations == 5 and isinstance(params.iterations, int)
    assert params.bi_rgb_std == 5.5 and params.pos_w == 2.0
    assert params.bi_w == constants.CRF_BI_W


def run_pool(num_workers, items, return_probs=False):
    out = []
    with CRFPool(num_workers, CRFParams(iterations=5), return_probs=return_probs,
                 max_pending=2) as pool:
        for key, image, probs in items:
            pool.submit(key, image, probs)
            out.extend(pool.ready())
        out.extend(pool.results())
        assert len(pool) == 0
    return out


def test_pool_same_results_in_submission_order_for_0_1_2_workers():
    items = []
    for i in range(5):
        image, _, probs = synthetic(i)
        items.append(('img%d' % i, image, probs))
    keys = [k for k, _, _ in items]
    main = sys.modules['__main__']
    results = {n: run_pool(n, items) for n in (0, 1, 2)}
    assert sys.modules['__main__'] is main   # hidden only while workers start
    for n, res in results.items():
        assert [k for k, _ in res] == keys, n
        for (_, labels), (_, ref) in zip(res, results[0]):
            assert labels.dtype == np.int32 and labels.shape == (H, W)
            np.testing.assert_array_equal(labels, ref)
    inline = [np.argmax(dense_crf(im, p, CRFParams(iterations=5)), -1) for _, im, p in items]
    for (_, labels), ref in zip(results[0], inline):
        np.testing.assert_array_equal(labels, ref)


def test_pool_return_probs_and_closed():
    image, _, probs = synthetic(0)
    [(key, q)] = run_pool(1, [('a', image, probs)], return_probs=True)
    assert key == 'a' and q.shape == (H, W, C) and q.dtype == np.float32
    np.testing.assert_array_equal(q, dense_crf(image, probs, CRFParams(iterations=5)))
    pool = CRFPool(0)
    pool.close()
    with pytest.raises(ValueError):
        pool.submit('b', image, probs)


def test_pool_worker_error_is_raised_in_order():
    image, _, probs = synthetic(0)
    with CRFPool(1, CRFParams(iterations=1)) as pool:
        pool.submit('good', image, probs)
        pool.submit('bad', image[:-1], probs)
        it = pool.results()
        assert next(it)[0] == 'good'
        with pytest.raises(ValueError):
            next(it)


class ColourPredictor(object):
    """A stand-in for predictor.Predictor: probabilities proportional to the R, G, B values
    (3 classes), labels their argmax."""

    def __init__(self):
        self.calls = 0

    def predict(self, rgb, want_probs=False):
        self.calls += 1
        rgb = rgb.astype(np.float32) + 1.0
        probs = rgb / rgb.sum(axis=-1, keepdims=True)
        return np.argmax(probs, axis=-1).astype(np.int32), (probs if want_probs else None)


def test_predictions_in_order_with_and_without_crf():
    from deeplab_resnet.common.errors import InputError
    from deeplab_resnet.predict.predictor import predictions
    images = {i: synthetic(i)[0] for i in range(5)}
    plain = list(predictions(ColourPredictor(), range(5), images.__getitem__))
    assert [p.item for p in plain] == list(range(5))
    assert all(p.probs is None and p.crf is None and p.labels.shape == (H, W) for p in plain)
    params = CRFParams(iterations=3)
    for workers in (0, 2):
        with CRFPool(workers, params, max_pending=2) as pool:
            refined = list(predictions(ColourPredictor(), range(5), images.__getitem__, pool,
                                       want_probs=True))
        assert [p.item for p in refined] == list(range(5)), workers
        for p, q in zip(refined, plain):
            np.testing.assert_array_equal(p.labels, q.labels)
            expected = np.argmax(dense_crf(p.image, p.probs, params), -1)
            np.testing.assert_array_equal(p.crf, expected)

    def read(i):
        if i == 2:
            raise InputError('image 2 is unreadable')
        return images[i]

    failed = []
    with CRFPool(1, params) as pool:
        kept = list(predictions(ColourPredictor(), range(5), read, pool,
                                on_error=lambda item, e: failed.append((item, str(e))),
                                errors=(InputError,)))
    assert [p.item for p in kept] == [0, 1, 3, 4]
    assert failed == [(2, 'image 2 is unreadable')]
    with pytest.raises(InputError):   # nothing is caught without on_error
        list(predictions(ColourPredictor(), range(5), read))
