// Multi-scale deformable attention: operator schema and CPU kernels.
//
// Forward is parallel over (batch, query, head) items. Backward is parallel over
// (batch, head, query-chunk) units: every unit owns the grad_value rows of its
// (batch, head) slice, so no atomics are needed; when there are fewer slices
// than threads, extra query chunks accumulate into private buffers that are
// summed at the end.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include <algorithm>

#include "msda_ops.h"

namespace hf_seg_msda {
namespace {

template <typename scalar_t>
inline void axpy(scalar_t* __restrict__ y, const scalar_t* __restrict__ x, scalar_t a,
                 int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

template <typename scalar_t>
inline scalar_t dot(const scalar_t* __restrict__ x, const scalar_t* __restrict__ y, int64_t n) {
  scalar_t s = 0;
  for (int64_t i = 0; i < n; ++i) s += x[i] * y[i];
  return s;
}

// A corner row is usable when it lies inside its level and inside value.
inline bool row_ok(int64_t row, int64_t start, int64_t S) {
  return row >= 0 && start + row < S;
}

template <typename scalar_t>
void forward_kernel(const scalar_t* value, const int64_t* shapes, const int64_t* starts,
                    const scalar_t* loc, const scalar_t* attn, scalar_t* out, const Dims& d) {
  const int64_t items = d.B * d.Q * d.M;
  const int64_t cost = std::max<int64_t>(1, d.L * d.P * 4 * d.D);
  const int64_t grain = std::max<int64_t>(1, 16384 / cost);
  const int64_t row_stride = d.M * d.D;  // elements between consecutive value rows
  at::parallel_for(0, items, grain, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t m = item % d.M;
      const int64_t b = item / (d.Q * d.M);
      const scalar_t* vb = value + b * d.S * row_stride + m * d.D;
      const scalar_t* lp = loc + item * d.L * d.P * 2;
      const scalar_t* ap = attn + item * d.L * d.P;
      scalar_t* o = out + item * d.D;
      for (int64_t l = 0; l < d.L; ++l) {
        const int64_t H = shapes[2 * l], W = shapes[2 * l + 1], start = starts[l];
        for (int64_t p = 0; p < d.P; ++p) {
          const int64_t k = l * d.P + p;
          Bilinear<scalar_t> bl;
          bilinear_setup<scalar_t>(lp[2 * k], lp[2 * k + 1], H, W, bl);
          if (!bl.any) continue;
          const scalar_t a = ap[k];
          for (int c = 0; c < 4; ++c) {
            if (!row_ok(bl.row[c], start, d.S)) continue;
            axpy(o, vb + (start + bl.row[c]) * row_stride, a * bl.w[c], d.D);
          }
        }
      }
    }
  });
}

template <typename scalar_t>
void backward_kernel(const scalar_t* grad_out, const scalar_t* value, const int64_t* shapes,
                     const int64_t* starts, const scalar_t* loc, const scalar_t* attn,
                     scalar_t* grad_value, scalar_t* grad_value_extra, scalar_t* grad_loc,
                     scalar_t* grad_attn, const Dims& d, int64_t chunks) {
  const int64_t row_stride = d.M * d.D;
  const int64_t slice = d.B * d.S * row_stride;  // size of one grad_value buffer
  const int64_t q_per_chunk = (d.Q + chunks - 1) / chunks;
  at::parallel_for(0, d.B * d.M * chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t c = unit % chunks;
      const int64_t bm = unit / chunks;
      const int64_t b = bm / d.M, m = bm % d.M;
      scalar_t* gbuf = c == 0 ? grad_value : grad_value_extra + (c - 1) * slice;
      scalar_t* gvb = gbuf + b * d.S * row_stride + m * d.D;
      const scalar_t* vb = value + b * d.S * row_stride + m * d.D;
      const int64_t q_end = std::min(d.Q, (c + 1) * q_per_chunk);
      for (int64_t q = c * q_per_chunk; q < q_end; ++q) {
        const int64_t item = (b * d.Q + q) * d.M + m;
        const scalar_t* go = grad_out + item * d.D;
        const scalar_t* lp = loc + item * d.L * d.P * 2;
        const scalar_t* ap = attn + item * d.L * d.P;
        scalar_t* glp = grad_loc + item * d.L * d.P * 2;
        scalar_t* gap = grad_attn + item * d.L * d.P;
        for (int64_t l = 0; l < d.L; ++l) {
          const int64_t H = shapes[2 * l], W = shapes[2 * l + 1], start = starts[l];
          for (int64_t p = 0; p < d.P; ++p) {
            const int64_t k = l * d.P + p;
            Bilinear<scalar_t> bl;
            bilinear_setup<scalar_t>(lp[2 * k], lp[2 * k + 1], H, W, bl);
            scalar_t ga = 0, gx = 0, gy = 0;
            const scalar_t a = ap[k];
            if (bl.any) {
              for (int cc = 0; cc < 4; ++cc) {
                if (!row_ok(bl.row[cc], start, d.S)) continue;
                const int64_t off = (start + bl.row[cc]) * row_stride;
                const scalar_t s = dot(go, vb + off, d.D);
                ga += bl.w[cc] * s;
                gx += bilinear_dwdx(bl, cc) * s;
                gy += bilinear_dwdy(bl, cc) * s;
                axpy(gvb + off, go, a * bl.w[cc], d.D);
              }
            }
            gap[k] = ga;
            glp[2 * k] = a * gx * static_cast<scalar_t>(W);
            glp[2 * k + 1] = a * gy * static_cast<scalar_t>(H);
          }
        }
      }
    }
  });
}

