// The at::Tensor forward shared by the packed Linear types.
#include <ATen/ATen.h>

#include <vector>

#include "qnoise/error.h"
#include "qnoise/packed_linear.h"
#include "kernels/kernel_table.h"
#include "runtime/linear_shape.h"

namespace qnoise {

PackedLinearBase::PackedLinearBase(int64_t out, int64_t in, const RuntimeOptions& options)
    : out_(out), in_(in), options_(options), kernels_(&kernels::kernel_table(options.kernel_path)) {
  options_.kernel_path = kernels_->path;
}

at::Tensor PackedLinearBase::forward(const at::Tensor& x, const at::Tensor& bias) const {
  return forward_tensor(x, bias, [this](const float* in, int64_t batch, float* out, const float* b) {
    forward(in, batch, out, b);
  });
}

at::Tensor PackedLinearBase::input_rows(const at::Tensor& x, int64_t width, const char* what) const {
  QNOISE_CHECK(x.defined() && (x.dim() == 1 || x.dim() == 2) && x.size(-1) == width, "packed Linear [", out_, ", ",
               in_, "]: ", what, " must be [batch, ", width, "] or [", width, "], got ",
               x.defined() ? shape_to_string(x.sizes().vec()) : "none");
  QNOISE_CHECK(x.scalar_type() == at::kFloat && x.device().is_cpu(), "packed Linear: input must be float32 on the CPU");
  return x.dim() == 1 ? x.unsqueeze(0).contiguous() : x.contiguous();
}

at::Tensor PackedLinearBase::forward_tensor(const at::Tensor& x, const at::Tensor& bias, const RawForward& run) const {
  const at::Tensor input = input_rows(x, in_, "input");
  QNOISE_CHECK(!bias.defined() || (bias.dim() == 1 && bias.size(0) == out_ && bias.scalar_type() == at::kFloat),
               "packed Linear [", out_, ", ", in_, "]: bias must be float32 [", out_, "], got ",
               bias.defined() ? shape_to_string(bias.sizes().vec()) : "none");
  const at::Tensor b = bias.defined() ? bias.contiguous() : bias;
  at::Tensor y = at::empty({input.size(0), out_}, input.options());
  run(input.data_ptr<float>(), input.size(0), y.data_ptr<float>(), b.defined() ? b.data_ptr<float>() : nullptr);
  return x.dim() == 1 ? y.squeeze(0) : y;
}

at::Tensor PackedLinearBase::decode_rows(const at::Tensor& indices) const {
  QNOISE_CHECK(indices.defined() && at::isIntegralType(indices.scalar_type(), /*includeBool=*/false),
               "packed Linear decode_rows: indices must be an integer tensor");
  const at::Tensor index = indices.reshape({-1}).to(at::kLong).contiguous();
  const int64_t n = index.numel();
  const int64_t* rows = index.data_ptr<int64_t>();
  for (int64_t r = 0; r < n; ++r)
    QNOISE_CHECK(rows[r] >= 0 && rows[r] < out_, "decode_rows: index ", rows[r], " is outside the table's ", out_,
                 " rows");
  at::Tensor out = at::empty({n, in_}, at::kFloat);
  float* dst = out.data_ptr<float>();
  for (int64_t r = 0; r < n; ++r) decode_row(rows[r], dst + r * in_);
  return out;
}

at::Tensor PackedLinearBase::transposed_forward(const at::Tensor& x) const {
  const at::Tensor input = input_rows(x, out_, "transposed input");
  at::Tensor y = at::zeros({input.size(0), in_}, input.options());
  transposed_product(input.data_ptr<float>(), input.size(0), y.data_ptr<float>());
  return x.dim() == 1 ? y.squeeze(0) : y;
}

void PackedLinearBase::transposed_product(const float* x, int64_t batch, float* y) const {
  std::vector<float> row(static_cast<size_t>(in_));
  for (int64_t o = 0; o < out_; ++o) {
    decode_row(o, row.data());
    for (int64_t b = 0; b < batch; ++b) {
      const float scale = x[b * out_ + o];
      float* yb = y + b * in_;
      for (int64_t i = 0; i < in_; ++i) yb[i] += scale * row[static_cast<size_t>(i)];
    }
  }
}

}  // namespace qnoise

namespace qnoise::runtime {

std::pair<int64_t, int64_t> linear_out_in(const CompressedWeight& weight, const char* what) {
  const auto& s = weight.shape;
  const bool linear = s.size() == 2;
  const bool conv_1x1 = s.size() == 4 && s[2] == 1 && s[3] == 1;
  QNOISE_CHECK(linear || conv_1x1, what, " takes a Linear weight [out, in] or a 1x1 conv weight [out, in, 1, 1], got ",
               shape_to_string(s));
  QNOISE_CHECK(s[0] > 0 && s[1] > 0, what, ": empty weight ", shape_to_string(s));
  return {s[0], s[1]};
}

}  // namespace qnoise::runtime
