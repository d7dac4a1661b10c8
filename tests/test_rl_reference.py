"""benchmarks/rl_reference.py: the non-blind Richardson-Lucy reference."""
import numpy as np
import pytest

from tests.helpers import load_benchmark, shared_path


@pytest.fixture(scope="module")
def rl():
    return load_benchmark("rl_reference")


def _scene(seed=0, size=80):
    import cv2

    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.random((size, size)), (0, 0), 1.0)
    return 0.1 + 0.8 * (img - img.min()) / (img.max() - img.min())


def _kernel():
    k = np.zeros((9, 9))
    k[4, 1:8] = 1.0  # a horizontal streak ...
    k[1:4, 7] = 1.0  # ... with a hook: not symmetric, so a flip shows
    return k / k.sum()


def test_convolution_matches_the_library_blur(rl):
    from tfdeblur.datasets import blur_image

    x, k = _scene(1), _kernel()
    want = blur_image(x.astype(np.float32), k.astype(np.float32), noise_sigma=0, gamma=1, quantize=False)
    np.testing.assert_allclose(rl.convolve(x, k), want, atol=1e-5)


def test_richardson_lucy_with_the_true_kernel_restores_and_a_mirrored_one_does_not(rl):
    x, k = _scene(2), _kernel()
    y = rl.convolve(x, k)

    def psnr(a):
        return 10 * np.log10(1.0 / np.mean((a[8:-8, 8:-8] - x[8:-8, 8:-8]) ** 2))

    base, good = psnr(y), psnr(rl.richardson_lucy(y, k, 30))
    assert good > base + 3.0
    assert psnr(rl.richardson_lucy(y, k[::-1, ::-1], 30)) < good - 3.0


def test_prints_gains_on_the_shared_sets(rl, capsys):
    shared = shared_path()
    rl.main(["--shared", str(shared), "--iters", "2", "--limit", "2"])
    out = capsys.readouterr().out
    assert "RL   2 it: mean +" in out and out.count("2 pairs") == 2


def test_bad_arguments(rl, tmp_path):
    with pytest.raises(SystemExit, match="--iters"):
        rl.main(["--iters", "0"])
    with pytest.raises(SystemExit, match="--limit"):
        rl.main(["--limit", "0"])
    with pytest.raises(SystemExit, match="not found"):
        rl.main(["--shared", str(tmp_path)])
