// Multi-scale deformable attention: operator schema and CPU kernels.
//
// Forward is parallel over (batch, query, head) items, heads innermost: the
// heads of one query sample around the same reference point, and in value's
// [B, S, M, D] layout their rows share cache lines and pages.
//
// Backward, without atomics: the (batch, query) plane is cut into units of
// (batch, head group, query chunk). A unit owns the grad_value rows of its
// batch and heads, so units of different head groups never write the same row;
// query chunks of the same rows write private buffers (allocated only when the
// batch and head groups alone cannot keep every thread busy) that are summed
// once at the end. With one head group per batch (the usual case: batch a
// multiple of the thread count) a unit walks its queries with all heads
// innermost, the same cache-friendly order as the forward.
//
// Speed (the fallback is grid_sample; see scripts/benchmark_msda.py):
// * the four corners of a sampling point are handled in one pass over the
//   channels (one read-modify-write of the output row instead of four, four
//   independent dot products in the backward instead of a dependent chain);
//   a corner outside the map reads a row of zeros, so that loop has no branches;
// * the channel count is a compile-time constant for the usual widths (16, 32,
//   64), so the channel loops unroll into whole vector registers;
// * with GCC on x86-64 Linux the loops are compiled for AVX-512, AVX2 and the
//   baseline ISA and picked at load time (target_clones), so one cached build
//   runs fast on any x86-64 machine.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <vector>

#include "msda_ops.h"

#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__) && \
    __GNUC__ >= 12
#define HFSEG_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define HFSEG_CLONES
#endif

#if defined(__GNUC__)
#define HFSEG_INLINE inline __attribute__((always_inline))
#else
#define HFSEG_INLINE inline
#endif

