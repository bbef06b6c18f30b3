import torch

from inference.ml.forensics import IMAGE_MEAN, IMAGE_STD, ConstrainedConv2d, ForensicStem, srm_kernels


def test_constrained_conv_keeps_its_constraint():
    conv = ConstrainedConv2d(out_channels=4, kernel_size=5)
    with torch.no_grad():
        conv.weight.normal_()  # whatever the optimiser did
    w = conv.constrained_weight()
    assert torch.allclose(w[:, 0, 2, 2], torch.full((4,), -1.0))
    off = w.sum(dim=(1, 2, 3)) - w[:, 0, 2, 2]
    assert torch.allclose(off, torch.ones(4), atol=1e-5)


def test_residuals_vanish_on_smooth_images():
    # each filter sums to zero: a constant image has no residual; a linear ramp neither (second order)
    assert torch.allclose(srm_kernels().sum(dim=(1, 2, 3)), torch.zeros(3), atol=1e-6)
    stem = ForensicStem(srm=True, constrained=3).eval()
    grey = torch.full((1, 1, 32, 32), 0.4)
    x = (grey - IMAGE_MEAN) / IMAGE_STD
    raw = torch.nn.functional.conv2d((x * IMAGE_STD + IMAGE_MEAN) * 255, stem.srm_weight)
    assert raw.abs().max() < 1e-3
    noisy = x + torch.randn_like(x) * 0.05
    raw_noisy = torch.nn.functional.conv2d((noisy * IMAGE_STD + IMAGE_MEAN) * 255, stem.srm_weight)
    assert raw_noisy.abs().mean() > 0.5
    assert stem(x).shape == (1, 7, 32, 32)