// CPU checks that need the (cheap) host values of the level table.
void check_levels_cpu(const at::Tensor& shapes, const at::Tensor& starts, const Dims& d) {
  const int64_t* sh = shapes.data_ptr<int64_t>();
  const int64_t* st = starts.data_ptr<int64_t>();
  int64_t total = 0;
  for (int64_t l = 0; l < d.L; ++l) {
    TORCH_CHECK(sh[2 * l] > 0 && sh[2 * l + 1] > 0, "ms_deform_attn: level ", l,
                " has a non-positive spatial shape (", sh[2 * l], ", ", sh[2 * l + 1], ")");
    TORCH_CHECK(st[l] == total, "ms_deform_attn: level_start_index[", l, "] = ", st[l],
                " but the levels before it hold ", total, " rows");
    total += sh[2 * l] * sh[2 * l + 1];
  }
  TORCH_CHECK(total == d.S, "ms_deform_attn: sum of H*W over spatial_shapes is ", total,
              " but value has ", d.S, " rows");
}

bool is_reduced_float(const at::Tensor& t) {
  return t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16;
}

at::Tensor forward_cpu(const at::Tensor& value, const at::Tensor& spatial_shapes,
                       const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                       const at::Tensor& attention_weights) {
  const Dims d = check_inputs(value, spatial_shapes, level_start_index, sampling_locations,
                              attention_weights);
  if (is_reduced_float(value)) {  // compute in float32 on CPU
    return forward_cpu(value.to(at::kFloat), spatial_shapes, level_start_index,
                       sampling_locations.to(at::kFloat), attention_weights.to(at::kFloat))
        .to(value.scalar_type());
  }
  const auto shapes = spatial_shapes.contiguous();
  const auto starts = level_start_index.contiguous();
  check_levels_cpu(shapes, starts, d);
  const auto v = value.contiguous();
  const auto loc = sampling_locations.contiguous();
  const auto attn = attention_weights.contiguous();
  auto out = at::zeros({d.B, d.Q, d.M * d.D}, v.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "hf_seg_msda_forward_cpu", [&] {
    forward_kernel<scalar_t>(v.data_ptr<scalar_t>(), shapes.data_ptr<int64_t>(),
                             starts.data_ptr<int64_t>(), loc.data_ptr<scalar_t>(),
                             attn.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), d);
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& value, const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights) {
  const Dims d = check_inputs(value, spatial_shapes, level_start_index, sampling_locations,
                              attention_weights);
  check_grad_output(grad_output, value, d);
  if (is_reduced_float(value)) {
    auto r = backward_cpu(grad_output.to(at::kFloat), value.to(at::kFloat), spatial_shapes,
                          level_start_index, sampling_locations.to(at::kFloat),
                          attention_weights.to(at::kFloat));
    const auto t = value.scalar_type();
    return {std::get<0>(r).to(t), std::get<1>(r).to(t), std::get<2>(r).to(t)};
  }
  const auto shapes = spatial_shapes.contiguous();
  const auto starts = level_start_index.contiguous();
  check_levels_cpu(shapes, starts, d);
  const auto go = grad_output.contiguous();
  const auto v = value.contiguous();
  const auto loc = sampling_locations.contiguous();
  const auto attn = attention_weights.contiguous();
  auto grad_value = at::zeros(v.sizes(), v.options());
  auto grad_loc = at::zeros(loc.sizes(), loc.options());
  auto grad_attn = at::zeros(attn.sizes(), attn.options());
  if (d.B * d.Q * d.M * d.L * d.P == 0 || d.D == 0) return {grad_value, grad_loc, grad_attn};

  // Enough units for every thread (about two each), but never more chunks than queries.
  const int64_t threads = at::get_num_threads();
  const int64_t slices = d.B * d.M;
  int64_t chunks = 1;
  if (threads > 1 && slices < 2 * threads) {
    chunks = std::min<int64_t>(d.Q, (2 * threads + slices - 1) / slices);
  }
  at::Tensor extra;
  if (chunks > 1) {
    std::vector<int64_t> sz{chunks - 1};
    sz.insert(sz.end(), v.sizes().begin(), v.sizes().end());
    extra = at::zeros(sz, v.options());
  }
  AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "hf_seg_msda_backward_cpu", [&] {
    backward_kernel<scalar_t>(go.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(),
                              shapes.data_ptr<int64_t>(), starts.data_ptr<int64_t>(),
                              loc.data_ptr<scalar_t>(), attn.data_ptr<scalar_t>(),
                              grad_value.data_ptr<scalar_t>(),
                              chunks > 1 ? extra.data_ptr<scalar_t>() : nullptr,
                              grad_loc.data_ptr<scalar_t>(), grad_attn.data_ptr<scalar_t>(), d,
                              chunks);
  });
  if (chunks > 1) grad_value.add_(extra.sum(0));
  return {grad_value, grad_loc, grad_attn};
}

}  // namespace
}  // namespace hf_seg_msda

HFSEG_TORCH_LIBRARY(HFSEG_NS, m) {
  m.def(
      "forward(Tensor value, Tensor spatial_shapes, Tensor level_start_index, "
      "Tensor sampling_locations, Tensor attention_weights) -> Tensor");
  m.def(
      "backward(Tensor grad_output, Tensor value, Tensor spatial_shapes, "
      "Tensor level_start_index, Tensor sampling_locations, Tensor attention_weights) "
      "-> (Tensor, Tensor, Tensor)");
}

HFSEG_TORCH_LIBRARY_IMPL(HFSEG_NS, CPU, m) {
  m.impl("forward", &hf_seg_msda::forward_cpu);
  m.impl("backward", &hf_seg_msda::backward_cpu);
}