namespace hf_seg_msda {
namespace {

// Everything the loops read, in one place (layouts in msda.h).
template <typename scalar_t>
struct Inputs {
  const scalar_t* value;
  const int64_t* shapes;
  const int64_t* starts;
  const scalar_t* loc;
  const scalar_t* attn;
  Dims d;
};

// Row pointers of the four corners of one sampling point; `vb` is the value of
// this batch and head at row 0, `row_stride` the distance between rows. Corners
// outside the map point at `zero`.
template <typename scalar_t>
HFSEG_INLINE void corner_rows(const Bilinear<scalar_t>& bl, int64_t start, int64_t S,
                              int64_t row_stride, const scalar_t* vb, const scalar_t* zero,
                              const scalar_t* r[4]) {
  for (int c = 0; c < 4; ++c) {
    const int64_t row = bl.row[c];
    r[c] = (row >= 0 && start + row < S) ? vb + (start + row) * row_stride : zero;
  }
}

// Items [begin, end) of the flattened (batch, query, head) order. D is the
// channel count, a compile-time constant when DC > 0. out must hold zeros.
template <typename scalar_t, int DC>
HFSEG_INLINE void forward_items(const Inputs<scalar_t>& in, scalar_t* out, int64_t begin,
                                int64_t end) {
  const Dims& d = in.d;
  const int64_t D = DC > 0 ? DC : d.D;
  const int64_t row_stride = d.M * D;
  const std::vector<scalar_t> zeros(D, scalar_t(0));
  const scalar_t* zero = zeros.data();
  for (int64_t item = begin; item < end; ++item) {
    const int64_t m = item % d.M;
    const int64_t b = item / (d.Q * d.M);
    const scalar_t* vb = in.value + b * d.S * row_stride + m * D;
    const scalar_t* lp = in.loc + item * d.L * d.P * 2;
    const scalar_t* ap = in.attn + item * d.L * d.P;
    scalar_t* __restrict__ o = out + item * D;
    for (int64_t l = 0; l < d.L; ++l) {
      const int64_t H = in.shapes[2 * l], W = in.shapes[2 * l + 1], start = in.starts[l];
      for (int64_t p = 0; p < d.P; ++p) {
        const int64_t k = l * d.P + p;
        Bilinear<scalar_t> bl;
        bilinear_setup<scalar_t>(lp[2 * k], lp[2 * k + 1], H, W, bl);
        if (!bl.any) continue;
        const scalar_t* r[4];
        corner_rows(bl, start, d.S, row_stride, vb, zero, r);
        const scalar_t a = ap[k];
        const scalar_t w0 = a * bl.w[0], w1 = a * bl.w[1], w2 = a * bl.w[2], w3 = a * bl.w[3];
        const scalar_t* __restrict__ r0 = r[0];
        const scalar_t* __restrict__ r1 = r[1];
        const scalar_t* __restrict__ r2 = r[2];
        const scalar_t* __restrict__ r3 = r[3];
#pragma omp simd
        for (int64_t i = 0; i < D; ++i) o[i] += w0 * r0[i] + w1 * r1[i] + w2 * r2[i] + w3 * r3[i];
      }
    }
  }
}

template <typename scalar_t>
HFSEG_CLONES void forward_range(const Inputs<scalar_t>& in, scalar_t* out, int64_t begin,
                                int64_t end) {
  switch (in.d.D) {
    case 16: forward_items<scalar_t, 16>(in, out, begin, end); break;
    case 32: forward_items<scalar_t, 32>(in, out, begin, end); break;
    case 64: forward_items<scalar_t, 64>(in, out, begin, end); break;
    default: forward_items<scalar_t, 0>(in, out, begin, end);
  }
}

// One backward unit: batch b, heads [m_begin, m_end), queries [q_begin, q_end).
struct Unit {
  int64_t b, m_begin, m_end, q_begin, q_end;
};

// Accumulates the unit's grad_value into `gbuf` (a whole [B, S, M, D] buffer,
// owned by the unit's query chunk) and writes grad_loc / grad_attn of its items.
template <typename scalar_t, int DC>
HFSEG_INLINE void backward_unit(const Inputs<scalar_t>& in, const scalar_t* grad_out,
                                scalar_t* gbuf, scalar_t* grad_loc, scalar_t* grad_attn,
                                const Unit& u) {
  const Dims& d = in.d;
  const int64_t D = DC > 0 ? DC : d.D;
  const int64_t row_stride = d.M * D;
  // Row 0 holds the zeros that corners outside the map read; rows 1-4 receive
  // their (zero-weighted) gradient, so the update loop needs no branch either.
  std::vector<scalar_t> scratch(5 * D, scalar_t(0));
  const scalar_t* zero = scratch.data();
  for (int64_t q = u.q_begin; q < u.q_end; ++q) {
    for (int64_t m = u.m_begin; m < u.m_end; ++m) {
      const int64_t item = (u.b * d.Q + q) * d.M + m;
      const int64_t head = u.b * d.S * row_stride + m * D;
      const scalar_t* vb = in.value + head;
      scalar_t* gvb = gbuf + head;
      const scalar_t* __restrict__ go = grad_out + item * D;
      const scalar_t* lp = in.loc + item * d.L * d.P * 2;
      const scalar_t* ap = in.attn + item * d.L * d.P;
      scalar_t* glp = grad_loc + item * d.L * d.P * 2;
      scalar_t* gap = grad_attn + item * d.L * d.P;
      for (int64_t l = 0; l < d.L; ++l) {
        const int64_t H = in.shapes[2 * l], W = in.shapes[2 * l + 1], start = in.starts[l];
        for (int64_t p = 0; p < d.P; ++p) {
          const int64_t k = l * d.P + p;
          Bilinear<scalar_t> bl;
          bilinear_setup<scalar_t>(lp[2 * k], lp[2 * k + 1], H, W, bl);
          if (!bl.any) {
            gap[k] = 0;
            glp[2 * k] = 0;
            glp[2 * k + 1] = 0;
            continue;
          }
          const scalar_t* r[4];
          corner_rows(bl, start, d.S, row_stride, vb, zero, r);
          const scalar_t* __restrict__ r0 = r[0];
          const scalar_t* __restrict__ r1 = r[1];
          const scalar_t* __restrict__ r2 = r[2];
          const scalar_t* __restrict__ r3 = r[3];
          scalar_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
          for (int64_t i = 0; i < D; ++i) {
            const scalar_t g = go[i];
            s0 += g * r0[i];
            s1 += g * r1[i];
            s2 += g * r2[i];
            s3 += g * r3[i];
          }
          const scalar_t s[4] = {s0, s1, s2, s3};
          const scalar_t a = ap[k];
          scalar_t ga = 0, gx = 0, gy = 0;
          for (int c = 0; c < 4; ++c) {
            ga += bl.w[c] * s[c];
            gx += bilinear_dwdx(bl, c) * s[c];
            gy += bilinear_dwdy(bl, c) * s[c];
          }
          gap[k] = ga;
          glp[2 * k] = a * gx * static_cast<scalar_t>(W);
          glp[2 * k + 1] = a * gy * static_cast<scalar_t>(H);
          // The four targets are distinct rows (a corner outside the map gets
          // its own scratch row), so each update is a loop over one restrict row.
          for (int c = 0; c < 4; ++c) {
            scalar_t* __restrict__ gr =
                r[c] == zero ? scratch.data() + (c + 1) * D : gvb + (r[c] - vb);
            const scalar_t w = a * bl.w[c];
#pragma omp simd
            for (int64_t i = 0; i < D; ++i) gr[i] += w * go[i];
          }
        }
      }
    }
  }
}

template <typename scalar_t>
HFSEG_CLONES void backward_range(const Inputs<scalar_t>& in, const scalar_t* grad_out,
                                 scalar_t* gbuf, scalar_t* grad_loc, scalar_t* grad_attn,
                                 const Unit& u) {
  switch (in.d.D) {
    case 16: backward_unit<scalar_t, 16>(in, grad_out, gbuf, grad_loc, grad_attn, u); break;
    case 32: backward_unit<scalar_t, 32>(in, grad_out, gbuf, grad_loc, grad_attn, u); break;
    case 64: backward_unit<scalar_t, 64>(in, grad_out, gbuf, grad_loc, grad_attn, u); break;
    default: backward_unit<scalar_t, 0>(in, grad_out, gbuf, grad_loc, grad_attn, u);
  }
}

template <typename scalar_t>
void forward_kernel(const Inputs<scalar_t>& in, scalar_t* out) {
  const Dims& d = in.d;
  const int64_t items = d.B * d.Q * d.M;
  const int64_t cost = std::max<int64_t>(1, d.L * d.P * 4 * d.D);
  const int64_t grain = std::max<int64_t>(1, 16384 / cost);
  at::parallel_for(0, items, grain, [&](int64_t begin, int64_t end) {
    forward_range<scalar_t>(in, out, begin, end);
  });
}

// How the backward cuts (batch, head, query) into units: `groups` head groups
// per batch and `chunks` query chunks per group.
struct Split {
  int64_t groups, chunks;
};

Split backward_split(const Dims& d, int64_t threads) {
  if (threads <= 1 || d.B % threads == 0) return {1, 1};
  // At least two units per thread keeps the largest share within 1.5x of the
  // mean; head groups cost nothing, query chunks cost a grad_value buffer each.
  const int64_t want = 2 * threads;
  const int64_t groups = std::min(d.M, (want + d.B - 1) / d.B);
  const int64_t per_chunk = d.B * groups;
  const int64_t chunks = per_chunk >= want ? 1 : std::min(d.Q, (want + per_chunk - 1) / per_chunk);
  return {groups, std::max<int64_t>(1, chunks)};
}

template <typename scalar_t>
void backward_kernel(const Inputs<scalar_t>& in, const scalar_t* grad_out, scalar_t* grad_value,
                     scalar_t* grad_value_extra, scalar_t* grad_loc, scalar_t* grad_attn,
                     const Split& split) {
  const Dims& d = in.d;
  const int64_t slice = d.B * d.S * d.M * d.D;  // size of one grad_value buffer
  const int64_t q_per_chunk = (d.Q + split.chunks - 1) / split.chunks;
  at::parallel_for(0, d.B * split.groups * split.chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t c = unit % split.chunks;
      const int64_t g = (unit / split.chunks) % split.groups;
      const int64_t b = unit / (split.chunks * split.groups);
      const Unit u{b, g * d.M / split.groups, (g + 1) * d.M / split.groups, c * q_per_chunk,
                   std::min(d.Q, (c + 1) * q_per_chunk)};
      scalar_t* gbuf = c == 0 ? grad_value : grad_value_extra + (c - 1) * slice;
      backward_range<scalar_t>(in, grad_out, gbuf, grad_loc, grad_attn, u);
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
    const Inputs<scalar_t> in{v.data_ptr<scalar_t>(), shapes.data_ptr<int64_t>(),
                              starts.data_ptr<int64_t>(), loc.data_ptr<scalar_t>(),
                              attn.data_ptr<scalar_t>(), d};
    forward_kernel<scalar_t>(in, out.data_ptr<scalar_t>());
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

  const Split split = backward_split(d, at::get_num_threads());
  at::Tensor extra;
  if (split.chunks > 1) {
    std::vector<int64_t> sz{split.chunks - 1};
    sz.insert(sz.end(), v.sizes().begin(), v.sizes().end());
    extra = at::zeros(sz, v.options());
  }
  AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "hf_seg_msda_backward_cpu", [&] {
    const Inputs<scalar_t> in{v.data_ptr<scalar_t>(), shapes.data_ptr<int64_t>(),
                              starts.data_ptr<int64_t>(), loc.data_ptr<scalar_t>(),
                              attn.data_ptr<scalar_t>(), d};
    backward_kernel<scalar_t>(in, go.data_ptr<scalar_t>(), grad_value.data_ptr<scalar_t>(),
                              split.chunks > 1 ? extra.data_ptr<scalar_t>() : nullptr,
                              grad_loc.data_ptr<scalar_t>(), grad_attn.data_ptr<scalar_t>(),
                              split);
  });
  if (split.chunks > 1) grad_value.add_(extra.sum(0));
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
