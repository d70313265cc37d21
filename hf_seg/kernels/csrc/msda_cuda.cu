// Multi-scale deformable attention: CUDA kernels.
//
// Work mapping: a group of G lanes (G a power of two, G <= 32, so a group never
// straddles a warp) handles one (batch, query, head) item; lane j handles the
// channels j, j + G, j + 2G, ... of dim_per_head. Value rows are contiguous in
// the channel axis, so a group reads each bilinear corner with coalesced loads.
// In backward, the per-point reductions over channels (for the gradients of the
// attention weight and of the location) use shuffles inside the group, and the
// gradient of value is scattered with atomicAdd into a buffer of the op-math
// type (float for half / bfloat16 inputs).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAStream.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include "msda_ops.h"

namespace hf_seg_msda {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ bool row_ok(int64_t row, int64_t start, int64_t S) {
  return row >= 0 && start + row < S;
}

template <int G>
__device__ __forceinline__ unsigned group_mask() {
  if constexpr (G == 32) {
    return 0xffffffffu;
  } else {
    const unsigned lane_in_warp = threadIdx.x & 31u;
    return ((1u << G) - 1u) << (lane_in_warp & ~static_cast<unsigned>(G - 1));
  }
}

template <int G, typename T>
__device__ __forceinline__ T group_sum(T v, unsigned mask) {
#pragma unroll
  for (int off = G / 2; off > 0; off >>= 1) v += __shfl_xor_sync(mask, v, off, G);
  return v;
}

template <typename scalar_t, int G>
__global__ void __launch_bounds__(kThreads)
    forward_kernel(const scalar_t* __restrict__ value, const int64_t* __restrict__ shapes,
                   const int64_t* __restrict__ starts, const scalar_t* __restrict__ loc,
                   const scalar_t* __restrict__ attn, scalar_t* __restrict__ out, int64_t items,
                   int64_t S, int64_t M, int64_t D, int64_t Q, int64_t L, int64_t P) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t item = t / G;
  const int lane = static_cast<int>(t % G);
  if (item >= items) return;
  const int64_t m = item % M;
  const int64_t b = item / (Q * M);
  const int64_t row_stride = M * D;
  const scalar_t* vb = value + b * S * row_stride + m * D;
  const scalar_t* lp = loc + item * L * P * 2;
  const scalar_t* ap = attn + item * L * P;
  for (int64_t ch = lane; ch < D; ch += G) {
    acc_t acc = 0;
    for (int64_t l = 0; l < L; ++l) {
      const int64_t H = shapes[2 * l], W = shapes[2 * l + 1], start = starts[l];
      for (int64_t p = 0; p < P; ++p) {
        const int64_t k = l * P + p;
        Bilinear<acc_t> bl;
        bilinear_setup<acc_t>(static_cast<acc_t>(lp[2 * k]), static_cast<acc_t>(lp[2 * k + 1]),
                              H, W, bl);
        if (!bl.any) continue;
        const acc_t a = static_cast<acc_t>(ap[k]);
        acc_t s = 0;
#pragma unroll
        for (int c = 0; c < 4; ++c) {
          if (row_ok(bl.row[c], start, S)) {
            s += bl.w[c] * static_cast<acc_t>(vb[(start + bl.row[c]) * row_stride + ch]);
          }
        }
        acc += a * s;
      }
    }
    out[item * D + ch] = static_cast<scalar_t>(acc);
  }
}

template <typename scalar_t, int G>
__global__ void __launch_bounds__(kThreads)
    backward_kernel(const scalar_t* __restrict__ grad_out, const scalar_t* __restrict__ value,
                    const int64_t* __restrict__ shapes, const int64_t* __restrict__ starts,
                    const scalar_t* __restrict__ loc, const scalar_t* __restrict__ attn,
                    at::opmath_type<scalar_t>* __restrict__ grad_value,
                    scalar_t* __restrict__ grad_loc, scalar_t* __restrict__ grad_attn,
                    int64_t items, int64_t S, int64_t M, int64_t D, int64_t Q, int64_t L,
                    int64_t P) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t item = t / G;
  const int lane = static_cast<int>(t % G);
  if (item >= items) return;  // whole groups leave together
  const unsigned mask = group_mask<G>();
  const int64_t m = item % M;
  const int64_t b = item / (Q * M);
  const int64_t row_stride = M * D;
  const scalar_t* vb = value + b * S * row_stride + m * D;
  acc_t* gvb = grad_value + b * S * row_stride + m * D;
  const scalar_t* go = grad_out + item * D;
  const scalar_t* lp = loc + item * L * P * 2;
  const scalar_t* ap = attn + item * L * P;
  for (int64_t l = 0; l < L; ++l) {
    const int64_t H = shapes[2 * l], W = shapes[2 * l + 1], start = starts[l];
    for (int64_t p = 0; p < P; ++p) {
      const int64_t k = l * P + p;
      Bilinear<acc_t> bl;
      bilinear_setup<acc_t>(static_cast<acc_t>(lp[2 * k]), static_cast<acc_t>(lp[2 * k + 1]), H,
                            W, bl);
      const acc_t a = static_cast<acc_t>(ap[k]);
      acc_t ga = 0, gx = 0, gy = 0;
      if (bl.any) {  // uniform within the group
#pragma unroll
        for (int c = 0; c < 4; ++c) {
          if (!row_ok(bl.row[c], start, S)) continue;
          const int64_t off = (start + bl.row[c]) * row_stride;
          const acc_t wa = a * bl.w[c];
          acc_t s = 0;
          for (int64_t ch = lane; ch < D; ch += G) {
            const acc_t g = static_cast<acc_t>(go[ch]);
            s += g * static_cast<acc_t>(vb[off + ch]);
            atomicAdd(gvb + off + ch, wa * g);
          }
          ga += bl.w[c] * s;
          gx += bilinear_dwdx(bl, c) * s;
          gy += bilinear_dwdy(bl, c) * s;
        }
      }
      ga = group_sum<G>(ga, mask);
      gx = group_sum<G>(gx, mask);
      gy = group_sum<G>(gy, mask);
      if (lane == 0) {
        grad_attn[item * L * P + k] = static_cast<scalar_t>(ga);
        grad_loc[(item * L * P + k) * 2] = static_cast<scalar_t>(a * gx * static_cast<acc_t>(W));
        grad_loc[(item * L * P + k) * 2 + 1] =
            static_cast<scalar_t>(a * gy * static_cast<acc_t>(H));
      }
    }
  }
}

