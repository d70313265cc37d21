// Multi-scale deformable attention (MSDA): shared declarations and the bilinear
// sampling helper used by both the CPU and the CUDA kernels.
//
// Layouts (all tensors contiguous when they reach the kernels):
//   value              [B, S, M, D]      S = sum_l H_l * W_l
//   spatial_shapes     [L, 2]  int64     (H_l, W_l)
//   level_start_index  [L]     int64     first row of level l inside S
//   sampling_locations [B, Q, M, L, P, 2] (x, y), normalised to [0, 1]
//   attention_weights  [B, Q, M, L, P]
//   output             [B, Q, M * D]
//
// Sampling follows grid_sample(mode="bilinear", padding_mode="zeros",
// align_corners=False): the pixel coordinate of a normalised location u on an
// axis of size N is u * N - 0.5, pixel centres sit at integers, and corners that
// fall outside the map contribute zero.
#pragma once

#include <math.h>
#include <cstdint>

#ifndef HFSEG_NS
#error "HFSEG_NS (the operator namespace of this build) must be defined"
#endif

#if defined(__CUDACC__) || defined(__HIPCC__)
#define HFSEG_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define HFSEG_HOST_DEVICE inline
#endif

namespace hf_seg_msda {

// The four neighbours of one sampling point on one level.
// Corner c = 2 * dy + dx, i.e. 0 = (y0, x0), 1 = (y0, x1), 2 = (y1, x0), 3 = (y1, x1).
// row[c] is the row inside the level (y * W + x), or -1 when the corner lies
// outside the map. fx / fy are the fractional offsets from (x0, y0).
HFSEG_HOST_DEVICE float floor_(float x) { return floorf(x); }
HFSEG_HOST_DEVICE double floor_(double x) { return floor(x); }

template <typename acc_t>
struct Bilinear {
  int64_t row[4];
  acc_t w[4];
  acc_t fx;
  acc_t fy;
  bool any;  // false when no corner is inside the map (contributes nothing)
};

template <typename acc_t>
HFSEG_HOST_DEVICE void bilinear_setup(acc_t loc_x, acc_t loc_y, int64_t H, int64_t W,
                                      Bilinear<acc_t>& b) {
  const acc_t x = loc_x * static_cast<acc_t>(W) - static_cast<acc_t>(0.5);
  const acc_t y = loc_y * static_cast<acc_t>(H) - static_cast<acc_t>(0.5);
  // Written so that NaN also lands in the "outside" branch.
  if (!(x > static_cast<acc_t>(-1) && y > static_cast<acc_t>(-1) &&
        x < static_cast<acc_t>(W) && y < static_cast<acc_t>(H))) {
    b.any = false;
    for (int c = 0; c < 4; ++c) {
      b.row[c] = -1;
      b.w[c] = static_cast<acc_t>(0);
    }
    b.fx = static_cast<acc_t>(0);
    b.fy = static_cast<acc_t>(0);
    return;
  }
  const acc_t xf = floor_(x);
  const acc_t yf = floor_(y);
  const int64_t x0 = static_cast<int64_t>(xf);
  const int64_t y0 = static_cast<int64_t>(yf);
  const acc_t fx = x - xf;
  const acc_t fy = y - yf;
  const acc_t gx = static_cast<acc_t>(1) - fx;
  const acc_t gy = static_cast<acc_t>(1) - fy;
  const bool x0_in = x0 >= 0;
  const bool x1_in = x0 + 1 < W;
  const bool y0_in = y0 >= 0;
  const bool y1_in = y0 + 1 < H;
  b.any = true;
  b.fx = fx;
  b.fy = fy;
  b.w[0] = gy * gx;
  b.w[1] = gy * fx;
  b.w[2] = fy * gx;
  b.w[3] = fy * fx;
  b.row[0] = (y0_in && x0_in) ? y0 * W + x0 : -1;
  b.row[1] = (y0_in && x1_in) ? y0 * W + x0 + 1 : -1;
  b.row[2] = (y1_in && x0_in) ? (y0 + 1) * W + x0 : -1;
  b.row[3] = (y1_in && x1_in) ? (y0 + 1) * W + x0 + 1 : -1;
}

// d w[c] / d x and d w[c] / d y (pixel units) of the bilinear weights.
template <typename acc_t>
HFSEG_HOST_DEVICE acc_t bilinear_dwdx(const Bilinear<acc_t>& b, int c) {
  const acc_t gy = static_cast<acc_t>(1) - b.fy;
  switch (c) {
    case 0: return -gy;
    case 1: return gy;
    case 2: return -b.fy;
    default: return b.fy;
  }
}

template <typename acc_t>
HFSEG_HOST_DEVICE acc_t bilinear_dwdy(const Bilinear<acc_t>& b, int c) {
  const acc_t gx = static_cast<acc_t>(1) - b.fx;
  switch (c) {
    case 0: return -gx;
    case 1: return -b.fx;
    case 2: return gx;
    default: return b.fx;
  }
}

}  // namespace hf_seg_msda
