"""The operators against exact values and the C++ library's definitions."""
import pytest
import torch

import qnoise

ops = qnoise.ops


def test_pq_noise_zeroes_chosen_blocks_and_rescales_the_rest_exactly():
    w = torch.arange(1.0, 33.0).reshape(4, 8)
    rate = 0.5
    noisy = ops.quant_noise_with_seed(w, rate, 4, "pq", 7)
    mask = ops.quant_noise_mask([4, 8], 4, rate, 7)  # [n_blocks], True = noised
    assert mask.shape == (8,) and mask.dtype == torch.bool
    expected = (w.reshape(8, 4) * (~mask).unsqueeze(1) / (1 - rate)).reshape(4, 8)
    assert torch.equal(noisy, expected)


def test_fresh_mask_comes_from_torch_generator():
    w = torch.randn(64, 64)
    torch.manual_seed(3)
    a = ops.quant_noise(w, 0.3, 8)
    b = ops.quant_noise(w, 0.3, 8)
    torch.manual_seed(3)
    again = ops.quant_noise(w, 0.3, 8)
    assert torch.equal(a, again)
    assert not torch.equal(a, b)  # a fresh mask per call


def test_noise_gradient_is_straight_through_and_eval_is_identity():
    w = torch.randn(16, 16, requires_grad=True)
    ops.quant_noise(w, 0.25, 4, "int4").sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))
    assert torch.equal(ops.quant_noise(w, 0.25, 4, "pq", None, False), w)


def test_int8_noise_replaces_chosen_weights_by_their_fake_quantized_value():
    w = torch.randn(8, 16)
    noisy = ops.quant_noise_with_seed(w, 1.0, 1, "int8", 0)
    assert torch.allclose(noisy, ops.fake_quantize(w, 8), atol=0, rtol=0)


def test_pq_exact_noise_uses_nearest_centroids():
    codebook = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    w = torch.tensor([[0.1, 0.2, 0.9, 1.2]])
    assert torch.equal(ops.quant_noise_with_seed(w, 1.0, 2, "pq-exact", 0, codebook),
                       torch.tensor([[0.0, 0.0, 1.0, 1.0]]))


def test_fake_quantize_exact_levels():
    w = torch.tensor([[-1.0, 0.0, 0.5, 1.0]])
    q = ops.fake_quantize(w, 2, False, True, "minmax")
    # 4 levels, step 2/3, zero point round(1 / step) = 2 (zero exact): -4/3, -2/3, 0, 2/3
    assert torch.allclose(q, torch.tensor([[-4.0 / 3.0, 0.0, 2.0 / 3.0, 2.0 / 3.0]]), atol=1e-6)


def test_kmeans_is_exact_with_as_many_centroids_as_distinct_blocks_and_seeded():
    blocks = torch.tensor([[0.0, 1.0], [5.0, 5.0], [0.0, 1.0], [-3.0, 2.0]] * 4)
    codebook, codes = ops.kmeans(blocks, 3, 10, 0, "sampled")
    assert torch.equal(codebook[codes], blocks)
    again = ops.kmeans(blocks, 3, 10, 0, "sampled")
    assert torch.equal(again[0], codebook) and torch.equal(again[1], codes)


def test_pq_encode_decode_error_and_compressed_size():
    w = torch.randn(64, 128)
    codebook, codes = ops.pq_encode(w, 8, 256, 15, 1, 0)
    assert codebook.shape == (256, 8) and codes.shape == (1024,) and codes.dtype == torch.int64
    decoded = ops.pq_decode(codebook, codes, [64, 128])
    assert (w - decoded).norm() / w.norm() < 0.6
    stored = ops.compress_pq(codebook, codes, [64, 128], "linear", 16)
    assert stored.stored_bytes() == 1024 + 256 * 8 * 2  # uint8 codes, float16 codebook
    assert torch.allclose(stored.decode(), ops.pq_decode(codebook.half().float(), codes, [64, 128]))


def test_pq_decode_gradient_sums_blocks():
    codebook = torch.zeros(2, 2, requires_grad=True)
    codes = torch.tensor([0, 1, 0])
    ops.pq_decode(codebook, codes, [1, 6]).sum().backward()
    assert torch.equal(codebook.grad, torch.tensor([[2.0, 2.0], [1.0, 1.0]]))


def test_scalar_compression_error_is_within_half_a_step():
    w = torch.randn(16, 40)
    for bits in (8, 4):
        stored = ops.compress_scalar(w, bits, "minmax")
        step = (w.max(1).values.clamp(min=0) - w.min(1).values.clamp(max=0)) / (2 ** bits - 1)
        assert ((stored.decode() - w).abs() <= step.unsqueeze(1) / 2 + 1e-6).all()
    assert ops.compress_scalar(w, 4, "minmax").stored_bytes() == 16 * 40 // 2 + 16 * 5


def test_compressed_tensor_rebuilds_from_its_parts_and_checks_them():
    stored = ops.compress_scalar(torch.randn(4, 8), 8, "minmax")
    parts = stored.parts()
    rebuilt = qnoise.classes.CompressedTensor(stored.description(), parts)
    assert torch.equal(rebuilt.decode(), stored.decode())
    parts[".codes"] = parts[".codes"].to(torch.int32)
    with pytest.raises(ValueError, match="part '.codes' is Int"):
        qnoise.classes.CompressedTensor(stored.description(), parts)


@pytest.mark.parametrize("call, message", [
    (lambda: ops.quant_noise(torch.randn(4, 6), 0.1, 4), "block_size 4 does not divide in_features 6"),
    (lambda: ops.quant_noise(torch.randn(4, 8), 1.5, 4), r"rate must be in \[0, 1\]"),
    (lambda: ops.quant_noise(torch.randn(4, 8), 1.0, 4), "pq noise with rate 1"),
    (lambda: ops.quant_noise(torch.randn(4, 8), 0.1, 4, "int9"), "2 to 8 bits, got 9"),
    (lambda: ops.quant_noise(torch.randn(8), 0.1, 4), "2-D"),
    (lambda: ops.pq_encode(torch.randn(4, 8), 4, 100, 5, 1, 0), "K"),
])
def test_bad_arguments_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()
