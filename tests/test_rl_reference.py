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
    rl.main(["--shared", str(shared), "--iters", "10", "--limit", "8"])
    out = capsys.readouterr().out
    assert out.count("8 pairs") == 2
    # im1 with each of the 8 kernels: RL given the true kernel (as the pairs
    # were blurred) gains on every one (turned the other way, k4-k8 lose).
    levin = next(line for line in out.splitlines() if "RL  10 it: mean" in line)
    gains = [float(part.split()[1]) for part in levin.split("|")[1].split("k")[1:]]
    assert len(gains) == 8 and min(gains) > 1.0, levin


def test_bad_arguments(rl, tmp_path):
    with pytest.raises(SystemExit, match="--iters"):
        rl.main(["--iters", "0"])
    with pytest.raises(SystemExit, match="--limit"):
        rl.main(["--limit", "0"])
    with pytest.raises(SystemExit, match="not found"):
        rl.main(["--shared", str(tmp_path)])


def test_levin_pairs_are_blurred_by_the_stored_kernels_turned_180_degrees(rl):
    # k6 is far from symmetric: only one orientation can fit the pair.
    import cv2

    from tfdeblur.datasets import load_kernels

    shared = shared_path()
    root = shared / "data" / "levin09_pairs"
    sharp = cv2.imread(str(root / "sharp" / "im1_kernel6.png"), cv2.IMREAD_GRAYSCALE) / 255.0
    blurry = cv2.imread(str(root / "blur" / "im1_kernel6.png"), cv2.IMREAD_GRAYSCALE) / 255.0
    k6 = np.asarray(load_kernels(shared / "data" / "kernels" / "levin09.npz")[5], np.float64)
    k6 /= k6.sum()
    turned = rl.fit_db(sharp, blurry, rl.levin_pair_kernel(k6))
    assert turned > 40.0
    assert rl.fit_db(sharp, blurry, k6) < turned - 10.0
    np.testing.assert_array_equal(rl.levin_pair_kernel(rl.levin_pair_kernel(k6)), k6)