int group_size(int64_t D) {
  int g = 1;
  while (g < D && g < 32) g <<= 1;
  return g;
}

int64_t num_blocks(int64_t items, int G) {
  return (items * G + kThreads - 1) / kThreads;
}

// Calls body.template operator()<G>() with G the compile-time group size.
#define HFSEG_DISPATCH_GROUP(G_RUNTIME, ...)                 \
  switch (G_RUNTIME) {                                        \
    case 1: { constexpr int kG = 1; __VA_ARGS__(); break; }   \
    case 2: { constexpr int kG = 2; __VA_ARGS__(); break; }   \
    case 4: { constexpr int kG = 4; __VA_ARGS__(); break; }   \
    case 8: { constexpr int kG = 8; __VA_ARGS__(); break; }   \
    case 16: { constexpr int kG = 16; __VA_ARGS__(); break; } \
    default: { constexpr int kG = 32; __VA_ARGS__(); break; } \
  }

at::Tensor forward_cuda(const at::Tensor& value, const at::Tensor& spatial_shapes,
                        const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                        const at::Tensor& attention_weights) {
  const Dims d = check_inputs(value, spatial_shapes, level_start_index, sampling_locations,
                              attention_weights);
  const c10::cuda::CUDAGuard guard(value.device());
  const auto shapes = spatial_shapes.contiguous();
  const auto starts = level_start_index.contiguous();
  const auto v = value.contiguous();
  const auto loc = sampling_locations.contiguous();
  const auto attn = attention_weights.contiguous();
  auto out = at::empty({d.B, d.Q, d.M * d.D}, v.options());
  const int64_t items = d.B * d.Q * d.M;
  if (out.numel() == 0) return out;
  const int G = group_size(d.D);
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, v.scalar_type(), "hf_seg_msda_forward_cuda", [&] {
        HFSEG_DISPATCH_GROUP(G, [&] {
          forward_kernel<scalar_t, kG><<<num_blocks(items, kG), kThreads, 0, stream>>>(
              v.data_ptr<scalar_t>(), shapes.data_ptr<int64_t>(), starts.data_ptr<int64_t>(),
              loc.data_ptr<scalar_t>(), attn.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
              items, d.S, d.M, d.D, d.Q, d.L, d.P);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
      });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_cuda(
    const at::Tensor& grad_output, const at::Tensor& value, const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights) {
  const Dims d = check_inputs(value, spatial_shapes, level_start_index, sampling_locations,
                              attention_weights);
  check_grad_output(grad_output, value, d);
  const c10::cuda::CUDAGuard guard(value.device());
  const auto shapes = spatial_shapes.contiguous();
  const auto starts = level_start_index.contiguous();
  const auto go = grad_output.contiguous();
  const auto v = value.contiguous();
  const auto loc = sampling_locations.contiguous();
  const auto attn = attention_weights.contiguous();
  const auto acc_type = at::toOpMathType(v.scalar_type());
  auto grad_value_acc = at::zeros(v.sizes(), v.options().dtype(acc_type));
  auto grad_loc = at::zeros(loc.sizes(), loc.options());
  auto grad_attn = at::zeros(attn.sizes(), attn.options());
  const int64_t items = d.B * d.Q * d.M;
  if (items * d.L * d.P > 0 && d.D > 0) {
    const int G = group_size(d.D);
    const auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(
        at::kHalf, at::kBFloat16, v.scalar_type(), "hf_seg_msda_backward_cuda", [&] {
          using acc_t = at::opmath_type<scalar_t>;
          HFSEG_DISPATCH_GROUP(G, [&] {
            backward_kernel<scalar_t, kG><<<num_blocks(items, kG), kThreads, 0, stream>>>(
                go.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(), shapes.data_ptr<int64_t>(),
                starts.data_ptr<int64_t>(), loc.data_ptr<scalar_t>(), attn.data_ptr<scalar_t>(),
                grad_value_acc.data_ptr<acc_t>(), grad_loc.data_ptr<scalar_t>(),
                grad_attn.data_ptr<scalar_t>(), items, d.S, d.M, d.D, d.Q, d.L, d.P);
            C10_CUDA_KERNEL_LAUNCH_CHECK();
          });
        });
  }
  auto grad_value =
      grad_value_acc.scalar_type() == v.scalar_type() ? grad_value_acc : grad_value_acc.to(v.scalar_type());
  return {grad_value, grad_loc, grad_attn};
}

}  // namespace
}  // namespace hf_seg_msda

HFSEG_TORCH_LIBRARY_IMPL(HFSEG_NS, CUDA, m) {
  m.impl("forward", &hf_seg_msda::forward_cuda);
  m.impl("backward", &hf_seg_msda::backward_cuda);
}
